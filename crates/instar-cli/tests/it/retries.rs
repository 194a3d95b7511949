//! A data migration's batch that the database rolls back for a deadlock
//! runs again (an event says so), and the rows end as if nothing happened:
//! PostgreSQL picks as the victim the transaction that waited first, here
//! the batch (an application transaction locks the batch's last row, then
//! its first).

use std::time::Duration;

use sqlx::Connection;

use crate::harness::{file, migration, Backend, TestDb};

#[tokio::test]
async fn a_batch_rolled_back_by_a_deadlock_runs_again() {
    let Some(t) = TestDb::new(Backend::Postgres, "retry_deadlock").await else {
        return;
    };
    let m = t.migrations();
    let rows: Vec<String> = (1..=10).map(|i| format!("({i}, {i}, 0, 0)")).collect();
    migration(
        &m,
        "0001_t",
        &format!(
            "CREATE TABLE t (id int PRIMARY KEY, a int, b int, c int);\nINSERT INTO t VALUES {};",
            rows.join(", ")
        ),
        None,
    );
    migration(
        &m,
        "0002_double",
        "UPDATE t SET b = a * 2 WHERE {batch}",
        None,
    );
    file(
        &m.join("0002_double/migration.toml"),
        "kind = \"data\"\n[data]\ntable = \"t\"\nkey = \"id\"\nbatch_size = 10\n",
    );
    let (code, out, err) = crate::documents::run(&t, &["up", "--to", "0001"], None);
    assert_eq!(code, 0, "{out}{err}");

    // The application holds the batch's last row.
    let mut app = t.raw().await;
    sqlx::raw_sql("BEGIN; UPDATE t SET c = 1 WHERE id = 10")
        .execute(&mut app)
        .await
        .unwrap();
    let runner = crate::instar_at(&t, &t.url).arg("up").spawn().unwrap();
    // The batch has locked rows 1 to 9 and waits for row 10.
    let mut waiting = false;
    for _ in 0..100 {
        waiting = t
            .count("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE t SET b%'")
            .await
            > 0;
        if waiting {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(waiting, "the batch never waited for row 10");
    // Now the application wants row 1: a deadlock, and the batch waited first.
    sqlx::raw_sql("UPDATE t SET c = 1 WHERE id = 1; COMMIT")
        .execute(&mut app)
        .await
        .unwrap();
    let _ = app.close().await;
    let out = runner.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("rolled back by the database (40P01"),
        "the retry is an event: {err}"
    );
    assert_eq!(t.count("SELECT count(*) FROM t WHERE b = a * 2").await, 10);
    assert_eq!(t.count("SELECT sum(c) FROM t").await, 2);
}
