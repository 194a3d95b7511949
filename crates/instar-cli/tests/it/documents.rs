//! The README's worked example, on every engine: a `users` collection going
//! from 1.0.0 to 2.0.0 (`name` split into `first_name`/`last_name`, `mail`
//! renamed `email`, `legacy` dropped), read and written lazily by an old
//! release at 1.0.0 and a new one at 2.0.0, on the same rows.

use crate::adopt::exec;
use crate::harness::{file, Backend, TestDb};

pub(crate) const LENS: &str = "lens:\n- split: {source: name, into: [first_name, last_name], separator: ' '}\n- rename: {source: mail, destination: email}\n- remove: {name: legacy, type: string}\n";

pub(crate) fn run(t: &TestDb, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    use std::io::Write;
    let mut c = crate::instar_at(t, &t.url);
    c.args(args).stdin(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `instar ARGS` pointed at `url` (another server, or the same with other
/// parameters): its exit code, stdout and stderr.
pub(crate) fn run_at(t: &TestDb, url: &str, args: &[&str]) -> (i32, String, String) {
    let out = crate::instar_at(t, url).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `run`, which must succeed: its stdout.
pub(crate) fn ok(t: &TestDb, args: &[&str], stdin: Option<&str>) -> String {
    let (code, out, err) = run(t, args, stdin);
    assert_eq!(code, 0, "{args:?}: {out}{err}");
    out
}

pub(crate) fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// The project: `instar.toml` as given, [`LENS`] as the users' only lens, an
/// empty migrations folder.
pub(crate) fn project(t: &TestDb, toml: &str) -> std::path::PathBuf {
    std::fs::write(t.dir.path().join("instar.toml"), toml).unwrap();
    let lens = t
        .dir
        .path()
        .join("collections/users/lenses/1.0.0--2.0.0.lens.yaml");
    file(&lens, LENS);
    std::fs::create_dir_all(t.migrations()).unwrap();
    lens
}

/// The [`project`] with a migration creating its `users` table (text body).
pub(crate) fn users_migrated_project(t: &TestDb) {
    project(t, "[collections.users]\ntable = \"users\"\nkey = \"id\"\nbody = \"doc\"\nversion_column = \"schema_version\"\nversions = [\"1.0.0\", \"2.0.0\"]\n");
    crate::harness::migration(
        &t.migrations(),
        "0001_users",
        "CREATE TABLE users (id integer PRIMARY KEY, doc text NOT NULL, schema_version varchar(20));",
        None,
    );
}

/// A `users` table with the engine's JSON column type and a version
/// column, declared as a collection 1.0.0 → 2.0.0 with [`LENS`].
pub(crate) async fn users(b: Backend, test: &str) -> Option<TestDb> {
    let t = TestDb::new(b, test).await?;
    let body = match b {
        Backend::Sqlite => "TEXT",
        Backend::Postgres => "JSONB",
        Backend::MySql => "JSON",
    };
    exec(&t, &format!("CREATE TABLE users (id INT PRIMARY KEY, doc {body} NOT NULL, schema_version VARCHAR(20))")).await;
    project(&t, "[collections.users]\ntable = \"users\"\nkey = \"id\"\nbody = \"doc\"\nversion_column = \"schema_version\"\nversions = [\"1.0.0\", \"2.0.0\"]\n");
    Some(t)
}

on_every_engine!(
    old_and_new_releases_read_and_write_their_versions,
    every_document_moves_and_reads_the_same_after,
    an_application_writing_during_a_move_loses_nothing
);

async fn old_and_new_releases_read_and_write_their_versions(b: Backend) {
    let Some(t) = users(b, "documents").await else {
        return;
    };
    exec(&t, r#"INSERT INTO users VALUES (1, '{"name": "Ada Lovelace", "mail": "ada@example.org"}', NULL)"#).await;
    exec(&t, r#"INSERT INTO users VALUES (2, '{"name": "Grace Hopper", "mail": "grace@example.org", "legacy": "x"}', '1.0.0')"#).await;

    // The new release reads 2.0.0; the row is not rewritten (lazy).
    let (code, out, err) = run(&t, &["docs", "get", "users", "1"], None);
    assert_eq!(code, 0, "{b:?}: {err}");
    assert_eq!(
        json(&out),
        serde_json::json!({"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.org"})
    );
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE schema_version IS NULL")
            .await,
        1,
        "{b:?}: not rewritten"
    );
    // The old release reads 1.0.0.
    let out = ok(&t, &["docs", "get", "users", "2", "--at", "1.0.0"], None);
    assert_eq!(json(&out)["legacy"], "x", "{b:?}");

    // The old release writes 1.0.0: stored at 2.0.0, and read back exactly as written.
    let written =
        r#"{"name": "Alan Mathison Turing", "mail": "alan@example.org", "legacy": "kept"}"#;
    let (code, out, err) = run(
        &t,
        &["docs", "put", "users", "3", "--at", "1.0.0"],
        Some(written),
    );
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE id = 3 AND schema_version = '2.0.0'")
            .await,
        1,
        "{b:?}"
    );
    let out = ok(&t, &["docs", "get", "users", "3", "--at", "1.0.0"], None);
    assert_eq!(
        json(&out),
        json(written),
        "{b:?}: the complement keeps what 2.0.0 has no field for"
    );
    let out = ok(&t, &["docs", "get", "users", "3"], None);
    assert_eq!(
        json(&out),
        serde_json::json!({"first_name": "Alan", "last_name": "Mathison Turing", "email": "alan@example.org"})
    );

    // The new release edits it at 2.0.0; the old one sees the edit.
    let edited = r#"{"first_name": "Alan", "last_name": "Turing", "email": "turing@example.org"}"#;
    assert_eq!(run(&t, &["docs", "put", "users", "3"], Some(edited)).0, 0);
    let out = ok(&t, &["docs", "get", "users", "3", "--at", "1.0.0"], None);
    assert_eq!(
        json(&out),
        serde_json::json!({"name": "Alan Turing", "mail": "turing@example.org", "legacy": ""})
    );

    // A list at 1.0.0, in key order.
    let (code, out, err) = run(&t, &["docs", "list", "users", "--at", "1.0.0"], None);
    assert_eq!(code, 0, "{b:?}: {err}");
    let keys: Vec<String> = out
        .lines()
        .map(|l| json(l)["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, ["1", "2", "3"], "{b:?}");
    assert_eq!(
        json(out.lines().next().unwrap())["doc"]["name"],
        "Ada Lovelace"
    );

    // Refused, untouched: a version nobody declared, on the row or asked for.
    exec(&t, r#"INSERT INTO users VALUES (4, '{"x": 1}', '3.0.0')"#).await;
    let (code, _, err) = run(&t, &["docs", "get", "users", "4"], None);
    assert!(
        code == 2 && err.contains("3.0.0") && err.contains("not declared"),
        "{b:?}: {err}"
    );
    let (code, _, err) = run(&t, &["docs", "get", "users", "1", "--at", "9.9.9"], None);
    assert!(code == 2 && err.contains("9.9.9"), "{b:?}: {err}");
    let (code, _, err) = run(&t, &["docs", "get", "users", "404"], None);
    assert_eq!(code, 1, "{b:?}: {err}");
}

/// `docs migrate` moves every document to 2.0.0 (and back to 1.0.0), each
/// reading exactly as before at every version; killed at random moments, a
/// run again finishes the move with every document whole.
async fn every_document_moves_and_reads_the_same_after(b: Backend) {
    let Some(t) = users(b, "documents_migrate").await else {
        return;
    };
    let n = 300;
    let rows: Vec<String> = (1..=n)
        .map(|i| format!(r#"({i}, '{{"name": "User Number{i}", "mail": "u{i}@example.org", "legacy": "l{i}"}}', '1.0.0')"#))
        .collect();
    exec(&t, &format!("INSERT INTO users VALUES {}", rows.join(", "))).await;
    let list_at = |v: &str| {
        ok(
            &t,
            &["docs", "list", "users", "--at", v, "--limit", "1000"],
            None,
        )
    };
    let before_v1 = list_at("1.0.0");
    let before_v2 = list_at("2.0.0");

    // A time budget stops it at a checkpoint; the kills below resume from there.
    let out = ok(
        &t,
        &[
            "docs",
            "migrate",
            "users",
            "--batch",
            "20",
            "--max-duration",
            "1ms",
        ],
        None,
    );
    assert!(out.contains("paused at a checkpoint"), "{out}");
    assert_eq!(
        t.count("SELECT count(*) FROM instar_checkpoints WHERE version = 'documents:users' AND rows_done > 0")
            .await,
        1,
        "{b:?}: {out}"
    );

    // Killed at random moments (bounded), moving up and down in turn: every
    // document stays whole at one version and reads the same at both.
    let seed = crate::documents_eager::seed();
    let mut mid_move = 0;
    let trials = crate::kills::kill_trials() as u64;
    for trial in 0..trials {
        let args: &[&str] = if trial % 2 == 0 {
            &["docs", "migrate", "users", "--batch", "20"]
        } else {
            &["docs", "migrate", "users", "--batch", "20", "--to", "1.0.0"]
        };
        // SQLite moves 300 documents in tens of milliseconds: kill sooner there.
        let spread = if b == Backend::Sqlite { 40 } else { 250 };
        crate::documents_eager::kill_after(&t, args, seed, trial, spread);
        // One statement, one snapshot: the killed run's last COMMIT may still
        // land on the server between two separate counts.
        let whole = t
            .count("SELECT count(*) FROM users WHERE schema_version = '2.0.0' OR schema_version = '1.0.0'")
            .await;
        assert_eq!(
            whole, n,
            "{b:?}: every document whole at one version (seed {seed}, trial {trial})"
        );
        assert_eq!(
            list_at("1.0.0"),
            before_v1,
            "{b:?}: seed {seed}, trial {trial}"
        );
        assert_eq!(
            list_at("2.0.0"),
            before_v2,
            "{b:?}: seed {seed}, trial {trial}"
        );
        let at_v2 = t
            .count("SELECT count(*) FROM users WHERE schema_version = '2.0.0'")
            .await;
        mid_move += u64::from(at_v2 > 0 && at_v2 < whole);
    }
    println!("{b:?}: {mid_move} of {trials} kills landed in the middle of a move (seed {seed})");
    // A dry run says how each version gets there and changes nothing.
    let dry = ok(&t, &["docs", "migrate", "users", "--dry-run"], None);
    assert!(
        dry.contains("from 1.0.0: in process") && dry.contains("split name"),
        "{dry}"
    );
    let out = ok(&t, &["docs", "migrate", "users", "--batch", "20"], None);
    assert!(
        out.contains("every document of the key range is at 2.0.0"),
        "{out}"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM instar_checkpoints").await,
        0,
        "{b:?}: a finished move leaves no checkpoint"
    );
    assert!(
        !t.table_exists("instar_history").await
            || t.count("SELECT count(*) FROM instar_history").await == 0,
        "{b:?}: and no history row"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE schema_version = '2.0.0'")
            .await,
        n,
        "{b:?}: {out}"
    );
    assert_eq!(list_at("1.0.0"), before_v1, "{b:?}: lossless");
    assert_eq!(list_at("2.0.0"), before_v2, "{b:?}");

    // And back down: the complements restore 1.0.0 exactly.
    ok(&t, &["docs", "migrate", "users", "--to", "1.0.0"], None);
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE schema_version = '1.0.0'")
            .await,
        n,
        "{b:?}"
    );
    let text = if b == Backend::MySql {
        "CAST(doc AS CHAR)"
    } else {
        "CAST(doc AS TEXT)"
    };
    assert_eq!(
        t.count(&format!(
            "SELECT count(*) FROM users WHERE {text} LIKE '%legacy%'"
        ))
        .await,
        n,
        "{b:?}: legacy back in the row"
    );
    assert_eq!(list_at("1.0.0"), before_v1, "{b:?}");
}

/// A lens error names collection, key, lens file and op; a body that is not
/// JSON names collection and key; a lens naming an undeclared version is
/// refused when the collection is opened.
#[tokio::test]
async fn bad_documents_and_lenses_are_named() {
    let t = TestDb::sqlite("documents_bad").await;
    exec(
        &t,
        "CREATE TABLE users (id INT PRIMARY KEY, doc TEXT NOT NULL, schema_version VARCHAR(20))",
    )
    .await;
    exec(
        &t,
        r#"INSERT INTO users VALUES (1, '{"name": 5}', '1.0.0')"#,
    )
    .await;
    exec(&t, "INSERT INTO users VALUES (2, 'not json', '1.0.0')").await;
    let lens = project(
        &t,
        "[collections.users]\nversion_column = \"schema_version\"\nversions = [\"1.0.0\", \"2.0.0\"]\n",
    );
    let (code, _, err) = run(&t, &["docs", "get", "users", "1"], None);
    assert_eq!(code, 2);
    for words in [
        "collection users",
        "key 1",
        "1.0.0--2.0.0.lens.yaml",
        "split name",
        "not a string",
    ] {
        assert!(err.contains(words), "{words:?} in {err}");
    }
    let (code, _, err) = run(&t, &["docs", "get", "users", "2"], None);
    assert!(
        code == 2 && err.contains("key 2") && err.contains("not JSON"),
        "{err}"
    );
    std::fs::rename(&lens, lens.with_file_name("1.0.0--3.0.0.lens.yaml")).unwrap();
    let (code, _, err) = run(&t, &["docs", "get", "users", "1"], None);
    assert!(
        code == 2 && err.contains("1.0.0--3.0.0.lens.yaml") && err.contains("not declared"),
        "{err}"
    );
}

/// Without a version column every row is at the default version: a put is
/// stored there (not translated to a version nothing records), and a key
/// written as `03` keeps its complements under the key the table gives back.
#[tokio::test]
async fn a_table_without_a_version_column_and_keys_as_written() {
    let t = TestDb::sqlite("documents_no_version").await;
    exec(
        &t,
        "CREATE TABLE users (id INT PRIMARY KEY, doc TEXT NOT NULL)",
    )
    .await;
    project(
        &t,
        "[collections.users]\nversions = [\"1.0.0\", \"2.0.0\"]\n",
    );
    let v1 = r#"{"name": "Ada Lovelace", "mail": "a@b"}"#;
    ok(
        &t,
        &["docs", "put", "users", "1", "--at", "1.0.0"],
        Some(v1),
    );
    assert_eq!(
        json(&ok(
            &t,
            &["docs", "get", "users", "1", "--at", "1.0.0"],
            None
        )),
        json(v1)
    );
    assert_eq!(
        json(&ok(
            &t,
            &["docs", "get", "users", "1", "--at", "2.0.0"],
            None
        )),
        serde_json::json!({"first_name": "Ada", "last_name": "Lovelace", "email": "a@b"})
    );
    let v2 = r#"{"first_name": "Grace", "email": "g@h"}"#;
    ok(
        &t,
        &["docs", "put", "users", "03", "--at", "2.0.0"],
        Some(v2),
    );
    assert_eq!(
        json(&ok(
            &t,
            &["docs", "get", "users", "3", "--at", "2.0.0"],
            None
        )),
        json(v2),
        "stored at 1.0.0, read back exactly"
    );
}

/// The old release keeps writing 1.0.0 documents straight into the table while
/// `docs migrate` runs: no write is lost (a row written after it was read is
/// left for the next run, never overwritten with what was read), every
/// document reads correctly through the lens meanwhile, and a second run moves
/// the rest.
async fn an_application_writing_during_a_move_loses_nothing(b: Backend) {
    use sqlx::Connection;
    let Some(t) = users(b, "documents_concurrent").await else {
        return;
    };
    let n = 200;
    let rows: Vec<String> = (1..=n)
        .map(|i| {
            format!(r#"({i}, '{{"name": "User Number{i}", "mail": "u{i}@example.org"}}', '1.0.0')"#)
        })
        .collect();
    let check = |out: &str| {
        for line in out.lines() {
            let v = json(line);
            let key = v["key"].as_str().unwrap();
            assert_eq!(
                v["doc"]["mail"],
                format!("w{key}@example.org"),
                "{b:?}: the write to {key} was lost"
            );
        }
        assert_eq!(out.lines().count(), n as usize);
    };
    let list_v1 = || {
        ok(
            &t,
            &["docs", "list", "users", "--at", "1.0.0", "--limit", "1000"],
            None,
        )
    };
    // Randomized trials: where the two meet differs from run to run.
    // Where the writer and the move meet differs from trial to trial.
    for _ in 0..(crate::kills::kill_trials() / 5).max(3) {
        exec(&t, "DELETE FROM users").await;
        exec(&t, &format!("INSERT INTO users VALUES {}", rows.join(", "))).await;
        let mut child = crate::instar_at(&t, &t.url)
            .args(["docs", "migrate", "users", "--batch", "10"])
            .spawn()
            .unwrap();
        let mut c = t.raw().await;
        for i in 1..=n {
            let sql = format!(
                r#"UPDATE users SET doc = '{{"name": "Writer Wrote{i}", "mail": "w{i}@example.org"}}', schema_version = '1.0.0' WHERE id = {i}"#
            );
            sqlx::raw_sql(&sql)
                .execute(&mut c)
                .await
                .expect("the application's write");
        }
        let _ = c.close().await;
        assert!(child.wait().unwrap().success());
        check(&list_v1());
    }
    ok(&t, &["docs", "migrate", "users"], None);
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE schema_version = '2.0.0'")
            .await,
        n,
        "{b:?}"
    );
    check(&list_v1());
    // Writing a document exactly as it is stored changes nothing, and is no error.
    let same = ok(&t, &["docs", "get", "users", "1"], None);
    ok(&t, &["docs", "put", "users", "1"], Some(&same));
    ok(&t, &["docs", "put", "users", "1"], Some(&same));
    assert_eq!(t.count("SELECT count(*) FROM users").await, n, "{b:?}");
}
