//! One data migration shared by worker processes (`instar up --slices N` and
//! `instar up --worker`), PostgreSQL and MariaDB: three processes, one
//! worker killed half way, every row changed exactly once (its slice is
//! claimed again once its lease expires); a worker whose files differ from
//! the run's is refused; a worker with nothing to join says so; SQLite
//! refuses workers.

use std::process::{Child, Output};
use std::time::{Duration, Instant};

use crate::documents::run;
use crate::harness::{file, Backend, TestDb};
use crate::lease::{doubled_once, doubling_migration};

fn config(t: &TestDb) {
    file(
        &t.dir.path().join("instar.toml"),
        "[run]\nlease = \"2s\"\nbackup = false\n",
    );
}

fn wait(mut c: Child, what: &str) -> Output {
    let deadline = Instant::now() + Duration::from_secs(120);
    while c.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = c.kill();
            panic!("{what} did not end within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    c.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Trials: three processes (an owner of 6 slices and two workers), one worker
/// killed after a random number (1–8) of its batches; every row changed
/// exactly once, the killed worker's slice claimed again after its lease.
#[tokio::test]
async fn three_processes_one_worker_killed_every_row_once() {
    let trials: u64 = std::env::var("INSTAR_KILL_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .clamp(1, 5);
    let mut seed = u64::from(std::process::id()) | 1;
    for b in [Backend::Postgres, Backend::MySql] {
        for trial in 0..trials {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let Some(t) = TestDb::new(b, "workers_three").await else {
                break;
            };
            three_processes(&t, b, 1 + (seed % 8) as usize, trial).await;
        }
    }
}

async fn three_processes(t: &TestDb, b: Backend, kill_after: usize, trial: u64) {
    config(t);
    let rows = 40_000;
    doubling_migration(t, b, rows, 250);
    let (code, out, err) = run(t, &["up", "--to", "0001"], None);
    assert_eq!(code, 0, "{out}{err}");
    let spawn = |args: &[&str]| crate::instar_at(t, &t.url).args(args).spawn().unwrap();
    let owner = spawn(&["up", "--slices", "6"]);
    let mut doomed = spawn(&["--format", "json", "up", "--worker"]);
    let worker = spawn(&["--format", "json", "up", "--worker"]);
    // Killed once it has committed `kill_after` batches of a slice it holds.
    let lines = std::io::BufRead::lines(std::io::BufReader::new(doomed.stdout.take().unwrap()));
    let batches = lines
        .take(10_000)
        .map_while(Result::ok)
        .filter(|l| l.contains("\"batch_finished\""))
        .take(kill_after)
        .count();
    assert_eq!(
        batches, kill_after,
        "{b:?} trial {trial}: the doomed worker walked batches before it was killed"
    );
    let _ = doomed.kill();
    let _ = doomed.wait();
    let owner = wait(owner, "the owner");
    assert!(
        owner.status.success(),
        "{b:?} trial {trial}: {}",
        text(&owner.stderr)
    );
    let worker = wait(worker, "the worker");
    assert!(
        worker.status.success(),
        "{b:?} trial {trial}: {}",
        text(&worker.stderr)
    );
    let events = text(&worker.stdout);
    assert!(
        events.contains("\"batch_finished\""),
        "{b:?} trial {trial}: the worker walked batches: {events}"
    );
    assert!(
        events.contains("\"version\":\"0002\""),
        "{b:?} trial {trial}: {events}"
    );
    doubled_once(t, b, rows).await;
    assert_eq!(
        t.count("SELECT count(*) FROM instar_claims").await,
        0,
        "{b:?}"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM instar_checkpoints").await,
        0,
        "{b:?}"
    );
}

#[tokio::test]
async fn a_worker_whose_files_differ_is_refused() {
    for b in [Backend::Postgres, Backend::MySql] {
        let Some(t) = TestDb::new(b, "workers_differ").await else {
            continue;
        };
        config(&t);
        doubling_migration(&t, b, 2_000, 50);
        let (code, out, err) = run(&t, &["up", "--to", "0001"], None);
        assert_eq!(code, 0, "{out}{err}");
        // A run that stops at a checkpoint: its slices stay in progress.
        let (code, out, err) = run(&t, &["up", "--slices", "3", "--max-duration", "1ms"], None);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("stopped at a checkpoint"), "{b:?}: {out}");
        std::fs::write(
            t.migrations().join("0002_double/up.sql"),
            "UPDATE t SET b = a * 3 + b WHERE {batch}",
        )
        .unwrap();
        let (code, out, err) = run(&t, &["up", "--worker"], None);
        assert_eq!(code, 2, "{b:?}: {out}{err}");
        assert!(
            err.contains("script changed since the run began"),
            "{b:?}: {err}"
        );
        // With the run's files, a worker finishes the slices; the next `up` records it.
        std::fs::write(
            t.migrations().join("0002_double/up.sql"),
            "UPDATE t SET b = a * 2 + b WHERE {batch}",
        )
        .unwrap();
        let (code, out, err) = run(&t, &["up", "--worker", "--parallel", "2"], None);
        assert_eq!(code, 0, "{b:?}: {out}{err}");
        assert!(out.contains("worker done"), "{b:?}: {out}");
        let (code, out, err) = run(&t, &["up"], None);
        assert_eq!(code, 0, "{b:?}: {out}{err}");
        assert_eq!(
            t.count("SELECT count(*) FROM t WHERE b = a * 2").await,
            2_000,
            "{b:?}"
        );
    }
}

#[tokio::test]
async fn a_worker_with_nothing_to_join_says_so() {
    for b in [Backend::Postgres, Backend::MySql] {
        let Some(t) = TestDb::new(b, "workers_nothing").await else {
            continue;
        };
        config(&t);
        doubling_migration(&t, b, 10, 5);
        let (code, out, err) = run(&t, &["up", "--worker", "--lock-timeout", "500ms"], None);
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.contains("nothing to join: the next step is 0001"),
            "{b:?}: {out}"
        );
        let (code, out, err) = run(&t, &["up"], None);
        assert_eq!(code, 0, "{out}{err}");
        let (code, out, err) = run(&t, &["up", "--worker", "--lock-timeout", "0"], None);
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.contains("nothing to join: the database is up to date"),
            "{b:?}: {out}"
        );
    }
    let t = TestDb::sqlite("workers_sqlite").await;
    crate::harness::migration(&t.migrations(), "0001_t", "CREATE TABLE t (id int);", None);
    let (code, _, err) = run(&t, &["up", "--worker"], None);
    assert_eq!(code, 2);
    assert!(err.contains("--worker needs PostgreSQL or MySQL"), "{err}");
}
