//! A MariaDB Galera cluster (`scripts/galera.sh start`, its three URLs in
//! `INSTAR_TEST_GALERA_URLS`, comma-separated): `GET_LOCK` is local to a
//! node, so `auto` takes the lease there; runners on different nodes apply
//! each migration exactly once; a holder killed on one node is taken over
//! from another once its lease expires.

use std::process::Child;
use std::time::Duration;

use sqlx::{AnyConnection, Connection};

use crate::harness::{file, migration, Backend, TestDb};

/// The cluster's node URLs, or `None` with a skip line (a failure under CI=true).
fn nodes(test: &str) -> Option<Vec<String>> {
    let urls = std::env::var("INSTAR_TEST_GALERA_URLS")
        .ok()
        .filter(|v| !v.is_empty());
    let Some(urls) = urls else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: INSTAR_TEST_GALERA_URLS is not set, and CI=true (.ci/run starts scripts/galera.sh)"
        );
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: INSTAR_TEST_GALERA_URLS is not set (scripts/galera.sh start prints the URLs)"
        );
        return None;
    };
    Some(urls.split(',').map(|u| u.trim().to_string()).collect())
}

/// A fresh database on the cluster: its URL on each node.
async fn fresh(nodes: &[String], test: &str) -> Vec<String> {
    sqlx::any::install_default_drivers();
    let name = format!(
        "instar_g_{}_{}_{}",
        test,
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
            % 1_000_000
    );
    let mut c = AnyConnection::connect(&nodes[0]).await.unwrap();
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut c)
        .await
        .unwrap();
    let _ = c.close().await;
    nodes
        .iter()
        .map(|n| {
            let mut u = url::Url::parse(n).unwrap();
            u.set_path(&format!("/{name}"));
            u.to_string()
        })
        .collect()
}

/// `instar` in `t`'s folder, pointed at node URL `url`.
fn instar(t: &TestDb, url: &str, args: &[&str]) -> Child {
    crate::instar_at(t, url).args(args).spawn().unwrap()
}

/// A count read on `url` once the node has applied everything before it.
async fn count(url: &str, sql: &str) -> i64 {
    use sqlx::Row;
    let mut c = AnyConnection::connect(url).await.unwrap();
    sqlx::raw_sql("SET SESSION wsrep_sync_wait = 1")
        .execute(&mut c)
        .await
        .unwrap();
    let r = sqlx::query(sql).fetch_one(&mut c).await.unwrap();
    let n: i64 = r.try_get(0).unwrap();
    let _ = c.close().await;
    n
}

/// A folder for the project (migrations, instar.toml); its `url` is unused.
async fn project(test: &str, lease: &str) -> TestDb {
    let t = TestDb::sqlite(test).await;
    file(
        &t.dir.path().join("instar.toml"),
        &format!("[run]\nlease = \"{lease}\"\nbackup = false\n"),
    );
    t
}

fn migrations(t: &TestDb, first: usize, n: usize, secs: f64) {
    for i in first..first + n {
        migration(
            &t.migrations(),
            &format!("{i:04}_t{i}"),
            &format!("SELECT SLEEP({secs});\nCREATE TABLE t{i} (id int PRIMARY KEY);"),
            None,
        );
    }
}

async fn applied_once(url: &str, versions: std::ops::Range<usize>) {
    for i in versions {
        let n = count(
            url,
            &format!(
                "SELECT count(*) FROM instar_history WHERE version = '{i:04}' AND event = 'apply'"
            ),
        )
        .await;
        assert_eq!(n, 1, "migration {i:04} applied exactly once");
    }
}

#[tokio::test]
async fn get_lock_is_local_to_a_node_so_auto_takes_a_lease() {
    let test = "galera_get_lock";
    let Some(nodes) = nodes(test) else { return };
    let mut a = AnyConnection::connect(&nodes[0]).await.unwrap();
    let mut b = AnyConnection::connect(&nodes[1]).await.unwrap();
    use sqlx::Row;
    let take = "SELECT CAST(GET_LOCK('instar_galera_probe', 0) AS SIGNED)";
    let got_a: i64 = sqlx::query(take).fetch_one(&mut a).await.unwrap().get(0);
    let got_b: i64 = sqlx::query(take).fetch_one(&mut b).await.unwrap().get(0);
    assert_eq!(
        (got_a, got_b),
        (1, 1),
        "both nodes granted the same GET_LOCK"
    );
    let _ = a.close().await;
    let _ = b.close().await;

    let urls = fresh(&nodes, "auto").await;
    let t = project(test, "5s").await;
    migrations(&t, 1, 1, 0.0);
    let out = crate::instar_at(&t, &urls[0]).arg("up").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = crate::instar_at(&t, &urls[1])
        .arg("status")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("lock: lease, free"), "{text}");
}

#[tokio::test]
async fn runners_on_different_nodes_apply_each_migration_once() {
    let test = "galera_runners";
    let Some(nodes) = nodes(test) else { return };
    let urls = fresh(&nodes, "runners").await;
    let t = project(test, "3s").await;
    let _ = Backend::MySql;
    for round in 0..3usize {
        migrations(&t, 1 + round * 3, 3, 0.1);
        let runners: Vec<Child> = (0..3)
            .map(|i| {
                std::thread::sleep(Duration::from_millis(7 * i as u64));
                instar(&t, &urls[i], &["up"])
            })
            .collect();
        for c in runners {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        applied_once(&urls[2], 1..1 + (round + 1) * 3).await;
    }
}

#[tokio::test]
async fn a_holder_killed_on_one_node_is_taken_over_from_another() {
    let test = "galera_killed";
    let Some(nodes) = nodes(test) else { return };
    let urls = fresh(&nodes, "killed").await;
    let t = project(test, "2s").await;
    migrations(&t, 1, 3, 0.5);
    let mut a = instar(&t, &urls[0], &["up"]);
    std::thread::sleep(Duration::from_millis(700));
    a.kill().unwrap();
    let _ = a.wait();
    let out = crate::instar_at(&t, &urls[1]).arg("up").output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    applied_once(&urls[2], 1..4).await;
}
