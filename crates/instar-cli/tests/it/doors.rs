//! The three front doors are one service: the CLI, `Migrator` and the service
//! driven directly write the same history for the same work.

use instar_core::history::HistoryRow;
use instar_service::{Migrator, RunRequest, Service, Settings};

use crate::harness::{file, migration, Backend, TestDb};

on_every_engine!(cli_migrator_and_service_write_the_same_history);

fn project(t: &TestDb) {
    let m = t.migrations();
    migration(&m, "0001_people", "CREATE TABLE people (id INT PRIMARY KEY, n INT NOT NULL);\nINSERT INTO people VALUES (1, 0), (2, 0), (3, 0);\n", None);
    migration(
        &m,
        "0002_bump",
        "UPDATE people SET n = n + 1 WHERE {batch}",
        None,
    );
    file(
        &m.join("0002_bump/migration.toml"),
        "kind = \"data\"\n[data]\ntable = \"people\"\nkey = \"id\"\nbatch_size = 2\n",
    );
    migration(
        &m,
        "0003_index",
        "-- instar:no-transaction\nCREATE INDEX people_n ON people (n);\n",
        None,
    );
}

/// A row without what differs between two runs of the same work.
fn normalised(rows: Vec<HistoryRow>) -> Vec<String> {
    rows.into_iter()
        .map(|r| {
            format!(
                "{} {} {:?} {:?} {} {:?} {}/{} {:?} {:?} {:?} {:?} {}",
                r.version,
                r.name,
                r.event,
                r.direction,
                r.kind,
                r.checksum,
                r.statements_applied,
                r.statements_total,
                r.statement_hashes,
                r.rows_affected,
                r.error,
                r.run_id.is_some(),
                r.tool_version
            )
        })
        .collect()
}

fn service(t: &TestDb) -> Service {
    let mut s = Settings::new(&t.url, t.dir.path());
    s.migrations = t.migrations();
    s.backup = false;
    Service::new(s)
}

async fn cli_migrator_and_service_write_the_same_history(b: Backend) {
    let (Some(a), Some(m), Some(s)) = (
        TestDb::new(b, "door_cli").await,
        TestDb::new(b, "door_migrator").await,
        TestDb::new(b, "door_service").await,
    ) else {
        return;
    };
    for t in [&a, &m, &s] {
        project(t);
    }
    let out = crate::instar_at(&a, &a.url)
        .args(["up", "--no-backup"])
        .output()
        .expect("instar up");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Migrator::from_dir(m.migrations())
        .run(&m.url)
        .await
        .expect("migrator");
    service(&s)
        .start(RunRequest {
            backup: Some(false),
            ..RunRequest::up()
        })
        .wait()
        .await
        .expect("service");
    let cli = normalised(service(&a).history().await.expect("cli history"));
    assert_eq!(
        cli.len(),
        if b == Backend::MySql { 6 } else { 5 },
        "{cli:#?}"
    );
    assert_eq!(
        cli,
        normalised(service(&m).history().await.expect("migrator history"))
    );
    assert_eq!(
        cli,
        normalised(service(&s).history().await.expect("service history"))
    );
}
