//! Online DDL never queues behind a long transaction: each of its statements
//! waits for a table lock at most `[online] lock_timeout`, is tried again
//! after a backoff, and the step gives up after `lock_attempts`, naming the
//! session that held the lock; meanwhile the application's own writes to the
//! table go on (they are not queued behind a waiting `ALTER TABLE`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Connection;

use crate::documents::run;
use crate::harness::{file, migration, Backend, TestDb};

fn project(t: &TestDb, timeout: &str, attempts: u32) {
    migration(
        &t.migrations(),
        "0001_users",
        "CREATE TABLE users (id int PRIMARY KEY, name varchar(100));\n\
         INSERT INTO users VALUES (1, 'Ada'), (2, 'Grace');",
        None,
    );
    let dir = t.migrations().join("0002_nick");
    std::fs::create_dir_all(&dir).unwrap();
    file(
        &dir.join("migration.toml"),
        "kind = \"online\"\n\n[[ops]]\nop = \"add_column\"\ntable = \"users\"\ncolumn = \"nick\"\ntype = \"varchar(50)\"\n",
    );
    file(
        &t.dir.path().join("instar.toml"),
        &format!("[online]\nlock_timeout = \"{timeout}\"\nlock_attempts = {attempts}\n"),
    );
    let (code, out, err) = run(t, &["up", "--to", "0001"], None);
    assert_eq!(code, 0, "{out}{err}");
}

/// The engine's shortest lock wait for the test: MySQL counts whole seconds.
fn timeout(b: Backend) -> (&'static str, Duration) {
    match b {
        Backend::MySql => ("1s", Duration::from_secs(1)),
        _ => ("300ms", Duration::from_millis(300)),
    }
}

/// A session in a long transaction that has read (SQLite: written) `users`:
/// it holds a lock that `ALTER TABLE users` waits for, until it ends.
async fn long_transaction(t: &TestDb) -> sqlx::AnyConnection {
    let mut c = sqlx::AnyConnection::connect(&t.url).await.unwrap();
    let sql = match t.backend {
        Backend::Postgres => {
            "SET application_name = 'nightly_report'; BEGIN; SELECT count(*) FROM users"
        }
        Backend::MySql => "START TRANSACTION; SELECT count(*) FROM users",
        Backend::Sqlite => "BEGIN IMMEDIATE; INSERT INTO users VALUES (3, 'Eve')",
    };
    sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
    c
}

/// Writes to `users` every 20 ms until `stop` (bounded): the longest a write took.
fn app_writer(t: &TestDb, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Duration> {
    let url = t.url.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut c = sqlx::AnyConnection::connect(&url).await.unwrap();
            let mut longest = Duration::ZERO;
            for i in 0..1000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let t0 = Instant::now();
                let sql = format!("UPDATE users SET name = 'Grace {i}' WHERE id = 2");
                sqlx::raw_sql(&sql).execute(&mut c).await.unwrap();
                longest = longest.max(t0.elapsed());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            longest
        })
    })
}

async fn has_nick(t: &TestDb) -> bool {
    let mut c = t.raw().await;
    let ok = sqlx::raw_sql("SELECT nick FROM users")
        .execute(&mut c)
        .await
        .is_ok();
    let _ = c.close().await;
    ok
}

on_every_engine!(
    a_long_transaction_makes_online_ddl_retry_then_give_up_naming_it,
    online_ddl_goes_through_once_the_long_transaction_ends
);

async fn a_long_transaction_makes_online_ddl_retry_then_give_up_naming_it(b: Backend) {
    let Some(t) = TestDb::new(b, "online_lock_give_up").await else {
        return;
    };
    let (text, wait) = timeout(b);
    project(&t, text, 3);
    let holder = long_transaction(&t).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = (b != Backend::Sqlite).then(|| app_writer(&t, stop.clone()));

    let t0 = Instant::now();
    let (code, out, err) = run(&t, &["up"], None);
    let took = t0.elapsed();
    stop.store(true, Ordering::SeqCst);
    let longest = writer.map(|w| w.join().unwrap());
    let _ = holder.close().await;

    assert_ne!(code, 0, "{b:?}: {out}{err}");
    for n in 1..=2 {
        assert!(
            err.contains(&format!("attempt {n} of 3")),
            "{b:?}: retry {n} reported\n{err}"
        );
    }
    assert!(err.contains("gave up after 3 attempt(s)"), "{b:?}: {err}");
    let named = match b {
        Backend::Postgres => "nightly_report",
        Backend::MySql => "in its transaction",
        Backend::Sqlite => "another connection to this file",
    };
    assert!(err.contains(named), "{b:?}: the holder is named\n{err}");
    // Three waits and two backoffs (250 ms, 500 ms), not one long queue.
    assert!(took >= wait * 3, "{b:?}: gave up after {took:?}");
    assert!(took < wait * 3 + Duration::from_secs(10), "{b:?}: {took:?}");
    if let Some(longest) = longest {
        // The application waited at most one lock timeout behind the ALTER.
        assert!(
            longest < wait + Duration::from_millis(800),
            "{b:?}: an application write waited {longest:?}"
        );
    }
    assert!(!has_nick(&t).await, "{b:?}: nothing of it stayed");
    let (code, out, err) = run(&t, &["status"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0002"), "{out}");
    // Once the transaction has ended, the same command goes through.
    let (code, out, err) = run(&t, &["up"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    assert!(has_nick(&t).await);
}

async fn online_ddl_goes_through_once_the_long_transaction_ends(b: Backend) {
    let Some(t) = TestDb::new(b, "online_lock_retry").await else {
        return;
    };
    let (text, wait) = timeout(b);
    project(&t, text, 8);
    let mut holder = long_transaction(&t).await;
    // The transaction ends during the second wait.
    let ends = wait + Duration::from_millis(400);
    let runner = {
        let mut c = crate::instar_at(&t, &t.url);
        c.arg("up");
        c.spawn().unwrap()
    };
    std::thread::sleep(ends);
    sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
    let _ = holder.close().await;
    let out = runner.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{b:?}: {err}");
    assert!(err.contains("attempt 1 of 8"), "{b:?}: {err}");
    assert!(!err.contains("attempt 8 of 8"), "{b:?}: {err}");
    assert!(has_nick(&t).await, "{b:?}");
    // Its writes are in, and the application's: one history row applied.
    assert_eq!(
        t.count("SELECT count(*) FROM instar_history WHERE version = '0002' AND event = 'apply'")
            .await,
        1
    );
}
