//! `instar test`: migration tests on scratch databases, on every engine —
//! fixtures, migrating up and back down, assertions, expected documents,
//! JUnit, a malformed test file, the configured database never touched, and
//! a scratch database a killed run left behind dropped by the next run.

use std::time::{Duration, Instant};

use crate::documents::run;
use crate::harness::{file, migration, Backend, TestDb};

fn project(t: &TestDb) {
    let m = t.migrations();
    migration(
        &m,
        "0001_users",
        "CREATE TABLE users (id int PRIMARY KEY, name varchar(100) NOT NULL);",
        Some("DROP TABLE users;"),
    );
    migration(
        &m,
        "0002_split_name",
        "ALTER TABLE users ADD COLUMN first_name varchar(100);\nUPDATE users SET first_name = name;",
        Some("ALTER TABLE users DROP COLUMN first_name;"),
    );
    let tests = t.dir.path().join("tests");
    file(
        &tests.join("split_name.toml"),
        r#"description = "every user keeps a first name"
from = "0001"
to = "0002"
down = true
fixture = """
INSERT INTO users (id, name) VALUES (1, 'Ann');
INSERT INTO users (id, name) VALUES (2, 'Bo');
"""

[[assert]]
name = "first names filled"
sql = "SELECT count(*) = 2 FROM users WHERE first_name IS NOT NULL"

[[assert_down]]
sql = "SELECT count(*) = 2 FROM users"
"#,
    );
}

/// Scratch databases of the test's server (files of its folder) now.
async fn scratch_names(t: &TestDb) -> Vec<String> {
    let sql = match t.backend {
        Backend::Sqlite => {
            let dir = t.dir.path().join(".instar/scratch");
            let Ok(entries) = std::fs::read_dir(dir) else {
                return Vec::new();
            };
            return entries
                .flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.strip_suffix(".db").map(str::to_string)
                })
                .collect();
        }
        Backend::Postgres => "SELECT datname::text FROM pg_database WHERE datname LIKE 'instar\\_scratch\\_%'",
        Backend::MySql => "SELECT CAST(schema_name AS CHAR) FROM information_schema.schemata WHERE schema_name LIKE 'instar\\_scratch\\_%'",
    };
    use sqlx::Connection;
    let mut c = t.raw().await;
    let names: Vec<String> = sqlx::query_scalar(sql).fetch_all(&mut c).await.unwrap();
    let _ = c.close().await;
    names
}

on_every_engine!(
    tests_run_on_scratch_databases_and_report_junit,
    a_scratch_database_left_by_a_killed_run_is_dropped_next_time,
    fixture_documents_are_read_back_through_the_lenses
);

async fn fixture_documents_are_read_back_through_the_lenses(b: Backend) {
    let Some(t) = TestDb::new(b, "instar_test_docs").await else {
        return;
    };
    crate::documents::users_migrated_project(&t);
    file(
        &t.dir.path().join("tests/documents.toml"),
        r#"from = "0001"

[[documents]]
collection = "users"
key = "1"
version = "1.0.0"
body = { name = "Ada Lovelace", mail = "ada@example.org" }

[[expect]]
collection = "users"
key = "1"
body = { first_name = "Ada", last_name = "Lovelace", email = "ada@example.org" }

[[expect]]
collection = "users"
key = "1"
version = "1.0.0"
body = { name = "Ada Lovelace", mail = "ada@example.org" }

[[expect]]
collection = "users"
key = "2"
body = { first_name = "Nobody" }
"#,
    );
    let (code, out, err) = run(&t, &["test"], None);
    assert_eq!(code, 1, "{b:?}: {out}{err}");
    assert!(out.contains("FAIL documents"), "{out}");
    assert!(
        out.contains("users \"2\" at 2.0.0: expected {\"first_name\":\"Nobody\"}, got null"),
        "{b:?}: {out}"
    );
    let (_, j, _) = run(&t, &["--format", "json", "test"], None);
    let j = crate::documents::json(&j);
    let passed = j["test"]["tests"][0]["passed_assertions"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        passed, 2,
        "{b:?}: both versions of document 1 read as expected: {j}"
    );
}

async fn tests_run_on_scratch_databases_and_report_junit(b: Backend) {
    let Some(t) = TestDb::new(b, "instar_test_cli").await else {
        return;
    };
    project(&t);
    let (code, out, err) = run(&t, &["test"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    assert!(out.contains("ok   split_name"), "{out}");
    assert!(out.contains("1 tests, 1 passed, 0 failed"), "{out}");
    assert!(
        !t.table_exists("users").await && !t.table_exists("instar_history").await,
        "{b:?}: the configured database is never touched"
    );

    // A failing assertion, an expectation on a step that fails, a malformed file.
    let tests = t.dir.path().join("tests");
    file(
        &tests.join("wrong.toml"),
        "from = \"0001\"\nfixture = \"INSERT INTO users (id, name) VALUES (1, 'Ann');\"\n[[assert]]\nname = \"three users\"\nsql = \"SELECT count(*) = 3 FROM users\"\n",
    );
    file(
        &tests.join("bad_fixture.toml"),
        "from = \"0001\"\nfixture = \"\"\"\nINSERT INTO users (id, name) VALUES (1, 'Ann');\nINSERT INTO nowhere VALUES (1);\n\"\"\"\n[[assert]]\nsql = \"SELECT 1\"\n",
    );
    file(
        &tests.join("malformed.toml"),
        "from = \"0001\"\nto = 0002x\n",
    );
    let junit = t.dir.path().join("junit.xml");
    let (code, out, err) = run(&t, &["test", "--junit", junit.to_str().unwrap()], None);
    assert_eq!(code, 1, "{b:?}: {out}{err}");
    assert!(out.contains("FAIL wrong"), "{out}");
    assert!(
        out.contains("assertion \"three users\" returned"),
        "{b:?}: {out}"
    );
    assert!(out.contains("malformed.toml:2:"), "{out}");
    // The fixture's failing statement is named by its line (line 2 of the fixture text).
    assert!(out.contains("FAIL bad_fixture"), "{out}");
    assert!(out.contains("(fixture):2"), "{b:?}: {out}");
    assert!(out.contains("4 tests, 1 passed, 3 failed"), "{out}");
    let x = std::fs::read_to_string(&junit).unwrap();
    assert!(x.contains("tests=\"4\" failures=\"3\""), "{x}");
    assert!(x.contains("<testcase name=\"split_name\""), "{x}");
    assert!(
        x.contains("<failure message=\"assertion &quot;three users&quot;"),
        "{x}"
    );

    // JSON, and a filter; the scratch database each test ran on is gone.
    let (code, j, _) = run(&t, &["--format", "json", "test", "split"], None);
    assert_eq!(code, 0);
    let j = crate::documents::json(&j);
    assert_eq!(j["test"]["tests"].as_array().unwrap().len(), 1);
    assert_eq!(j["test"]["tests"][0]["passed"], true);
    let used = j["test"]["tests"][0]["scratch"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(used.starts_with("instar_scratch_"), "{j}");
    assert!(
        !scratch_names(&t).await.contains(&used),
        "{b:?}: {used} dropped"
    );
    if b == Backend::Sqlite {
        // Every file a scratch database had (WAL, run lock, owner lock) goes with it.
        let left: Vec<_> = std::fs::read_dir(t.dir.path().join(".instar/scratch"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{left:?}");
    }
}

async fn a_scratch_database_left_by_a_killed_run_is_dropped_next_time(b: Backend) {
    let Some(t) = TestDb::new(b, "instar_test_kill").await else {
        return;
    };
    project(&t);
    let slow = t.dir.path().join("tests/slow.toml");
    file(
        &slow,
        &format!(
            "from = \"0001\"\nfixture = \"{}\"\n[[assert]]\nsql = \"SELECT 1\"\n",
            t.sleep_sql(30)
        ),
    );
    let before = scratch_names(&t).await;
    let mut child = crate::instar_at(&t, &t.url)
        .args(["test", "slow"])
        .spawn()
        .unwrap();
    // Wait (bounded) until its scratch database exists, then kill it.
    let started = Instant::now();
    let left = loop {
        let now: Vec<String> = scratch_names(&t)
            .await
            .into_iter()
            .filter(|n| !before.contains(n))
            .collect();
        if !now.is_empty() {
            break now;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{b:?}: no scratch database appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        scratch_names(&t).await.contains(&left[0]),
        "{b:?}: left behind"
    );
    std::fs::remove_file(&slow).unwrap();
    let (code, out, err) = run(&t, &["test"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    assert!(
        out.contains(&format!("dropped scratch database {}", left[0])),
        "{b:?}: {out}"
    );
    assert!(
        !scratch_names(&t).await.contains(&left[0]),
        "{b:?}: dropped"
    );
}
