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
use crate::lease::doubling_migration;

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

#[tokio::test]
async fn three_processes_one_worker_killed_every_row_once() {
    for b in [Backend::Postgres, Backend::MySql] {
        let Some(t) = TestDb::new(b, "workers_three").await else {
            continue;
        };
        config(&t);
        let rows = 40_000;
        doubling_migration(&t, b, rows, 250);
        let (code, out, err) = run(&t, &["up", "--to", "0001"], None);
        assert_eq!(code, 0, "{out}{err}");
        let owner = crate::instar_at(&t, &t.url)
            .args(["up", "--slices", "6"])
            .spawn()
            .unwrap();
        let mut doomed = crate::instar_at(&t, &t.url)
            .args(["--format", "json", "up", "--worker"])
            .spawn()
            .unwrap();
        let worker = crate::instar_at(&t, &t.url)
            .args(["--format", "json", "up", "--worker"])
            .spawn()
            .unwrap();
        // Killed once it has committed a few batches of a slice it holds.
        let mut lines =
            std::io::BufRead::lines(std::io::BufReader::new(doomed.stdout.take().unwrap()));
        let mut batches = 0;
        for line in lines.by_ref().take(10_000) {
            if line.unwrap().contains("\"batch_finished\"") {
                batches += 1;
                if batches == 3 {
                    break;
                }
            }
        }
        assert_eq!(
            batches, 3,
            "{b:?}: the doomed worker walked batches before it was killed"
        );
        let _ = doomed.kill();
        let _ = doomed.wait();
        let owner = wait(owner, "the owner");
        assert!(owner.status.success(), "{b:?}: {}", text(&owner.stderr));
        let worker = wait(worker, "the worker");
        assert!(worker.status.success(), "{b:?}: {}", text(&worker.stderr));
        let events = text(&worker.stdout);
        assert!(
            events.matches("\"batch_finished\"").count() > 0,
            "{b:?}: the worker walked batches: {events}"
        );
        assert!(events.contains("\"version\":\"0002\""), "{b:?}: {events}");
        assert_eq!(
            t.count("SELECT count(*) FROM t WHERE b = a * 2").await,
            rows as i64,
            "{b:?}: every row changed exactly once"
        );
        assert_eq!(
            t.count(
                "SELECT count(*) FROM instar_history WHERE version = '0002' AND event = 'apply'"
            )
            .await,
            1,
            "{b:?}"
        );
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
