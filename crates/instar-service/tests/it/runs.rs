//! Runs as handles: spawned on a multi-threaded runtime, watched by several
//! receivers, cancelled half way and resumed exactly.

use std::time::Duration;

use instar_core::event::{Event, Stamped};
use instar_service::{RunRequest, Service, Settings};

use crate::harness::{file, migration, Backend, TestDb};

const ALL: [Backend; 3] = [Backend::Sqlite, Backend::Postgres, Backend::MySql];

fn service(t: &TestDb) -> Service {
    let mut s = Settings::new(&t.url, t.dir.path());
    s.migrations = t.migrations();
    s.lock_timeout = Duration::from_secs(30);
    Service::new(s)
}

async fn collect(mut s: instar_service::EventStream) -> Vec<Stamped> {
    let mut out = Vec::new();
    // Bounded: a run here emits far fewer events.
    while let Some(e) = s.next().await {
        out.push(e);
        assert!(out.len() < 100_000, "endless event stream");
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_spawned_runs_and_two_receivers() {
    for b in ALL {
        let Some(t) = TestDb::new(b, "two_spawned_runs").await else {
            continue;
        };
        for i in 1..=5 {
            migration(
                &t.migrations(),
                &format!("000{i}_t{i}"),
                &format!(
                    "CREATE TABLE t{i} (id INT PRIMARY KEY);\nINSERT INTO t{i} VALUES ({i});\n"
                ),
                None,
            );
        }
        let s = service(&t);
        let first = s.start(RunRequest::up());
        let second = s.start(RunRequest::up());
        assert_ne!(first.id(), second.id());
        let (a, a2, b2) = (first.subscribe(), first.subscribe(), second.subscribe());
        let (ea, ea2, eb) = tokio::join!(
            tokio::spawn(collect(a)),
            tokio::spawn(collect(a2)),
            tokio::spawn(collect(b2))
        );
        let (ea, ea2, eb) = (ea.unwrap(), ea2.unwrap(), eb.unwrap());
        let ra = first.wait().await.expect("first run");
        let rb = second.wait().await.expect("second run");
        // Exactly one of the two applied everything; the other found nothing left.
        let mut applied = [ra.migrations.len(), rb.migrations.len()];
        applied.sort();
        assert_eq!(applied, [0, 5], "{b:?}");

        // Two receivers of one run see the same events, numbered 1..n without gaps.
        let seqs: Vec<u64> = ea.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=ea.len() as u64).collect::<Vec<_>>(), "{b:?}");
        assert_eq!(
            serde_json::to_string(&ea).unwrap(),
            serde_json::to_string(&ea2).unwrap()
        );
        for (events, run) in [(&ea, &ra), (&eb, &rb)] {
            assert!(events.iter().all(|e| !e.at.is_empty()));
            if run.migrations.len() == 5 {
                let Some(Event::RunStarted { plan }) = events
                    .iter()
                    .map(|e| &e.event)
                    .find(|e| matches!(e, Event::RunStarted { .. }))
                else {
                    panic!("no run_started event: {events:?}");
                };
                assert_eq!(plan.len(), 5);
                assert_eq!(plan[0].version, "0001");
            }
        }
        let run_ids: Vec<&str> = ea.iter().map(|e| e.run_id.as_str()).collect();
        assert!(run_ids.iter().all(|id| *id == ea[0].run_id));

        // Every history row names the run that wrote it.
        let winner = if ra.migrations.len() == 5 { &ea } else { &eb };
        let rows = s.history().await.expect("history");
        assert!(!rows.is_empty());
        assert!(
            rows.iter()
                .all(|r| r.run_id.as_deref() == Some(winner[0].run_id.as_str())),
            "{rows:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_data_migration_resumes_exactly() {
    for b in ALL {
        let Some(t) = TestDb::new(b, "cancelled_data_migration").await else {
            continue;
        };
        let m = t.migrations();
        let values: Vec<String> = (1..=2000).map(|i| format!("({i}, 0)")).collect();
        migration(
            &m,
            "0001_counts",
            &format!(
                "CREATE TABLE counts (id INT PRIMARY KEY, v INT NOT NULL);\nINSERT INTO counts VALUES {};\n",
                values.join(", ")
            ),
            None,
        );
        migration(
            &m,
            "0002_bump",
            "UPDATE counts SET v = v + 1 WHERE {batch}",
            None,
        );
        file(
            &m.join("0002_bump/migration.toml"),
            "kind = \"data\"\n[data]\ntable = \"counts\"\nkey = \"id\"\nbatch_size = 50\npause = \"5ms\"\n",
        );
        let s = service(&t);
        let run = s.start(RunRequest::up());
        let mut events = run.subscribe();
        // Cancel once the fifth batch has committed (bounded by the stream's end).
        while let Some(e) = events.next().await {
            if let Event::BatchFinished { batch: 5, .. } = e.event {
                run.cancel();
            }
        }
        let report = run.wait().await.expect("cancelled run");
        assert!(report.cancelled, "{b:?}: {report:?}");
        assert_eq!(report.paused.as_deref(), Some("0002"));
        assert_eq!(report.migrations, vec!["0001"]);
        let st = s.status().await.expect("status");
        let done: i64 = st.checkpoints.iter().map(|c| c.rows_done).sum();
        assert!((250..2000).contains(&done), "{b:?}: {done} rows done");
        assert_eq!(
            t.count("SELECT count(*) FROM counts WHERE v = 1").await,
            done
        );

        let report = s.start(RunRequest::up()).wait().await.expect("resumed run");
        assert_eq!(report.migrations, vec!["0002"]);
        assert!(!report.cancelled);
        assert_eq!(
            t.count("SELECT count(*) FROM counts WHERE v = 1").await,
            2000,
            "{b:?}: every row bumped exactly once"
        );
    }
}
