//! Commands, output formats and exit codes on SQLite.

use assert_cmd::Command;
use serde_json::Value;

use crate::instar_in as instar;

fn stdout(c: &mut Command) -> String {
    String::from_utf8(c.output().expect("run").stdout).expect("utf8")
}

#[test]
fn quickstart_creates_and_migrates_a_sqlite_project() {
    let d = tempfile::tempdir().unwrap();
    instar(d.path())
        .args(["init", "demo", "--example", "--up"])
        .assert()
        .success();
    let demo = d.path().join("demo");
    assert!(demo.join("instar.db").is_file());
    let out = stdout(instar(&demo).args(["status"]));
    assert!(
        out.contains("schema version: 1.1.0") && out.contains("2 applied, 0 pending"),
        "{out}"
    );
    instar(&demo)
        .args(["status", "--require", ">=1.1, <2"])
        .assert()
        .code(0);
    instar(&demo)
        .args(["status", "--require", ">=2"])
        .assert()
        .code(1);
    instar(&demo).args(["status", "--check"]).assert().code(0);
    instar(&demo).args(["validate"]).assert().code(0);
}

#[test]
fn json_status_plan_and_history() {
    let d = tempfile::tempdir().unwrap();
    instar(d.path())
        .args(["init", ".", "--example"])
        .assert()
        .success();
    let plan: Value =
        serde_json::from_str(&stdout(instar(d.path()).args(["plan", "--format", "json"]))).unwrap();
    assert_eq!(plan["steps"].as_array().unwrap().len(), 2);
    assert_eq!(plan["steps"][1]["statements"][1]["line"], 8);
    instar(d.path())
        .args(["status", "--check"])
        .assert()
        .code(1);
    let out = stdout(instar(d.path()).args(["up", "--format", "json"]));
    let last: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(
        last["result"]["migrations"].as_array().unwrap().len(),
        2,
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("\"event\":\"migration_finished\"")),
        "events are JSON lines: {out}"
    );
    let st: Value = serde_json::from_str(&stdout(
        instar(d.path()).args(["status", "--format", "json"]),
    ))
    .unwrap();
    assert_eq!(st["schema_version"], "1.1.0");
    let hist: Value = serde_json::from_str(&stdout(
        instar(d.path()).args(["history", "--format", "json"]),
    ))
    .unwrap();
    assert_eq!(hist.as_array().unwrap().len(), 2);
}

#[test]
fn dry_run_prints_sql_and_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    instar(d.path())
        .args(["init", ".", "--example"])
        .assert()
        .success();
    let out = stdout(instar(d.path()).args(["up", "--dry-run"]));
    assert!(
        out.contains("CREATE TABLE users") && out.contains("-- line 8"),
        "{out}"
    );
    let st = stdout(instar(d.path()).args(["status"]));
    assert!(st.contains("0 applied, 2 pending"), "{st}");
}

#[test]
fn bad_input_exits_2_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    instar(d.path()).args(["init", "."]).assert().success();
    std::fs::write(d.path().join("migrations/V1_bad.sql"), "SELECT 1;").unwrap();
    let out = instar(d.path()).args(["up"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("V1_bad.sql") && err.contains("two underscores"),
        "{err}"
    );

    let d = tempfile::tempdir().unwrap();
    instar(d.path())
        .args(["init", ".", "--example"])
        .assert()
        .success();
    std::fs::write(
        d.path().join("migrations/0001_create_users/migration.toml"),
        "schema_version = [",
    )
    .unwrap();
    let out = instar(d.path()).args(["status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("0001_create_users/migration.toml"));

    let out = instar(d.path())
        .args(["--config", "nope.toml", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn broken_sql_names_file_and_line_and_validate_reports_edits() {
    let d = tempfile::tempdir().unwrap();
    instar(d.path())
        .args(["init", ".", "--example", "--up"])
        .assert()
        .success();
    instar(d.path()).args(["new", "broken"]).assert().success();
    let f = std::fs::read_dir(d.path().join("migrations"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("0003_broken"))
        .unwrap();
    std::fs::write(
        f.join("up.sql"),
        "CREATE TABLE x (id INT);\nCREATE TABLE y (id INT,);\n",
    )
    .unwrap();
    let out = instar(d.path()).args(["up"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("0003_broken/up.sql:2") && err.contains("rolled back"),
        "{err}"
    );

    std::fs::write(
        d.path().join("migrations/0001_create_users/up.sql"),
        "CREATE TABLE users (id BIGINT);\n",
    )
    .unwrap();
    let out = instar(d.path()).args(["validate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("was edited after it was applied"));
    instar(d.path())
        .args(["repair", "--accept-checksums", "--reason", "reformatted"])
        .assert()
        .success();
    instar(d.path()).args(["validate"]).assert().code(0);
}

#[test]
fn new_follows_the_folder_layout() {
    let d = tempfile::tempdir().unwrap();
    instar(d.path()).args(["init", "."]).assert().success();
    let m = d.path().join("migrations");
    std::fs::write(m.join("1_init.sql"), "SELECT 1;").unwrap();
    instar(d.path())
        .args(["new", "add", "users", "--reversible"])
        .assert()
        .success();
    assert!(m.join("2_add_users.up.sql").is_file() && m.join("2_add_users.down.sql").is_file());
}

#[test]
fn backups_restore_and_prune() {
    let d = tempfile::tempdir().unwrap();
    instar(d.path())
        .args(["init", ".", "--example", "--up"])
        .assert()
        .success();
    let list: Value = serde_json::from_str(&stdout(
        instar(d.path()).args(["backups", "--format", "json"]),
    ))
    .unwrap();
    let id = list[0]["id"].as_str().unwrap().to_string();
    instar(d.path()).args(["restore", &id]).assert().code(2);
    let out = stdout(instar(d.path()).args(["restore", &id, "--force"]));
    assert!(out.contains("kept as backup"), "{out}");
    assert!(stdout(instar(d.path()).args(["status"])).contains("0 applied, 2 pending"));
    // The database as it was before the restore is kept as a second backup.
    let listed = stdout(instar(d.path()).args(["backups"]));
    assert!(
        listed.contains(&format!("set aside before restoring {id}")),
        "{listed}"
    );
    instar(d.path())
        .args(["backups", "--prune", "--older-than", "30d"])
        .assert()
        .success();
    assert_eq!(backup_count(d.path()), 2);
}

fn backup_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join(".instar/backups"))
        .map(|r| r.count())
        .unwrap_or(0)
}

#[test]
fn verify_reruns_post_checks() {
    let d = tempfile::tempdir().unwrap();
    instar(d.path())
        .args(["init", ".", "--example", "--up"])
        .assert()
        .success();
    let out = stdout(instar(d.path()).args(["verify"]));
    assert!(out.contains("1 check(s), 0 failed"), "{out}");
    // The example's 0002 check says posts is empty: break it behind Instar's back.
    let db = d.path().join("instar.db");
    let status = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg("INSERT INTO users VALUES (1, 'a@b.c', 'now'); INSERT INTO posts VALUES (1, 1, 't', NULL);")
        .status()
        .unwrap();
    assert!(status.success());
    instar(d.path()).args(["verify"]).assert().code(1);
}

#[test]
fn new_data_migration_skeleton_reads_and_is_refused_until_edited() {
    let d = tempfile::tempdir().unwrap();
    instar(d.path()).args(["init", "."]).assert().success();
    instar(d.path())
        .args(["new", "backfill", "--data"])
        .assert()
        .success();
    let out = instar(d.path()).args(["up"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused before any batch ran") && err.contains("my_table"),
        "{err}"
    );
}

#[test]
fn read_only_commands_never_create_a_database_file() {
    let d = tempfile::tempdir().unwrap();
    instar(d.path()).args(["init", "."]).assert().success();
    std::fs::create_dir_all(d.path().join("migrations/0001_a")).unwrap();
    std::fs::write(
        d.path().join("migrations/0001_a/up.sql"),
        "CREATE TABLE a (x INT);\n",
    )
    .unwrap();
    let typo = d.path().join("typo.db");
    let url = format!("sqlite:{}", typo.display());
    for cmd in [
        &["status"][..],
        &["plan"],
        &["validate"],
        &["history"],
        &["verify"],
    ] {
        let out = instar(d.path())
            .args(["--database", &url])
            .args(cmd)
            .output()
            .unwrap();
        assert!(
            out.status.code().is_some_and(|c| c < 2),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!typo.exists(), "{cmd:?} created {}", typo.display());
    }
    let out = stdout(instar(d.path()).args(["--database", &url, "status"]));
    assert!(out.contains("0 applied, 1 pending"), "{out}");
}

#[test]
fn init_example_refuses_an_existing_project() {
    let d = tempfile::tempdir().unwrap();
    instar(d.path())
        .args(["init", ".", "--example"])
        .assert()
        .success();
    let out = instar(d.path())
        .args(["init", ".", "--example"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds migrations"));
}

#[test]
fn a_server_that_never_answers_times_out_naming_it() {
    // Accepted by the kernel's backlog, never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("migrations")).unwrap();
    for scheme in ["postgres", "mysql"] {
        let url = format!("{scheme}://u:secret@127.0.0.1:{port}/db");
        let t = std::time::Instant::now();
        let out = instar(d.path())
            .args(["--database", &url, "--connect-timeout", "1s", "status"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            t.elapsed() < std::time::Duration::from_secs(8),
            "took {:?}",
            t.elapsed()
        );
        assert!(
            err.contains(&format!("127.0.0.1:{port}")) && err.contains("connect timeout"),
            "{err}"
        );
        assert!(!err.contains("secret"), "{err}");
    }
    drop(silent);
}

#[test]
fn validate_and_status_check_report_a_dirty_migration() {
    let d = tempfile::tempdir().unwrap();
    instar(d.path()).args(["init", "."]).assert().success();
    std::fs::create_dir_all(d.path().join("migrations/0001_a")).unwrap();
    std::fs::write(
        d.path().join("migrations/0001_a/up.sql"),
        "-- instar:no-transaction\nCREATE TABLE a (x INT);\nSELEC 1;\n",
    )
    .unwrap();
    instar(d.path()).args(["up"]).assert().code(2);
    let out = instar(d.path()).args(["validate"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("0001") && text.contains("dirty"), "{text}");
    assert_eq!(text.matches("is dirty").count(), 1, "{text}");
    instar(d.path())
        .args(["status", "--check"])
        .assert()
        .code(1);
}
