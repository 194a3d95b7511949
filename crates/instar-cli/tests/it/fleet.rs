//! Fleets (`instar fleet up|status|check`): SQLite tenant files in waves with
//! a canary, a failing tenant stopping the rollout and a resume running
//! exactly the rest; a rollout killed at random moments; two rollouts at
//! once; bad target lists; a tenant newer than the files; an unreachable
//! one; drift; PostgreSQL schemas and MySQL databases per tenant, each with
//! its own history table.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::harness::{file, migration, Backend, TestDb};

fn instar(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("instar"));
    c.current_dir(dir)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("INSTAR_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let o: Output = instar(dir, args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A project with `n` SQLite tenants (`tenants/t01.db` …) and two migrations.
fn project(n: usize, fleet: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("tenants")).unwrap();
    for i in 1..=n {
        rusqlite::Connection::open(d.join(format!("tenants/t{i:02}.db"))).unwrap();
    }
    migration(
        &d.join("migrations"),
        "0001_notes",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);",
        None,
    );
    migration(
        &d.join("migrations"),
        "0002_seed",
        "INSERT INTO notes (id, body) VALUES (1, 'welcome');",
        None,
    );
    file(
        &d.join("instar.toml"),
        &format!(
            "[database]\nurl = \"sqlite:catalogue.db\"\n[run]\nbackup = false\n[fleet]\n{fleet}"
        ),
    );
    dir
}

fn sqlite(dir: &Path, tenant: usize, sql: &str) -> i64 {
    let c = rusqlite::Connection::open(dir.join(format!("tenants/t{tenant:02}.db"))).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn exec(dir: &Path, tenant: usize, sql: &str) {
    let c = rusqlite::Connection::open(dir.join(format!("tenants/t{tenant:02}.db"))).unwrap();
    c.execute_batch(sql).unwrap();
}

#[test]
fn a_canary_waves_a_failing_tenant_and_a_resume() {
    let dir = project(
        8,
        "glob = \"tenants/*.db\"\ncanary = [\"tenants/t01.db\", \"tenants/t02.db\"]\nwaves = [\"50%\", \"100%\"]\nparallel = 2\n",
    );
    let d = dir.path();
    // t04 already has a `notes` table of its own: 0001 fails there, and is rolled back.
    exec(d, 4, "CREATE TABLE notes (x TEXT);");
    let (code, out, err) = run(d, &["fleet", "up"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("canary 2, wave 1 2, wave 2 4"), "{out}");
    assert!(out.contains("FAILED tenants/t04.db"), "{out}");
    assert!(out.contains("rollout stopped after wave 1"), "{out}");
    assert!(out.contains("4 not run"), "{out}");
    for t in [1, 2, 3] {
        assert_eq!(sqlite(d, t, "SELECT count(*) FROM notes"), 1, "t{t}");
    }
    assert_eq!(
        sqlite(
            d,
            4,
            "SELECT count(*) FROM sqlite_master WHERE name = 'instar_history'"
        ),
        1
    );
    assert_eq!(
        sqlite(
            d,
            4,
            "SELECT count(*) FROM instar_history WHERE event = 'apply'"
        ),
        0,
        "t04 untouched"
    );
    for t in 5..=8 {
        assert_eq!(
            sqlite(d, t, "SELECT count(*) FROM sqlite_master"),
            0,
            "t{t} not run"
        );
    }
    let (code, out, _) = run(d, &["fleet", "status"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("done 3") && out.contains("failed 1") && out.contains("failed tenants/t04.db"),
        "{out}"
    );
    let (_, out, _) = run(d, &["fleet", "status", "--target", "tenants/t04.db"]);
    assert!(out.contains("failed") && out.contains("error:"), "{out}");
    // Its database read now: rolled back to before the failed migration.
    assert!(out.contains("now: schema version -, 2 pending"), "{out}");
    let (_, out, _) = run(
        d,
        &[
            "--format",
            "json",
            "fleet",
            "status",
            "--target",
            "tenants/t05.db",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(v["state"].is_null(), "its wave never began: {out}");
    assert_eq!(v["now"]["pending"], 2, "{out}");
    let (code, _, err) = run(d, &["fleet", "status", "--target", "tenants/nope.db"]);
    assert_eq!(code, 2);
    assert!(err.contains("neither a target of the fleet"), "{err}");
    // The fix, then the resume: exactly the tenants not done.
    exec(d, 4, "DROP TABLE notes;");
    let (code, out, err) = run(d, &["--format", "json", "fleet", "up"]);
    assert_eq!(code, 0, "{out}{err}");
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(last["result"]["skipped"], 3, "{out}");
    assert_eq!(last["result"]["done"], 5, "{out}");
    for t in 1..=8 {
        assert_eq!(
            sqlite(
                d,
                t,
                "SELECT count(*) FROM instar_history WHERE event = 'apply'"
            ),
            2,
            "t{t}: each migration once"
        );
    }
    let (code, out, _) = run(d, &["fleet", "up"]);
    assert_eq!(code, 0);
    assert!(out.contains("8 already done"), "{out}");
    // Drift: one tenant gains an index by hand.
    let (code, out, _) = run(d, &["fleet", "check"]);
    assert_eq!(code, 0, "{out}");
    exec(d, 6, "CREATE INDEX notes_body ON notes (body);");
    let (code, out, _) = run(d, &["fleet", "check"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("tenants/t06.db: schema differs from most tenants: + index notes_body"),
        "{out}"
    );
    assert!(
        out.contains("7 of 8 tenant(s) have the majority's schema"),
        "{out}"
    );
}

#[test]
fn a_tenant_newer_than_the_files_is_refused_untouched_and_others_go_on() {
    let dir = project(3, "glob = \"tenants/*.db\"\n");
    let d = dir.path();
    // t02 was migrated by a newer release: 0009 is not in these files.
    let ahead = d.join("ahead");
    migration(
        &ahead,
        "0001_notes",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);",
        None,
    );
    migration(
        &ahead,
        "0002_seed",
        "INSERT INTO notes (id, body) VALUES (1, 'welcome');",
        None,
    );
    migration(
        &ahead,
        "0009_later",
        "CREATE TABLE later (id INTEGER);",
        None,
    );
    let (code, out, err) = run(
        d,
        &[
            "--database",
            "sqlite:tenants/t02.db",
            "--migrations",
            "ahead",
            "up",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    migration(
        &d.join("migrations"),
        "0003_more",
        "INSERT INTO notes (id, body) VALUES (2, 'more');",
        None,
    );
    let (code, out, _) = run(d, &["fleet", "up", "--continue-on-error"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("FAILED tenants/t02.db") && out.contains("newer"),
        "{out}"
    );
    assert_eq!(sqlite(d, 2, "SELECT count(*) FROM notes"), 1, "untouched");
    assert_eq!(sqlite(d, 1, "SELECT count(*) FROM notes"), 2);
    assert_eq!(sqlite(d, 3, "SELECT count(*) FROM notes"), 2);
}

#[test]
fn a_killed_rollout_resumes_exactly_the_rest() {
    let dir = project(24, "glob = \"tenants/*.db\"\nparallel = 2\n");
    let d = dir.path();
    for i in 3..=6 {
        migration(
            &d.join("migrations"),
            &format!("000{i}_m"),
            &format!("INSERT INTO notes (id, body) VALUES ({i}, 'n');"),
            None,
        );
    }
    let mut seed = u64::from(std::process::id()) | 1;
    let kills: u64 = std::env::var("INSTAR_KILL_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
        .clamp(4, 20);
    for _ in 0..kills {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut c = instar(d, &["fleet", "up"]).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(20 + seed % 300));
        let _ = c.kill();
        let _ = c.wait();
    }
    let (code, out, err) = run(d, &["fleet", "up"]);
    assert_eq!(code, 0, "{out}{err}");
    for t in 1..=24 {
        assert_eq!(
            sqlite(
                d,
                t,
                "SELECT count(*) FROM instar_history WHERE event = 'apply'"
            ),
            6,
            "t{t}"
        );
        assert_eq!(sqlite(d, t, "SELECT count(*) FROM notes"), 5, "t{t}");
    }
}

#[test]
fn two_rollouts_at_once_never_double_work() {
    let dir = project(40, "glob = \"tenants/*.db\"\n");
    let d = dir.path();
    let first = instar(d, &["fleet", "up"]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let (code, out, err) = run(d, &["fleet", "up"]);
    let first = first.wait_with_output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    if code == 2 {
        assert!(
            err.contains("another `instar fleet up` is rolling this fleet out"),
            "{err}"
        );
    } else {
        // It started after the first ended: everything was done already.
        assert!(out.contains("40 already done"), "{out}");
    }
    for t in 1..=40 {
        assert_eq!(
            sqlite(
                d,
                t,
                "SELECT count(*) FROM instar_history WHERE event = 'apply'"
            ),
            2,
            "t{t}"
        );
    }
}

#[test]
fn bad_target_lists_are_named_and_nothing_runs() {
    for (fleet, says) in [
        (
            "command = \"echo tenants/t01.db; exit 3\"\n",
            "failed (exit status: 3)",
        ),
        (
            "command = \"printf 'tenants/t01.db\\\\nnot a target\\\\n'\"\n",
            "\"not a target\" is not a target",
        ),
        (
            "query = \"SELECT 42\"\n",
            "row 1 is [Number(42)], not one text column",
        ),
        ("glob = \"nowhere/*.db\"\n", "glob: \"nowhere/*.db\""),
        ("glob = \"tenants/*.sqlite\"\n", "the fleet is empty"),
        (
            "targets = [\"tenants/t01.db\", \"tenants/t01.db\"]\n",
            "listed twice",
        ),
        ("targets = [\"acme\"]\n", "set [fleet] server"),
        ("waves = [\"half\"]\nglob = \"tenants/*.db\"\n", "waves:"),
        (
            "waves = [\"50%\", \"25%\"]\nglob = \"tenants/*.db\"\n",
            "\"25%\" is not above the wave before it",
        ),
        (
            "canary = [\"tenants/t99.db\"]\nglob = \"tenants/*.db\"\n",
            "is not a target of the fleet",
        ),
    ] {
        let dir = project(2, fleet);
        let d = dir.path();
        let (code, out, err) = run(d, &["fleet", "up"]);
        assert_eq!(code, 2, "{fleet}: {out}{err}");
        assert!(err.contains(says), "{fleet}: {err}");
        assert_eq!(
            sqlite(d, 1, "SELECT count(*) FROM sqlite_master"),
            0,
            "{fleet}: nothing ran"
        );
    }
}

#[test]
fn an_unreachable_tenant_is_recorded_and_the_rest_go_on() {
    let dir = project(
        2,
        "glob = \"tenants/*.db\"\ntargets = [\"postgres://nobody@127.0.0.1:1/none\"]\n",
    );
    let d = dir.path();
    let (code, out, _) = run(d, &["fleet", "up", "--continue-on-error"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("FAILED postgres://nobody@127.0.0.1:1/none"),
        "{out}"
    );
    assert_eq!(sqlite(d, 1, "SELECT count(*) FROM notes"), 1);
    assert_eq!(sqlite(d, 2, "SELECT count(*) FROM notes"), 1);
}

#[tokio::test]
async fn postgresql_schemas_and_mysql_databases_each_keep_their_history() {
    for b in [Backend::Postgres, Backend::MySql] {
        let Some(t) = TestDb::new(b, "fleet_servers").await else {
            continue;
        };
        let names = ["acme", "globex", "initech"];
        let names: Vec<String> = names
            .iter()
            .map(|n| format!("{n}_{}", std::process::id()))
            .collect();
        let mut c = t.raw().await;
        for n in &names {
            let sql = match b {
                Backend::Postgres => format!("CREATE SCHEMA {n}"),
                _ => format!("CREATE DATABASE {n}"),
            };
            sqlx::raw_sql(&sql).execute(&mut c).await.unwrap();
        }
        sqlx::raw_sql("CREATE TABLE tenants (name VARCHAR(100))")
            .execute(&mut c)
            .await
            .unwrap();
        for n in &names {
            sqlx::raw_sql(&format!("INSERT INTO tenants VALUES ('{n}')"))
                .execute(&mut c)
                .await
                .unwrap();
        }
        // A tenant the catalogue lists whose schema (database) does not exist.
        let ghost = format!("ghost_{}", std::process::id());
        sqlx::raw_sql(&format!("INSERT INTO tenants VALUES ('{ghost}')"))
            .execute(&mut c)
            .await
            .unwrap();
        migration(
            &t.migrations(),
            "0001_notes",
            "CREATE TABLE notes (id INT PRIMARY KEY, body VARCHAR(50));",
            None,
        );
        file(
            &t.dir.path().join("instar.toml"),
            &format!("[run]\nbackup = false\n[fleet]\nquery = \"SELECT name FROM tenants ORDER BY name\"\ncatalogue = \"{}\"\nserver = \"{}\"\nparallel = 2\n", t.url, t.url),
        );
        let m = t.migrations();
        let m = m.to_str().unwrap();
        // The dry run reads each tenant and changes none: the ghost refused.
        let (code, out, err) = run(
            t.dir.path(),
            &["--migrations", m, "fleet", "up", "--dry-run"],
        );
        assert_eq!(code, 2, "{b:?}: {out}{err}");
        assert!(out.contains(&format!("REFUSED {ghost}")), "{b:?}: {out}");
        for n in &names {
            assert!(
                out.contains(&format!("{n}: 1 pending (0001)")),
                "{b:?}: {out}"
            );
        }
        let listed = names
            .iter()
            .chain([&ghost])
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let made = format!(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema IN ({listed}) AND table_name = 'instar_history'"
        );
        assert_eq!(
            t.count(&made).await,
            0,
            "{b:?}: the dry run made no history table"
        );
        assert!(
            !t.dir.path().join(".instar/fleet.db").exists(),
            "{b:?}: no state file"
        );
        let (code, out, err) = run(
            t.dir.path(),
            &["--migrations", m, "fleet", "up", "--continue-on-error"],
        );
        assert_eq!(code, 2, "{b:?}: {out}{err}");
        assert!(out.contains(&format!("FAILED {ghost}")), "{b:?}: {out}");
        let stray = match b {
            Backend::Postgres => {
                format!("SELECT count(*) FROM pg_namespace WHERE nspname = '{ghost}'")
            }
            _ => format!(
                "SELECT count(*) FROM information_schema.schemata WHERE schema_name = '{ghost}'"
            ),
        };
        assert_eq!(
            t.count(&stray).await,
            0,
            "{b:?}: no stray schema or database made for it"
        );
        sqlx::raw_sql(&format!("DELETE FROM tenants WHERE name = '{ghost}'"))
            .execute(&mut c)
            .await
            .unwrap();
        let (code, out, err) = run(t.dir.path(), &["--migrations", m, "fleet", "up"]);
        assert_eq!(code, 0, "{b:?}: {out}{err}");
        assert!(out.contains("3 already done"), "{b:?}: {out}");
        for n in &names {
            let history = format!("SELECT count(*) FROM {n}.instar_history WHERE event = 'apply'");
            assert_eq!(t.count(&history).await, 1, "{b:?} {n}: its own history");
            assert_eq!(
                t.count(&format!("SELECT count(*) FROM {n}.notes")).await,
                0,
                "{b:?} {n}"
            );
        }
        let (code, out, _) = run(t.dir.path(), &["--migrations", m, "fleet", "check"]);
        assert_eq!(code, 0, "{b:?}: {out}");
        for n in &names {
            let sql = match b {
                Backend::Postgres => format!("DROP SCHEMA {n} CASCADE"),
                _ => format!("DROP DATABASE {n}"),
            };
            sqlx::raw_sql(&sql).execute(&mut c).await.unwrap();
        }
    }
}

#[test]
fn a_dry_run_shows_every_tenant_and_runs_nothing() {
    let dir = project(4, "glob = \"tenants/*.db\"\ncanary = 1\n");
    let d = dir.path();
    // t02 applied the files, then 0002 was edited: its `up` would refuse.
    let (code, out, err) = run(d, &["--database", "sqlite:tenants/t02.db", "up"]);
    assert_eq!(code, 0, "{out}{err}");
    let seed = d.join("migrations/0002_seed/up.sql");
    let text = std::fs::read_to_string(&seed).unwrap();
    std::fs::write(&seed, format!("{text}\n-- edited after t02 ran it\n")).unwrap();
    let before: Vec<Vec<u8>> = (1..=4)
        .map(|t| std::fs::read(d.join(format!("tenants/t{t:02}.db"))).unwrap())
        .collect();

    let (code, out, err) = run(d, &["fleet", "up", "--dry-run"]);
    assert_eq!(code, 2, "a tenant would be refused: {out}{err}");
    assert!(out.contains("dry run: nothing is run or recorded"), "{out}");
    assert!(out.contains("canary: 1 tenant(s)"), "{out}");
    assert!(
        out.contains("tenants/t01.db: 2 pending (0001, 0002)"),
        "{out}"
    );
    assert!(out.contains("REFUSED tenants/t02.db"), "{out}");
    assert!(out.contains("wave 1: 3 tenant(s)"), "{out}");
    // The SQL once, whatever the number of tenants.
    assert_eq!(out.matches("CREATE TABLE notes").count(), 1, "{out}");
    assert_eq!(out.matches("INSERT INTO notes").count(), 1, "{out}");

    let (_, out, _) = run(d, &["--format", "json", "fleet", "up", "--dry-run"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["targets"].as_array().unwrap().len(), 4, "{v}");
    assert_eq!(v["targets"][0]["wave"], 0, "{v}");
    assert!(v["targets"][1]["error"].is_string(), "{v}");
    let versions: Vec<&String> = v["sql"].as_object().unwrap().keys().collect();
    assert_eq!(versions, ["0001", "0002"], "{v}");
    // Nothing ran, nothing was recorded.
    for (i, b) in before.iter().enumerate() {
        let now = std::fs::read(d.join(format!("tenants/t{:02}.db", i + 1))).unwrap();
        assert!(&now == b, "t{:02} changed", i + 1);
    }
    assert!(!d.join(".instar/fleet.db").exists());
}

#[test]
fn files_edited_during_a_rollout_wait_for_the_next_one() {
    // The list command adds a migration the first time it runs: the rollout
    // already read its files, so every tenant gets the same two, and the
    // next rollout (a new release) brings the third to all.
    let dir = project(3, "command = \"sh list.sh\"\n");
    let d = dir.path();
    file(
        &d.join("list.sh"),
        "if [ ! -d migrations/0003_more ]; then\n  mkdir migrations/0003_more\n  printf \"INSERT INTO notes (id, body) VALUES (3, 'late');\\n\" > migrations/0003_more/up.sql\nfi\nls tenants/*.db\n",
    );
    let applies = |t| {
        sqlite(
            d,
            t,
            "SELECT count(*) FROM instar_history WHERE event = 'apply'",
        )
    };
    let (code, out, err) = run(d, &["fleet", "up"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(d.join("migrations/0003_more/up.sql").exists());
    for t in 1..=3 {
        assert_eq!(applies(t), 2, "t{t}: the files as the rollout read them");
    }
    let (code, out, err) = run(d, &["fleet", "up"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("3 done now, 0 already done"), "{out}");
    for t in 1..=3 {
        assert_eq!(applies(t), 3, "t{t}");
    }
}
