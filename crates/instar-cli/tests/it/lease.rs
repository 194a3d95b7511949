//! The run lock as a lease (`[run] lock = "lease"`): runners on different
//! connections apply each migration exactly once; a killed holder's lease
//! is taken over once it expires; a holder paused past its lease stops
//! before writing (never two runners writing); `instar unlock` breaks a
//! stale lease with an audit row. PostgreSQL and MariaDB (SQLite's run lock
//! is its lock file: a lease is refused there).

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::documents::run;
use crate::harness::{file, migration, Backend, TestDb};

fn config(t: &TestDb, lock: &str, lease: &str) {
    file(
        &t.dir.path().join("instar.toml"),
        &format!("[run]\nlock = \"{lock}\"\nlease = \"{lease}\"\nbackup = false\n"),
    );
}

/// A statement that takes `secs` seconds.
fn sleep_sql(b: Backend, secs: f64) -> String {
    match b {
        Backend::Postgres => format!("SELECT pg_sleep({secs})"),
        _ => format!("SELECT SLEEP({secs})"),
    }
}

/// Migrations `first..first + n`, each sleeping `secs` then creating its table.
fn migrations(t: &TestDb, first: usize, n: usize, secs: f64) {
    for i in first..first + n {
        migration(
            &t.migrations(),
            &format!("{i:04}_t{i}"),
            &format!(
                "{};\nCREATE TABLE t{i} (id int PRIMARY KEY);",
                sleep_sql(t.backend, secs)
            ),
            None,
        );
    }
}

fn spawn_up(t: &TestDb) -> Child {
    crate::instar_at(t, &t.url).arg("up").spawn().unwrap()
}

fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status();
}

async fn applied_once(t: &TestDb, versions: std::ops::Range<usize>) {
    let log = history(t).await;
    for i in versions {
        assert_eq!(
            t.count(&format!(
                "SELECT count(*) FROM instar_history WHERE version = '{i:04}' AND event = 'apply'"
            ))
            .await,
            1,
            "{:?}: migration {i:04} applied exactly once; the history:\n{log}",
            t.backend
        );
        assert!(t.table_exists(&format!("t{i}")).await, "t{i}");
    }
}

fn servers(test: &str) -> Vec<Backend> {
    let _ = test;
    vec![Backend::Postgres, Backend::MySql]
}

#[tokio::test]
async fn runners_sharing_a_lease_apply_each_migration_once() {
    for b in servers("lease_runners") {
        let Some(t) = TestDb::new(b, "lease_runners").await else {
            continue;
        };
        config(&t, "lease", "2s");
        // Three rounds, three runners each, started a random few ms apart.
        let seed = crate::documents_eager::seed();
        for round in 0..3usize {
            migrations(&t, 1 + round * 4, 4, 0.05);
            let mut runners = Vec::new();
            for r in 0..3u64 {
                let gap = (seed.wrapping_add(round as u64 * 31 + r * 7)) % 40;
                std::thread::sleep(Duration::from_millis(gap));
                runners.push(spawn_up(&t));
            }
            for c in runners {
                let out = c.wait_with_output().unwrap();
                assert!(
                    out.status.success(),
                    "{b:?} seed {seed}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            applied_once(&t, 1..1 + (round + 1) * 4).await;
        }
        let (_, out, _) = run(&t, &["status"], None);
        assert!(out.contains("lock: lease, free"), "{b:?}: {out}");
    }
}

#[tokio::test]
async fn a_killed_holders_lease_is_taken_over_once_it_expires() {
    for b in servers("lease_killed") {
        let Some(t) = TestDb::new(b, "lease_killed").await else {
            continue;
        };
        config(&t, "lease", "2s");
        migrations(&t, 1, 1, 3.0);
        let mut a = spawn_up(&t);
        std::thread::sleep(Duration::from_millis(700));
        a.kill().unwrap();
        let _ = a.wait();
        // The dead run's lease is still there and not expired: status names it,
        // unlock refuses it.
        let (_, out, _) = run(&t, &["status"], None);
        assert!(out.contains("lock: lease held by run"), "{b:?}: {out}");
        let (code, _, err) = run(&t, &["unlock"], None);
        assert_ne!(code, 0, "{b:?}");
        assert!(err.contains("not stale"), "{b:?}: {err}");
        // Another runner waits for it to expire, takes it over, and applies.
        let t0 = Instant::now();
        let (code, out, err) = run(&t, &["up"], None);
        assert_eq!(code, 0, "{b:?}: {out}{err}");
        assert!(
            t0.elapsed() >= Duration::from_millis(800),
            "{b:?}: waited {:?} for the lease",
            t0.elapsed()
        );
        if b == Backend::Postgres {
            // The killed run's transaction was rolled back: applied once, by the second.
            applied_once(&t, 1..2).await;
        } else {
            // MariaDB: the killed run left the migration dirty or applied it; up finished it once.
            assert_eq!(
                t.count("SELECT count(*) FROM instar_history WHERE version = '0001' AND event = 'apply'")
                    .await,
                1,
                "{out}{err}"
            );
        }
    }
}

#[tokio::test]
async fn unlock_breaks_a_dead_runs_lease_with_an_audit_row() {
    for b in servers("lease_unlock") {
        let Some(t) = TestDb::new(b, "lease_unlock").await else {
            continue;
        };
        config(&t, "lease", "30s");
        migrations(&t, 1, 1, 5.0);
        let mut a = spawn_up(&t);
        std::thread::sleep(Duration::from_millis(800));
        a.kill().unwrap();
        let _ = a.wait();
        let (code, out, err) = run(&t, &["unlock", "--force"], None);
        assert_eq!(code, 0, "{b:?}: {out}{err}");
        assert!(
            out.contains("broke the run lock's lease held by run"),
            "{out}"
        );
        assert_eq!(
            t.count("SELECT count(*) FROM instar_history WHERE event = 'unlock' AND note LIKE 'broke the run lock''s lease held by run %'")
                .await,
            1
        );
        let (code, out, _) = run(&t, &["unlock"], None);
        assert_eq!(code, 0);
        assert!(out.contains("no lease to break"), "{out}");
        // Nothing waits for the broken lease now.
        let t0 = Instant::now();
        let (code, out, err) = run(&t, &["up"], None);
        assert_eq!(code, 0, "{b:?}: {out}{err}");
        assert!(t0.elapsed() < Duration::from_secs(20), "{b:?}");
    }
}

/// A holder stopped (SIGSTOP) at a random moment for longer than its lease:
/// another runner takes over and migrates; the paused one, resumed, stops at
/// its next write. Each migration is applied once, by exactly one of them.
#[tokio::test]
async fn a_holder_paused_past_its_lease_stops_before_writing() {
    for b in servers("lease_paused") {
        let Some(t) = TestDb::new(b, "lease_paused").await else {
            continue;
        };
        config(&t, "lease", "1s");
        let seed = crate::documents_eager::seed();
        let trials = (crate::kills::kill_trials() / 20).max(3);
        for trial in 0..trials {
            migrations(&t, 1 + trial * 3, 3, 0.3);
            let mut a = spawn_up(&t);
            let at = 100 + (seed.wrapping_add(trial as u64 * 97)) % 700;
            std::thread::sleep(Duration::from_millis(at));
            signal(&a, "-STOP");
            // Past its lease: another runner takes it over. Where the paused
            // run's transaction holds locks the other needs, the other waits
            // for them: the paused run resumes, finds its lease gone at its
            // next write, and rolls back.
            std::thread::sleep(Duration::from_millis(1500));
            let other = spawn_up(&t);
            std::thread::sleep(Duration::from_millis(1000));
            signal(&a, "-CONT");
            let other = other.wait_with_output().unwrap();
            let (code, out, err) = (
                other.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&other.stdout).into_owned(),
                String::from_utf8_lossy(&other.stderr).into_owned(),
            );
            let a_out = {
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    if let Some(_status) = a.try_wait().unwrap() {
                        break a.wait_with_output().unwrap();
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{b:?}: the paused run never ended"
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            };
            let a_err = String::from_utf8_lossy(&a_out.stderr);
            assert_eq!(
                code, 0,
                "{b:?} seed {seed} trial {trial} at {at} ms: {out}{err}"
            );
            applied_once(&t, 1..1 + (trial + 1) * 3).await;
            if !a_out.status.success() {
                assert!(
                    a_err.contains("no longer this run's") || a_err.contains("run lock"),
                    "{b:?}: the paused run says why it stopped: {a_err}"
                );
            }
        }
    }
}

#[tokio::test]
async fn sqlite_refuses_a_lease_and_none_is_said_loudly() {
    let t = TestDb::sqlite("lease_sqlite").await;
    migrations_sqlite(&t);
    config(&t, "lease", "2s");
    let (code, _, err) = run(&t, &["up"], None);
    assert_ne!(code, 0);
    assert!(err.contains("its lock file"), "{err}");
    config(&t, "none", "2s");
    let (code, out, err) = run(&t, &["up"], None);
    assert_eq!(code, 0, "{out}{err}");
    let (_, out, _) = run(&t, &["status"], None);
    assert!(out.contains("lock: NONE"), "{out}");
    assert_eq!(
        t.count("SELECT count(*) FROM instar_history WHERE event = 'apply' AND note LIKE 'run without a lock%'")
            .await,
        1
    );
}

fn migrations_sqlite(t: &TestDb) {
    migration(
        &t.migrations(),
        "0001_t",
        "CREATE TABLE t (id int PRIMARY KEY);",
        None,
    );
}

async fn history(t: &TestDb) -> String {
    use sqlx::Row;
    let mut c = t.raw().await;
    let rows = sqlx::query("SELECT CAST(id AS CHAR), version, event, CAST(statements_applied AS CHAR), COALESCE(run_id, ''), COALESCE(error, '') FROM instar_history ORDER BY id")
        .fetch_all(&mut c)
        .await
        .unwrap_or_default();
    rows.iter()
        .map(|r| {
            (0..6)
                .map(|i| r.try_get::<String, _>(i).unwrap_or_default())
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A holder paused past its lease in the middle of a `--parallel` data
/// migration: its worker connections are fenced by its lease too, so every
/// row is changed exactly once (`b = a * 2 + b` would double twice).
#[tokio::test]
async fn a_paused_parallel_data_migration_changes_each_row_once() {
    for b in servers("lease_parallel") {
        let Some(t) = TestDb::new(b, "lease_parallel").await else {
            continue;
        };
        config(&t, "lease", "1s");
        let rows = 20_000;
        doubling_migration(&t, b, rows, 200);
        let (code, out, err) = run(&t, &["up", "--to", "0001"], None);
        assert_eq!(code, 0, "{out}{err}");
        let mut a = crate::instar_at(&t, &t.url)
            .args(["up", "--parallel", "2"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(600));
        signal(&a, "-STOP");
        std::thread::sleep(Duration::from_millis(1500));
        let other = crate::instar_at(&t, &t.url)
            .args(["up", "--parallel", "2"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(800));
        signal(&a, "-CONT");
        let other = other.wait_with_output().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while a.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "{b:?}: the paused run never ended"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let finish = run(&t, &["up"], None);
        assert_eq!(
            finish.0,
            0,
            "{b:?}: {}\n{}{}",
            String::from_utf8_lossy(&other.stderr),
            finish.1,
            finish.2
        );
        doubled_once(&t, b, rows).await;
    }
}

/// After [`doubling_migration`]: every row changed exactly once, and 0002 applied once.
pub(crate) async fn doubled_once(t: &TestDb, b: Backend, rows: usize) {
    assert_eq!(
        t.count("SELECT count(*) FROM t WHERE b = a * 2").await,
        rows as i64,
        "{b:?}: every row changed exactly once"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM instar_history WHERE version = '0002' AND event = 'apply'")
            .await,
        1,
        "{b:?}: 0002 applied once"
    );
}

/// Migration 0001 makes `t` with `rows` rows (`b = 0`); data migration 0002
/// sets `b = a * 2 + b` in batches of `batch`: a row changed twice shows it.
pub(crate) fn doubling_migration(t: &TestDb, b: Backend, rows: usize, batch: usize) {
    let fill = match b {
        Backend::Postgres => {
            format!("INSERT INTO t SELECT g, g, 0 FROM generate_series(1, {rows}) g;")
        }
        _ => format!("INSERT INTO t SELECT seq, seq, 0 FROM seq_1_to_{rows};"),
    };
    migration(
        &t.migrations(),
        "0001_t",
        &format!("CREATE TABLE t (id int PRIMARY KEY, a int, b int);\n{fill}"),
        None,
    );
    migration(
        &t.migrations(),
        "0002_double",
        "UPDATE t SET b = a * 2 + b WHERE {batch}",
        None,
    );
    file(
        &t.migrations().join("0002_double/migration.toml"),
        &format!("kind = \"data\"\n[data]\ntable = \"t\"\nkey = \"id\"\nbatch_size = {batch}\npause = \"20ms\"\n"),
    );
}
