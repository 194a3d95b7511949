//! Documents migrations (`kind = "documents"`): the worked example moved by
//! `instar up` in checkpointed batches (in process: `split` keeps
//! complements), killed at random moments and resumed; a pushed-down lens
//! giving exactly what the same lens gives in process, for generated
//! documents; bad documents stopping the run or skipped.

use crate::adopt::exec;
use crate::documents::{json, ok, run, users};
use crate::harness::{file, Backend, TestDb};

on_every_engine!(
    up_moves_every_document_and_down_brings_it_back,
    pushed_down_documents_equal_the_ones_moved_in_process,
    validate_checks_every_translated_document
);

pub(crate) fn migration(t: &TestDb, name: &str, toml: &str) {
    let dir = t.migrations().join(name);
    file(
        &dir.join("up.sql"),
        "-- a documents migration: see migration.toml\n",
    );
    file(&dir.join("migration.toml"), toml);
}

/// `instar up`, killed after 10 to 10 + `spread` ms (picked from the seed and the trial).
pub(crate) fn kill_up(t: &TestDb, seed: u64, trial: u64, spread: u64) {
    kill_after(t, &["up"], seed, trial, spread);
}

/// `instar ARGS`, killed after 10 to 10 + `spread` ms (picked from the seed and the trial).
pub(crate) fn kill_after(t: &TestDb, args: &[&str], seed: u64, trial: u64, spread: u64) {
    let mut child = crate::instar_at(t, &t.url).args(args).spawn().unwrap();
    let wait = 10 + (seed.wrapping_mul(2654435761).wrapping_add(trial * 977)) % spread;
    std::thread::sleep(std::time::Duration::from_millis(wait));
    let _ = child.kill();
    let _ = child.wait();
}

pub(crate) fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}

/// A small deterministic generator (xorshift), so a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

async fn up_moves_every_document_and_down_brings_it_back(b: Backend) {
    let Some(t) = users(b, "documents_up").await else {
        return;
    };
    let n = 300;
    let rows: Vec<String> = (1..=n)
        .map(|i| {
            let v = if i % 7 == 0 { "NULL" } else { "'1.0.0'" };
            format!(r#"({i}, '{{"name": "User Number{i}", "mail": "u{i}@example.org", "legacy": "l{i}"}}', {v})"#)
        })
        .collect();
    exec(&t, &format!("INSERT INTO users VALUES {}", rows.join(", "))).await;
    migration(
        &t,
        "0001_users_to_2",
        "kind = \"documents\"\n[documents]\ncollection = \"users\"\nto = \"2.0.0\"\nbatch_size = 3\n",
    );
    let list_at = |v: &str| {
        ok(
            &t,
            &["docs", "list", "users", "--at", v, "--limit", "1000"],
            None,
        )
    };
    let before_v1 = list_at("1.0.0");
    let before_v2 = list_at("2.0.0");

    let plan = ok(&t, &["plan"], None);
    assert!(
        plan.contains("documents of users move to 2.0.0"),
        "{b:?}: {plan}"
    );
    assert!(plan.contains("from 1.0.0: in process"), "{b:?}: {plan}");
    assert!(plan.contains("split name"), "{b:?}: says why: {plan}");

    let s = seed();
    for trial in 0..3u64 {
        kill_up(&t, s, trial, 150);
        // One statement, one snapshot: the killed run's last COMMIT may still
        // land on the server between two separate counts.
        let whole = t
            .count("SELECT count(*) FROM users WHERE schema_version IN ('1.0.0', '2.0.0') OR schema_version IS NULL")
            .await;
        assert_eq!(whole, n, "{b:?}: every document whole (seed {s})");
        assert_eq!(
            list_at("1.0.0"),
            before_v1,
            "{b:?}: seed {s}, trial {trial}"
        );
    }
    let (code, out, err) = run(&t, &["up"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE schema_version = '2.0.0'")
            .await,
        n,
        "{b:?}: {out}{err}"
    );
    assert_eq!(list_at("1.0.0"), before_v1, "{b:?}: lossless (seed {s})");
    assert_eq!(list_at("2.0.0"), before_v2, "{b:?}");
    let doc = json(&ok(&t, &["docs", "get", "users", "5"], None));
    assert_eq!(doc["first_name"], "User", "{b:?}: {doc}");
    let history = ok(&t, &["history"], None);
    assert!(
        history.contains(&format!("{n} rows in")),
        "{b:?}: {history}"
    );

    // Down moves them back to 1.0.0, with what 2.0.0 had no field for.
    let (code, out, err) = run(&t, &["down"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE schema_version = '1.0.0'")
            .await,
        n,
        "{b:?}"
    );
    assert_eq!(list_at("1.0.0"), before_v1, "{b:?}");
}

/// A lens of ops that fuse (rename, add, copy, set, wrap) over generated
/// documents, some of which cannot take the fused edit (a field already
/// there, a field missing): the collection moved with pushdown and a copy of
/// it moved in process hold the same documents, read the same at both
/// versions, and the pushed-down run really ran in SQL.
async fn pushed_down_documents_equal_the_ones_moved_in_process(b: Backend) {
    let Some(t) = TestDb::new(b, "documents_pushdown").await else {
        return;
    };
    let body = match b {
        Backend::Sqlite => "TEXT",
        Backend::Postgres => "JSONB",
        Backend::MySql => "JSON",
    };
    let lens = "lens:\n- rename: {source: a, destination: b}\n- add: {name: n, type: number, default: 0}\n- copy: {source: d, destination: e}\n- set: {name: s, value: {k: [1, 'x']}}\n- wrap: {name: c}\n- rename: {source: b, destination: bb}\n";
    let mut toml = String::new();
    for c in ["pushed", "here"] {
        exec(
            &t,
            &format!("CREATE TABLE {c} (id INT PRIMARY KEY, doc {body} NOT NULL, v VARCHAR(20))"),
        )
        .await;
        toml.push_str(&format!("[collections.{c}]\ntable = \"{c}\"\nkey = \"id\"\nbody = \"doc\"\nversion_column = \"v\"\nversions = [\"1.0.0\", \"2.0.0\"]\n"));
        file(
            &t.dir
                .path()
                .join(format!("collections/{c}/lenses/1.0.0--2.0.0.lens.yaml")),
            lens,
        );
    }
    std::fs::write(t.dir.path().join("instar.toml"), toml).unwrap();
    migration(&t, "0001_pushed", "kind = \"documents\"\n[documents]\ncollection = \"pushed\"\nto = \"2.0.0\"\nbatch_size = 50\n");
    migration(&t, "0002_here", "kind = \"documents\"\n[documents]\ncollection = \"here\"\nto = \"2.0.0\"\nbatch_size = 50\npushdown = false\n");

    let s = seed();
    let mut rng = Rng(s | 1);
    let values = [
        "null",
        "0",
        "-3",
        "2.5",
        "true",
        "false",
        "\"\"",
        "\"text\"",
        "\"it''s\"",
        "[]",
        "[1, null]",
        "{}",
        "{\"x\": {\"y\": [true]}}",
    ];
    let fields = ["a", "b", "c", "d", "e", "n", "s", "z"];
    let mut rows = Vec::new();
    for i in 1..=200 {
        let mut parts = Vec::new();
        for f in fields {
            // Most documents have the usual shape; some break the fused edit's conditions.
            let usual = matches!(f, "a" | "c" | "d" | "z");
            let present = if usual {
                rng.below(10) < 9
            } else {
                rng.below(10) < 1
            };
            if present {
                parts.push(format!(
                    "\"{f}\": {}",
                    values[rng.below(values.len() as u64) as usize]
                ));
            }
        }
        rows.push(format!("({i}, '{{{}}}', '1.0.0')", parts.join(", ")));
    }
    for c in ["pushed", "here"] {
        exec(&t, &format!("INSERT INTO {c} VALUES {}", rows.join(", "))).await;
        // One document written at 2.0.0 (which creates instar_complements).
        ok(&t, &["docs", "put", c, "1000"], Some(r#"{"z": 1}"#));
    }
    let plan = ok(&t, &["plan"], None);
    assert!(plan.contains("pushed down to SQL"), "{b:?}: {plan}");
    assert!(
        plan.contains("[documents] pushdown = false"),
        "{b:?}: {plan}"
    );
    let before = ok(
        &t,
        &["docs", "list", "pushed", "--at", "1.0.0", "--limit", "1000"],
        None,
    );
    // The plan's UPDATE, run by hand over the first half: it moves the
    // documents the fused edit fits, in SQL alone; `up` does the rest.
    let planned = json(&ok(&t, &["plan", "--format", "json"], None));
    let sql = planned["steps"][0]["estimate"]["documents"]["moves"][0]["sql"]
        .as_str()
        .unwrap_or_else(|| panic!("{b:?}: {planned}"))
        .replace("{batch}", "id <= 100");
    exec(&t, &sql).await;
    let by_sql = t
        .count("SELECT count(*) FROM pushed WHERE v = '2.0.0'")
        .await
        - 1;
    assert!(
        (30..100).contains(&by_sql),
        "{b:?}: {by_sql} moved in SQL (seed {s})"
    );
    let (code, out, err) = run(&t, &["up"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err} (seed {s})");
    for v in ["1.0.0", "2.0.0"] {
        let pushed = ok(
            &t,
            &["docs", "list", "pushed", "--at", v, "--limit", "1000"],
            None,
        );
        let here = ok(
            &t,
            &["docs", "list", "here", "--at", v, "--limit", "1000"],
            None,
        );
        let a: Vec<serde_json::Value> = pushed.lines().map(json).collect();
        let h: Vec<serde_json::Value> = here.lines().map(json).collect();
        assert_eq!(a.len(), 201, "{b:?}");
        for (x, y) in a.iter().zip(&h) {
            assert_eq!(x, y, "{b:?}: pushed down vs in process at {v} (seed {s})");
        }
    }
    assert_eq!(
        ok(
            &t,
            &["docs", "list", "pushed", "--at", "1.0.0", "--limit", "1000"],
            None
        ),
        before,
        "{b:?}: lossless (seed {s})"
    );
    for c in ["pushed", "here"] {
        assert_eq!(
            t.count(&format!("SELECT count(*) FROM {c} WHERE v = '2.0.0'"))
                .await,
            201,
            "{b:?}: {c}"
        );
    }
    // The documents the fused edit fits kept no complement: with pushdown they never left SQL.
    let kept = t
        .count("SELECT count(*) FROM instar_complements WHERE collection = 'pushed'")
        .await;
    assert!(kept < 200, "{b:?}: {kept} complements (seed {s})");
}

/// A document at a version no one declared, or not JSON at all, stops the
/// run naming its key (the batch rolled back, earlier batches kept); with
/// `on_error = "skip"` it stays as it is, recorded, and the others move.
#[tokio::test]
async fn a_bad_document_stops_the_run_or_is_skipped() {
    let t = users(Backend::Sqlite, "documents_bad").await.unwrap();
    let rows: Vec<String> = (1..=50)
        .map(|i| format!(r#"({i}, '{{"name": "A B{i}", "mail": "m{i}"}}', '1.0.0')"#))
        .collect();
    exec(&t, &format!("INSERT INTO users VALUES {}", rows.join(", "))).await;
    exec(
        &t,
        r#"INSERT INTO users VALUES (60, '{"name": "From Future"}', '9.9.9')"#,
    )
    .await;
    exec(&t, "INSERT INTO users VALUES (70, 'not json', '1.0.0')").await;
    let toml = "kind = \"documents\"\n[documents]\ncollection = \"users\"\nto = \"2.0.0\"\nbatch_size = 10\n";
    migration(&t, "0001_move", toml);
    let (code, out, err) = run(&t, &["up"], None);
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("key 60") && err.contains("9.9.9"), "{err}");
    assert!(err.contains("is not declared"), "{err}");
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE schema_version = '2.0.0'")
            .await,
        50,
        "batches before the bad one stay done: {err}"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE id = 60 AND schema_version = '9.9.9'")
            .await,
        1
    );

    std::fs::write(
        t.migrations().join("0001_move/migration.toml"),
        format!("{toml}on_error = \"skip\"\n"),
    )
    .unwrap();
    let (code, out, err) = run(&t, &["repair"], None);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(&t, &["up"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        t.count("SELECT count(*) FROM instar_errors WHERE error LIKE '%key 60%' OR error LIKE '%key 70%'").await,
        2,
        "{out}{err}"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE id = 70 AND doc = 'not json'")
            .await,
        1
    );
}

/// `validate = true`: a translated document that does not match its
/// version's schema (declared in `schemas/<version>.schema.json`, and the one
/// the lenses declare) is refused by a read and a write, stops or is skipped
/// by an eager move (which then runs in process, as `plan` says), and is
/// never written; an unsupported keyword is refused when the collection opens.
async fn validate_checks_every_translated_document(b: Backend) {
    let Some(t) = users(b, "documents_validate").await else {
        return;
    };
    let toml = std::fs::read_to_string(t.dir.path().join("instar.toml")).unwrap();
    std::fs::write(
        t.dir.path().join("instar.toml"),
        format!("{toml}validate = true\n"),
    )
    .unwrap();
    let schema = t
        .dir
        .path()
        .join("collections/users/schemas/2.0.0.schema.json");
    file(
        &schema,
        r#"{"type": "object", "required": ["email"], "properties": {"email": {"type": "string", "minLength": 3}}}"#,
    );
    exec(
        &t,
        r#"INSERT INTO users VALUES (1, '{"name": "Ada Lovelace", "mail": "ada@example.org"}', '1.0.0'), (2, '{"name": "Bob", "mail": 7}', '1.0.0')"#,
    )
    .await;
    let out = ok(&t, &["docs", "get", "users", "1"], None);
    assert_eq!(json(&out)["email"], "ada@example.org");
    let (code, _, err) = run(&t, &["docs", "get", "users", "2"], None);
    assert_eq!(code, 2, "{err}");
    for words in [
        "key 2",
        "does not match",
        "/email: expected string, found number",
        "2.0.0.schema.json",
    ] {
        assert!(err.contains(words), "{words:?} in {err}");
    }
    let (code, _, err) = run(
        &t,
        &["docs", "put", "users", "3", "--at", "1.0.0"],
        Some(r#"{"name": "C D", "mail": "x"}"#),
    );
    assert!(
        code == 2 && err.contains("length 1 is out of bounds"),
        "{err}"
    );
    assert_eq!(t.count("SELECT count(*) FROM users WHERE id = 3").await, 0);

    let m = "kind = \"documents\"\n[documents]\ncollection = \"users\"\nto = \"2.0.0\"\nbatch_size = 10\n";
    migration(&t, "0001_move", m);
    let plan = ok(&t, &["plan"], None);
    assert!(plan.contains("validate = true"), "{plan}");
    let (code, out, err) = run(&t, &["up"], None);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("key 2") && err.contains("/email"), "{err}");
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE schema_version = '1.0.0'")
            .await,
        2,
        "the batch rolled back"
    );
    std::fs::write(
        t.migrations().join("0001_move/migration.toml"),
        format!("{m}on_error = \"skip\"\n"),
    )
    .unwrap();
    ok(&t, &["repair"], None);
    ok(&t, &["up"], None);
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE schema_version = '2.0.0'")
            .await,
        1
    );
    assert_eq!(
        t.count("SELECT count(*) FROM instar_errors WHERE error LIKE '%/email%'")
            .await,
        1
    );

    file(&schema, r#"{"properties": {"email": {"pattern": "@"}}}"#);
    let (code, _, err) = run(&t, &["docs", "get", "users", "1"], None);
    assert!(
        code == 2
            && err.contains("2.0.0.schema.json")
            && err.contains("`pattern` is not supported"),
        "{err}"
    );
}
