//! `instar copy` from a SQLite file into every engine: types mapped, rows
//! verified, a target that holds rows refused unless --append, a type that
//! cannot be mapped named, kills at random moments resumed with nothing
//! copied twice, and a source written during the copy reported.

use std::time::Duration;

use crate::adopt::exec;
use crate::documents::{json, run};
use crate::harness::{migration, Backend, TestDb};

fn migrations(t: &TestDb) {
    migration(
        &t.migrations(),
        "0001_users",
        "CREATE TABLE users (id integer PRIMARY KEY, name varchar(200) NOT NULL, active boolean, score real, born date, seen timestamp NULL, note text);",
        None,
    );
    migration(
        &t.migrations(),
        "0002_tags",
        "CREATE TABLE tags (user_id integer NOT NULL, tag varchar(50) NOT NULL, PRIMARY KEY (user_id, tag));",
        None,
    );
}

/// A SQLite source beside the target, migrated, with `n` users and tags.
async fn source(t: &TestDb, n: usize) -> String {
    let file = t.dir.path().join("source.db");
    let url = format!("sqlite:{}", file.display());
    let out = crate::instar_at(t, &url).arg("up").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conn = rusqlite::Connection::open(&file).unwrap();
    conn.execute_batch("BEGIN").unwrap();
    for i in 1..=n as i64 {
        let name = match i % 4 {
            0 => format!("O'Brien \\ tab\there {i}"),
            1 => format!("line\nbreak ünïcødé {i}"),
            2 => format!("plain {i}"),
            _ => format!("\"quoted\" {i}"),
        };
        let active: Option<i64> = if i % 5 == 0 { None } else { Some(i % 2) };
        conn.execute(
            "INSERT INTO users VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            rusqlite::params![
                i,
                name,
                active,
                i as f64 / 8.0,
                format!("19{:02}-0{}-1{}", i % 100, 1 + i % 9, i % 10),
                format!("2024-03-0{} 10:{:02}:{:02}", 1 + i % 9, i % 60, i % 60),
                if i % 3 == 0 {
                    None
                } else {
                    Some(format!("note {i}"))
                }
            ],
        )
        .unwrap();
        conn.execute("INSERT INTO tags VALUES (?1, 'a'), (?1, 'b')", [i])
            .unwrap();
    }
    conn.execute_batch("COMMIT").unwrap();
    url
}

fn copy(t: &TestDb, from: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["copy", "--from", from, "--to", &t.url];
    args.extend_from_slice(extra);
    run(t, &args, None)
}

on_every_engine!(
    a_sqlite_database_moves_to_every_engine_verified,
    a_copy_killed_at_random_moments_resumes_and_copies_nothing_twice,
    a_target_with_rows_is_refused_unless_append,
    a_collection_is_moved_to_a_version_on_its_way
);

async fn a_sqlite_database_moves_to_every_engine_verified(b: Backend) {
    let Some(t) = TestDb::new(b, "copy_cli").await else {
        return;
    };
    migrations(&t);
    let from = source(&t, 1_500).await;
    // A dry run writes nothing, even to a target not migrated yet.
    let (code, out, err) = copy(&t, &from, &["--dry-run"]);
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    assert!(
        out.contains("not migrated yet") && out.contains("users: id"),
        "{b:?}: {out}"
    );
    assert!(
        !t.table_exists("users").await && !t.table_exists("instar_copy").await,
        "{b:?}"
    );
    let (code, out, err) = copy(
        &t,
        &from,
        &["--verify", "full", "--batch", "200", "--parallel", "2"],
    );
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    assert!(out.contains("target migrated to 0002"), "{out}");
    assert!(
        out.contains(
            "users: 1500 rows copied; source 1500 rows, target 1500 rows; 1500 rows compared"
        ),
        "{b:?}: {out}"
    );
    assert!(out.contains("tags: 3000 rows copied"), "{b:?}: {out}");
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE active IS NULL")
            .await,
        300
    );
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE name LIKE '%\t%'")
            .await,
        375,
        "{b:?}: tabs kept"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE id = 1 AND name LIKE 'line%ünïcødé 1'")
            .await,
        1,
        "{b:?}"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE score = 0.125")
            .await,
        1,
        "{b:?}"
    );
    // The source is only read.
    let conn = rusqlite::Connection::open(t.dir.path().join("source.db")).unwrap();
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name LIKE 'instar_copy%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0, "nothing written to the source");
    // A verified copy clears its checkpoints: a second one finds rows and
    // needs --append, which skips every row that is there.
    let (code, _, err) = copy(&t, &from, &[]);
    assert_eq!(code, 2, "{b:?}: {err}");
    assert!(err.contains("already holds rows"), "{err}");
    let (code, j, err) = copy(&t, &from, &["--append", "--format", "json"]);
    assert_eq!(code, 0, "{b:?}: {j}{err}");
    let j = json(&j);
    assert_eq!(j["copy"]["verified"], true, "{j}");
    assert_eq!(j["copy"]["tables"][1]["copied"], 0, "{j}");
    assert_eq!(j["copy"]["tables"][1]["skipped_existing"], 1500, "{j}");
}

async fn a_copy_killed_at_random_moments_resumes_and_copies_nothing_twice(b: Backend) {
    let Some(t) = TestDb::new(b, "copy_kill").await else {
        return;
    };
    migrations(&t);
    let from = source(&t, 20_000).await;
    let trials: usize = std::env::var("INSTAR_KILL_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let int = if b == Backend::MySql {
        "SIGNED"
    } else {
        "BIGINT"
    };
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15 ^ b as u64;
    let (mut kills, mut finished) = (0, 0);
    for trial in 0..trials {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut child = crate::instar_at(&t, &t.url)
            .args(["copy", "--from", &from, "--to", &t.url, "--batch", "100"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(30 + seed % 900));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        let status = child.wait().unwrap();
        // After every kill, each table holds exactly the rows its checkpoint
        // says were written: a batch and its checkpoint are one transaction.
        // (A kill before the migrations or the first checkpoint leaves none.)
        let checkpoints = t.table_exists("instar_copy").await;
        // Killed after the copy verified and cleared its checkpoints (rows are
        // there, no checkpoint row at all: a batch never commits without one).
        let cleared = checkpoints
            && !status.success()
            && t.count("SELECT count(*) FROM instar_copy").await == 0
            && t.table_exists("users").await
            && t.count("SELECT count(*) FROM users").await > 0;
        for table in ["users", "tags"] {
            let rows = if t.table_exists(table).await {
                t.count(&format!("SELECT count(*) FROM {table}")).await
            } else {
                0
            };
            let recorded = if checkpoints {
                let sum = format!("SELECT CAST(COALESCE(sum(rows_copied), 0) AS {int}) FROM instar_copy WHERE table_name = '{table}'");
                t.count(&sum).await
            } else {
                0
            };
            if status.success() || cleared {
                // Finished and verified: its checkpoints are gone.
                assert_eq!(recorded, 0, "{b:?} trial {trial}: {table}");
            } else {
                assert_eq!(rows, recorded, "{b:?} trial {trial}: {table} after a kill");
            }
        }
        if (status.success() || cleared || trial % 6 == 5) && checkpoints {
            // Start over now and then, so that kills land early and late.
            finished += (status.success() || cleared) as usize;
            let reset = "DELETE FROM users; DELETE FROM tags; DELETE FROM instar_copy";
            exec(&t, reset).await;
        }
    }
    assert!(
        kills > 0,
        "{b:?}: the copy finished before any kill: make it longer"
    );
    eprintln!("{b:?}: {kills} kills in {trials} trials, {finished} copies finished");
    // The last trial may have finished the copy (its checkpoints then went
    // with its verification): --append resumes an unfinished one, and skips
    // the rows of a finished one.
    let (code, out, err) = copy(&t, &from, &["--append", "--verify", "full"]);
    assert_eq!(code, 0, "{b:?} after {kills} kills: {out}{err}");
    assert_eq!(t.count("SELECT count(*) FROM users").await, 20_000, "{b:?}");
    assert_eq!(t.count("SELECT count(*) FROM tags").await, 40_000, "{b:?}");
    assert!(out.contains("20000 rows compared"), "{b:?}: {out}");
    // Verified, its checkpoints are cleared.
    assert_eq!(
        t.count("SELECT count(*) FROM instar_copy").await,
        0,
        "{b:?}"
    );
}

async fn a_target_with_rows_is_refused_unless_append(b: Backend) {
    let Some(t) = TestDb::new(b, "copy_append").await else {
        return;
    };
    migrations(&t);
    let from = source(&t, 50).await;
    let (code, out, err) = run(&t, &["up"], None);
    assert_eq!(code, 0, "{out}{err}");
    // An unfinished copy from another source is not resumed from this one.
    exec(&t, "CREATE TABLE instar_copy (table_name VARCHAR(255) NOT NULL PRIMARY KEY, source TEXT NOT NULL, last_key TEXT, rows_copied BIGINT NOT NULL, done INTEGER NOT NULL); INSERT INTO instar_copy VALUES ('users', 'sqlite:elsewhere.db', '[3]', 3, 0)").await;
    let (code, _, err) = copy(&t, &from, &[]);
    assert_eq!(code, 2, "{b:?}: {err}");
    assert!(
        err.contains(
            "table users of the target holds a copy from sqlite:elsewhere.db that has not finished"
        ),
        "{b:?}: {err}"
    );
    exec(&t, "DELETE FROM instar_copy").await;
    exec(
        &t,
        "INSERT INTO users (id, name) VALUES (7, 'already here')",
    )
    .await;
    let (code, out, err) = copy(&t, &from, &[]);
    assert_eq!(code, 2, "{b:?}: refused as an error: {out}{err}");
    assert!(
        err.contains("the target already holds rows in users (1 rows)") && err.contains("--append"),
        "{b:?}: {err}"
    );
    // The row already there is kept as it is; verification says it differs.
    let (code, out, err) = copy(&t, &from, &["--append", "--verify", "full"]);
    assert_eq!(code, 1, "{b:?}: {out}{err}");
    assert!(
        out.contains("users: 49 rows copied, 1 already there (kept)"),
        "{b:?}: {out}"
    );
    assert!(out.contains("row id = 7: name is"), "{b:?}: {out}");
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE name = 'already here'")
            .await,
        1
    );
}

#[tokio::test]
async fn a_type_that_cannot_be_mapped_is_named_with_its_table_and_column() {
    let Some(pg) = TestDb::new(Backend::Postgres, "copy_types").await else {
        return;
    };
    migrations(&pg);
    let (code, out, err) = run(&pg, &["up"], None);
    assert_eq!(code, 0, "{out}{err}");
    exec(
        &pg,
        "ALTER TABLE users ALTER COLUMN score TYPE real[] USING ARRAY[score]",
    )
    .await;
    let target = TestDb::sqlite("copy_types_target").await;
    migrations(&target);
    let (code, out, err) = run(
        &target,
        &["copy", "--from", &pg.url, "--to", &target.url],
        None,
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("table users, column score: the source's type real[] cannot be mapped to the target's type REAL"),
        "{err}"
    );
}

#[tokio::test]
async fn a_source_written_during_the_copy_is_reported() {
    let target = TestDb::sqlite("copy_written").await;
    migrations(&target);
    let from = source(&target, 20_000).await;
    let child = crate::instar_at(&target, &target.url)
        .args([
            "copy",
            "--from",
            &from,
            "--to",
            &target.url,
            "--batch",
            "100",
            "--verify",
            "full",
        ])
        .spawn()
        .unwrap();
    // Once the copy is past its first batches, the application writes behind it.
    let file = target.dir.path().join("source.db");
    let started = std::time::Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the copy never started"
        );
        let copied: i64 = rusqlite::Connection::open(target.dir.path().join("test.db"))
            .ok()
            .and_then(|c| {
                c.query_row(
                    "SELECT coalesce(max(rows_copied), 0) FROM instar_copy",
                    [],
                    |r| r.get(0),
                )
                .ok()
            })
            .unwrap_or(0);
        if copied >= 500 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let conn = rusqlite::Connection::open(&file).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.execute(
        "INSERT INTO users (id, name) VALUES (-1, 'behind the copy')",
        [],
    )
    .unwrap();
    conn.execute("UPDATE users SET name = 'changed behind' WHERE id = 1", [])
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("users: ") && text.contains("DIFFERS"),
        "{text}"
    );
    assert!(
        text.contains("row id = -1 is missing in the target"),
        "{text}"
    );
    assert!(text.contains("row id = 1: name is"), "{text}");
    assert!(text.contains("stop writes to the source"), "{text}");
}

async fn a_collection_is_moved_to_a_version_on_its_way(b: Backend) {
    let Some(t) = TestDb::new(b, "copy_lens").await else {
        return;
    };
    crate::documents::users_migrated_project(&t);
    let file = t.dir.path().join("source.db");
    let from = format!("sqlite:{}", file.display());
    let out = crate::instar_at(&t, &from).arg("up").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conn = rusqlite::Connection::open(&file).unwrap();
    for i in 1..=40 {
        conn.execute(
            "INSERT INTO users VALUES (?1, ?2, '1.0.0')",
            rusqlite::params![
                i,
                format!(r#"{{"name": "Ada Lovelace{i}", "mail": "ada{i}@example.org"}}"#)
            ],
        )
        .unwrap();
    }
    let (code, out, err) = copy(&t, &from, &["--lens", "users:2.0.0", "--verify", "full"]);
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    assert!(out.contains("40 rows compared"), "{out}");
    assert!(
        out.contains("collection users moved to 2.0.0 in the target: 40 documents"),
        "{out}"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE schema_version = '2.0.0'")
            .await,
        40,
        "{b:?}"
    );
    let (code, doc, err) = run(&t, &["docs", "get", "users", "7"], None);
    assert_eq!(code, 0, "{b:?}: {err}");
    assert_eq!(json(&doc)["email"], "ada7@example.org", "{b:?}: {doc}");
    // A version the collection does not declare is refused before anything is copied.
    let (code, _, err) = copy(&t, &from, &["--lens", "users:9.9.9"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("9.9.9 is not declared"), "{err}");
}

/// MySQL → PostgreSQL, PostgreSQL → MySQL and → SQLite: timestamps,
/// booleans, single- and double-precision floats, a composite key.
async fn between_servers(from: Backend, to: Backend) {
    let Some(src) = TestDb::new(from, "copy_from_server").await else {
        return;
    };
    let Some(dst) = TestDb::new(to, "copy_to_server").await else {
        return;
    };
    migrations(&src);
    migrations(&dst);
    let (code, out, err) = run(&src, &["up"], None);
    assert_eq!(code, 0, "{out}{err}");
    let mut rows = Vec::new();
    for i in 1..=300 {
        rows.push(format!(
            "({i}, 'name {i} ''quoted''', {}, {}, '2001-02-{:02}', '2024-03-04 05:06:{:02}', NULL)",
            if i % 2 == 1 { "TRUE" } else { "FALSE" },
            i as f64 / 3.0,
            1 + i % 28,
            i % 60
        ));
    }
    exec(
        &src,
        &format!("INSERT INTO users VALUES {}", rows.join(", ")),
    )
    .await;
    exec(
        &src,
        "INSERT INTO tags VALUES (1, 'b'), (1, 'a'), (2, 'a'), (10, 'Z'), (2, 'B')",
    )
    .await;
    let args = [
        "copy", "--from", &src.url, "--to", &dst.url, "--verify", "full", "--batch", "7",
    ];
    let (code, out, err) = run(&dst, &args, None);
    assert_eq!(code, 0, "{from:?} → {to:?}: {out}{err}");
    assert!(
        out.contains("users: 300 rows copied") && out.contains("300 rows compared"),
        "{out}"
    );
    assert!(
        out.contains("tags: 5 rows copied") && out.contains("5 rows compared"),
        "{out}"
    );
    assert_eq!(
        dst.count("SELECT count(*) FROM users WHERE seen = '2024-03-04 05:06:07'")
            .await,
        5
    );
    assert_eq!(
        dst.count("SELECT count(*) FROM users WHERE born = '2001-02-05'")
            .await,
        11
    );
}

#[tokio::test]
async fn mysql_to_postgres() {
    between_servers(Backend::MySql, Backend::Postgres).await;
}

#[tokio::test]
async fn postgres_to_mysql() {
    between_servers(Backend::Postgres, Backend::MySql).await;
}

#[tokio::test]
async fn postgres_to_sqlite() {
    between_servers(Backend::Postgres, Backend::Sqlite).await;
}
