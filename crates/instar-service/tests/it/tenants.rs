//! `Migrator::for_tenants`: a multi-tenant service migrates each tenant the
//! first time it opens it, at most N at once; concurrent openers of one
//! tenant share its one migration; PostgreSQL schemas per tenant keep their
//! own history.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use instar_core::event::{Event, EventSink};
use instar_service::{MemorySource, Migrator};

use crate::harness::{Backend, TestDb};

/// Counts the migrations running at once across tenants (from the runs' own events).
struct Gauge {
    now: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl EventSink for Gauge {
    fn event(&mut self, e: &Event) {
        match e {
            Event::MigrationStarted { .. } => {
                let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
                self.peak.fetch_max(n, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Event::MigrationFinished { .. } => {
                self.now.fetch_sub(1, Ordering::SeqCst);
            }
            _ => {}
        }
    }
}

fn source() -> MemorySource {
    MemorySource::new()
        .with(
            "0001_notes/up.sql",
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);",
        )
        .with(
            "0002_seed/up.sql",
            "INSERT INTO notes (id, body) VALUES (1, 'hello');",
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_tenant_is_migrated_once_on_first_use_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let tenants = Arc::new(Migrator::new(source()).for_tenants(2));
    let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut tasks = Vec::new();
    for i in 0..60 {
        let (tenants, now, peak) = (tenants.clone(), now.clone(), peak.clone());
        let url = format!(
            "sqlite:{}",
            dir.path().join(format!("t{}.db", i % 12)).display()
        );
        tasks.push(tokio::spawn(async move {
            let mut gauge = Gauge { now, peak };
            tenants.open_as(&url, None, &mut gauge).await.map(|_| ())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(tenants.opened(), 12);
    assert!(
        peak.load(Ordering::SeqCst) <= 2,
        "at most 2 at once: {}",
        peak.load(Ordering::SeqCst)
    );
    for i in 0..12 {
        let c = rusqlite::Connection::open(dir.path().join(format!("t{i}.db"))).unwrap();
        let applied: i64 = c
            .query_row(
                "SELECT count(*) FROM instar_history WHERE event = 'apply'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(applied, 2, "t{i}: each migration once");
    }
}

#[tokio::test]
async fn a_failed_tenant_is_tried_again_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let url = format!("sqlite:{}", path.display());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE notes (x TEXT);")
        .unwrap();
    let tenants = Migrator::new(source()).for_tenants(1);
    assert!(tenants.open(&url).await.is_err());
    assert_eq!(tenants.opened(), 0);
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("DROP TABLE notes;")
        .unwrap();
    let r = tenants.open(&url).await.unwrap();
    assert_eq!(r.migrations.len(), 2);
    assert_eq!(
        tenants.open(&url).await.unwrap().migrations.len(),
        2,
        "the first report, not a second run"
    );
}

#[tokio::test]
async fn postgresql_schemas_per_tenant_keep_their_own_history() {
    let Some(t) = TestDb::new(Backend::Postgres, "tenants_schemas").await else {
        return;
    };
    let mut c = t.raw().await;
    for s in ["acme", "globex"] {
        sqlx::raw_sql(&format!("CREATE SCHEMA {s}"))
            .execute(&mut c)
            .await
            .unwrap();
    }
    let tenants = Migrator::new(source()).for_tenants(2);
    for s in ["acme", "globex"] {
        tenants.open_schema(&t.url, s).await.unwrap();
    }
    for s in ["acme", "globex"] {
        assert_eq!(
            t.count(&format!(
                "SELECT count(*) FROM {s}.instar_history WHERE event = 'apply'"
            ))
            .await,
            2
        );
        assert_eq!(t.count(&format!("SELECT count(*) FROM {s}.notes")).await, 1);
    }
    assert_eq!(t.count("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name = 'instar_history'").await, 0);
}
