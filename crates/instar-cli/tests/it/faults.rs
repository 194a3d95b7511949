//! Faults on every engine: a process killed mid-migration, and two `instar up` at once.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{migration, Backend, TestDb};

on_every_engine!(
    killed_during_a_migration_recovers,
    two_processes_apply_each_migration_once,
    killed_data_migration_resumes_exactly_once
);

fn instar(t: &TestDb) -> Command {
    crate::instar_at(t, &t.url)
}

async fn killed_during_a_migration_recovers(b: Backend) {
    let Some(t) = TestDb::new(b, "killed_during_a_migration").await else {
        return;
    };
    let m = t.migrations();
    migration(&m, "0001_first", "CREATE TABLE k1 (id INT);\n", None);
    migration(
        &m,
        "0002_slow",
        &format!(
            "CREATE TABLE k2 (id INT);\n{};\nCREATE TABLE k3 (id INT);\n",
            t.sleep_sql(3)
        ),
        None,
    );
    let mut child = instar(&t).arg("up").spawn().expect("spawn");
    // Wait (bounded) until the first migration is in and the slow one has begun.
    let start = Instant::now();
    while !t.table_exists("k1").await {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "first migration never appeared"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    child.kill().expect("SIGKILL");
    let _ = child.wait();

    let status = instar(&t).arg("status").output().expect("status");
    assert_eq!(status.status.code(), Some(0));
    let text = String::from_utf8_lossy(&status.stdout).to_string();
    if b == Backend::MySql {
        // DDL commits implicitly on MySQL: the migration is dirty after its first statement.
        assert!(
            text.contains("dirty") && t.table_exists("k2").await,
            "{text}"
        );
    } else {
        assert!(
            text.contains("pending   0002"),
            "killed transaction left it pending: {text}"
        );
        assert!(
            !t.table_exists("k2").await,
            "nothing of the killed migration remains"
        );
    }
    let up = instar(&t).arg("up").output().expect("up again");
    assert_eq!(
        up.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    if b == Backend::MySql {
        assert!(String::from_utf8_lossy(&up.stdout).contains("resuming after statement 1"));
    }
    assert!(t.table_exists("k3").await);
    assert_eq!(t.events("apply").await, 2);
}

async fn two_processes_apply_each_migration_once(b: Backend) {
    let Some(t) = TestDb::new(b, "two_processes").await else {
        return;
    };
    for i in 1..=3 {
        migration(
            &t.migrations(),
            &format!("000{i}_p{i}"),
            &format!("CREATE TABLE p{i} (id INT);\n{};\n", t.sleep_sql(0)),
            None,
        );
    }
    let children: Vec<_> = (0..2)
        .map(|_| instar(&t).arg("up").spawn().expect("spawn"))
        .collect();
    for c in children {
        let out = c.wait_with_output().expect("wait");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        t.events("apply").await,
        3,
        "each migration applied exactly once"
    );

    // With --lock-timeout 0, a second run fails at once with a clear message while the lock is held.
    let mut holder = t.db().await;
    holder.lock(Duration::ZERO, || {}).await.expect("lock");
    migration(
        &t.migrations(),
        "0004_p4",
        "CREATE TABLE p4 (id INT);\n",
        None,
    );
    let out = instar(&t)
        .args(["up", "--lock-timeout", "0"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("another instar run holds the migration lock"));
    holder.close().await.expect("close");
}

async fn killed_data_migration_resumes_exactly_once(b: Backend) {
    let Some(t) = TestDb::new(b, "killed_data_migration").await else {
        return;
    };
    let m = t.migrations();
    let values: Vec<String> = (1..=2000).map(|i| format!("({i}, 0)")).collect();
    migration(&m, "0001_counts", &format!("CREATE TABLE counts (id INT PRIMARY KEY, v INT NOT NULL);\nINSERT INTO counts VALUES {};\n", values.join(", ")), None);
    // Not idempotent: a redone batch would leave v = 2, a skipped one v = 0.
    migration(
        &m,
        "0002_bump",
        "UPDATE counts SET v = v + 1 WHERE {batch}\n",
        None,
    );
    std::fs::write(
        m.join("0002_bump/migration.toml"),
        "kind = \"data\"\n[data]\ntable = \"counts\"\nkey = \"id\"\nbatch_size = 50\npause = \"25ms\"\n",
    )
    .expect("toml");
    for wait in [400, 700] {
        let mut child = instar(&t).arg("up").spawn().expect("spawn");
        tokio::time::sleep(Duration::from_millis(wait)).await;
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }
    let status = instar(&t).arg("status").output().expect("status");
    let text = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(text.contains("in progress: data migration 0002"), "{text}");
    let up = instar(&t).arg("up").output().expect("up");
    assert_eq!(
        up.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert_eq!(
        t.count("SELECT count(*) FROM counts WHERE v = 1").await,
        2000,
        "every row exactly once"
    );
    assert_eq!(t.count("SELECT count(*) FROM counts").await, 2000);
}
