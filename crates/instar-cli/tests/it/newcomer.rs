//! What a newcomer trips over: a statement PostgreSQL refuses inside a
//! transaction, resuming a failed down, reverting everything, a dirty
//! migration in `validate`, and `-v` showing every statement.

use crate::harness::{file, migration, Backend, TestDb};

fn run(t: &TestDb, args: &[&str]) -> (i32, String, String) {
    let out = crate::instar_at(t, &t.url).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `CREATE INDEX CONCURRENTLY` in a file that runs in a transaction: `plan`
/// warns with file, line and the fix; `up` fails, rolled back, with the two
/// fixes; with the directive it runs. Instar never changes how a file runs.
#[tokio::test]
async fn a_statement_postgres_refuses_in_a_transaction_is_named_with_the_fix() {
    let Some(t) = TestDb::new(Backend::Postgres, "concurrently").await else {
        return;
    };
    migration(
        &t.migrations(),
        "0001_index",
        "CREATE TABLE t (x INT);\nCREATE INDEX CONCURRENTLY t_x ON t (x);\n",
        None,
    );
    let (code, plan, _) = run(&t, &["plan"]);
    assert_eq!(code, 0, "{plan}");
    for words in [
        "WARNING",
        "0001_index/up.sql:2",
        "CREATE INDEX CONCURRENTLY",
        "-- instar:no-transaction",
        "migration.toml",
    ] {
        assert!(plan.contains(words), "{words:?} in {plan}");
    }
    let (code, _, err) = run(&t, &["up", "--no-backup"]);
    assert_eq!(code, 2, "{err}");
    for words in [
        "up.sql:2",
        "cannot run inside a transaction",
        "-- instar:no-transaction",
        "transaction = false",
        "rolled back",
    ] {
        assert!(err.contains(words), "{words:?} in {err}");
    }
    assert!(!t.table_exists("t").await, "rolled back");
    file(
        &t.migrations().join("0001_index/up.sql"),
        "-- instar:no-transaction\nCREATE TABLE t (x INT);\nCREATE INDEX CONCURRENTLY t_x ON t (x);\n",
    );
    let (code, _, err) = run(&t, &["up", "--no-backup"]);
    assert_eq!(code, 0, "{err}");
}

/// A down run outside a transaction that fails is resumed by `down`, and says so.
#[tokio::test]
async fn a_failed_down_says_down_resumes_it() {
    let t = TestDb::sqlite("failed_down").await;
    migration(
        &t.migrations(),
        "0001_a",
        "CREATE TABLE a (x INT);\nCREATE TABLE b (x INT);\n",
        Some("-- instar:no-transaction\nDROP TABLE b;\nDROP TABLE nope;\nDROP TABLE a;\n"),
    );
    assert_eq!(run(&t, &["up", "--no-backup"]).0, 0);
    let (code, _, err) = run(&t, &["down", "--no-backup"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("run `instar down` to resume"), "{err}");
    assert!(!err.contains("`instar up` to resume"), "{err}");
    file(
        &t.migrations().join("0001_a/down.sql"),
        "-- instar:no-transaction\nDROP TABLE b;\nDROP TABLE IF EXISTS nope;\nDROP TABLE a;\n",
    );
    let (code, _, err) = run(&t, &["down", "--no-backup"]);
    assert_eq!(code, 0, "{err}");
    assert!(!t.table_exists("a").await && !t.table_exists("b").await);
}

/// `down --to 0` and `down --all` revert every applied migration.
#[tokio::test]
async fn everything_can_be_reverted() {
    let t = TestDb::sqlite("revert_all").await;
    for (v, table) in [("0001_a", "a"), ("0002_b", "b"), ("0003_c", "c")] {
        migration(
            &t.migrations(),
            v,
            &format!("CREATE TABLE {table} (x INT);\n"),
            Some(&format!("DROP TABLE {table};\n")),
        );
    }
    for how in [&["down", "--to", "0"][..], &["down", "--all"][..]] {
        assert_eq!(run(&t, &["up", "--no-backup"]).0, 0);
        let (code, out, err) = run(&t, &[how, &["--no-backup"]].concat());
        assert_eq!(code, 0, "{how:?}: {out}{err}");
        for table in ["a", "b", "c"] {
            assert!(!t.table_exists(table).await, "{how:?}: {table} reverted");
        }
        assert!(
            run(&t, &["status"]).1.contains("0 applied, 3 pending"),
            "{how:?}"
        );
    }
    let (code, _, err) = run(&t, &["plan", "--all"]);
    assert_eq!(code, 2, "--all goes with --down: {err}");
}

/// `validate` exits 1 on a dirty migration and names it.
#[tokio::test]
async fn validate_names_a_dirty_migration() {
    let t = TestDb::sqlite("validate_dirty").await;
    migration(
        &t.migrations(),
        "0001_a",
        "-- instar:no-transaction\nCREATE TABLE a (x INT);\nINSERT INTO nope VALUES (1);\n",
        None,
    );
    assert_eq!(run(&t, &["up", "--no-backup"]).0, 2);
    let (code, out, err) = run(&t, &["validate"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!((out.clone() + &err).contains("0001") && (out + &err).contains("dirty"));
}

/// `-v` shows every statement as it is sent, not only each migration's first.
#[tokio::test]
async fn verbose_shows_every_statement() {
    let t = TestDb::sqlite("verbose_statements").await;
    migration(
        &t.migrations(),
        "0001_a",
        "CREATE TABLE a (x INT);\nINSERT INTO a VALUES (1);\nINSERT INTO a VALUES (2);\n",
        None,
    );
    let (code, _, err) = run(&t, &["-v", "up", "--no-backup"]);
    assert_eq!(code, 0, "{err}");
    for line in [
        "line 1: CREATE TABLE a",
        "line 2: INSERT INTO a VALUES (1)",
        "line 3: INSERT INTO a VALUES (2)",
    ] {
        assert!(err.contains(line), "{line:?} in {err}");
    }
}

/// `init --layout L` records the layout, and `new` writes the next file in it,
/// which `up` then runs: for each layout a project may already use.
#[test]
fn new_follows_the_projects_layout() {
    for (layout, made) in [
        ("dbmate", "_add_x.sql"),
        ("goose", "_add_x.sql"),
        ("dotted", ".add_x.up.sql"),
        ("popx", "_add_x.up.sql"),
    ] {
        let d = tempfile::tempdir().unwrap();
        crate::instar_in(d.path())
            .args(["init", "--layout", layout])
            .assert()
            .success();
        crate::instar_in(d.path())
            .args(["new", "add_x", "-r"])
            .assert()
            .success();
        let files: Vec<String> = std::fs::read_dir(d.path().join("migrations"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            files.iter().any(|f| f.ends_with(made)),
            "{layout}: {files:?}"
        );
        let out = crate::instar_in(d.path())
            .args(["up", "--no-backup"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{layout}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let status = crate::instar_in(d.path()).arg("status").output().unwrap();
        let text = String::from_utf8_lossy(&status.stdout);
        assert!(
            text.contains(&format!("layout: {layout}")) && text.contains("1 applied"),
            "{layout}: {text}"
        );
    }
}

on_every_engine!(a_popx_folder_runs_each_engines_files);

/// An ory/popx folder: each engine runs its own files (20-digit versions,
/// `.autocommit`, dialect-free fallback), and a migration for another engine
/// only does not exist here.
async fn a_popx_folder_runs_each_engines_files(b: Backend) {
    let Some(t) = TestDb::new(b, "popx").await else {
        return;
    };
    let m = t.migrations();
    let v1 = "20150100000001000000_networks";
    file(
        &m.join(format!("{v1}.sqlite3.up.sql")),
        "CREATE TABLE networks (id TEXT PRIMARY KEY, engine TEXT DEFAULT 'sqlite');\n",
    );
    file(
        &m.join(format!("{v1}.postgres.up.sql")),
        "CREATE TABLE networks (id UUID PRIMARY KEY, engine TEXT DEFAULT 'postgres');\n",
    );
    file(
        &m.join(format!("{v1}.mysql.up.sql")),
        "CREATE TABLE networks (id CHAR(36) PRIMARY KEY, engine VARCHAR(20) DEFAULT 'mysql');\n",
    );
    let v2 = "20150100000002000000_index";
    file(
        &m.join(format!("{v2}.up.sql")),
        "CREATE INDEX networks_engine ON networks (engine);\n",
    );
    file(
        &m.join(format!("{v2}.postgres.autocommit.up.sql")),
        "CREATE INDEX CONCURRENTLY networks_engine ON networks (engine);\n",
    );
    file(
        &m.join("20150100000003000000_cockroach_only.cockroach.up.sql"),
        "SELECT crdb_internal.force_error('x', 'y');\n",
    );
    let (code, out, err) = run(&t, &["up", "--no-backup"]);
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    exec_insert(&t).await;
    let engine = match b {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
        Backend::MySql => "mysql",
    };
    assert_eq!(
        t.count(&format!(
            "SELECT count(*) FROM networks WHERE engine = '{engine}'"
        ))
        .await,
        1,
        "{b:?}: the engine's own file ran"
    );
    assert_eq!(
        t.events("apply").await,
        2,
        "{b:?}: the cockroach-only migration does not exist here"
    );
    let (code, out, _) = run(&t, &["status"]);
    assert!(
        code == 0 && out.contains("2 applied, 0 pending") && out.contains("layout: popx"),
        "{out}"
    );
}

async fn exec_insert(t: &TestDb) {
    let id = "00000000-0000-0000-0000-000000000001";
    crate::adopt::exec(t, &format!("INSERT INTO networks (id) VALUES ('{id}')")).await;
}
