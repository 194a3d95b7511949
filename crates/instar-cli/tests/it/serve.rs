//! `instar serve` as a process, on every engine: a run started over HTTP
//! holds the same lock as the CLI (an `instar up` meanwhile times out), and a
//! server killed during a data migration leaves the database as a killed
//! `instar up` does: the CLI resumes it, and the next server shows the
//! interrupted run in the history.

use std::process::{Child, Stdio};
use std::time::Duration;

use crate::adopt::exec;
use crate::documents::run;
use crate::harness::{file, Backend, TestDb};
use crate::http_client::call;

on_every_engine!(a_killed_server_leaves_what_a_killed_up_leaves);

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn serve(t: &TestDb) -> (Server, std::net::SocketAddr) {
    let addr = free_addr();
    let child = crate::instar_at(t, &t.url)
        .args(["serve", "--listen", &addr.to_string()])
        .env("INSTAR_SERVE_TOKEN", "tok")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return (server, addr);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("instar serve did not answer on {addr}");
}

async fn a_killed_server_leaves_what_a_killed_up_leaves(b: Backend) {
    let Some(t) = TestDb::new(b, "serve_killed").await else {
        return;
    };
    let n = 20_000;
    exec(&t, "CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    for chunk in (1..=n).collect::<Vec<i64>>().chunks(2000) {
        let rows: Vec<String> = chunk.iter().map(|i| format!("({i}, 0)")).collect();
        exec(&t, &format!("INSERT INTO t VALUES {}", rows.join(", "))).await;
    }
    let m = t.migrations().join("0001_fill");
    file(&m.join("up.sql"), "UPDATE t SET v = id * 2 WHERE {batch}");
    file(
        &m.join("migration.toml"),
        "kind = \"data\"\n[data]\ntable = \"t\"\nkey = \"id\"\nbatch_size = 100\npause = \"20ms\"\n",
    );
    let (server, addr) = serve(&t).await;
    let auth = [("Authorization", "Bearer tok")];
    let started = call(addr, "POST", "/migrations/execute-all", &auth, "").await;
    assert_eq!(started.status, 202, "{b:?}: {}", started.body);
    let id = started.json()["run_id"].as_str().unwrap().to_string();
    // Killed at a random point of the move (seeded, printed on failure).
    let seed = crate::documents_eager::seed();
    let at = 1 + (seed.wrapping_mul(2654435761) % (n as u64 / 2)) as i64;
    let mut done = 0;
    for _ in 0..800 {
        let p = call(addr, "GET", &format!("/runs/{id}"), &[], "")
            .await
            .json();
        done = p["migrations"][0]["rows_done"].as_i64().unwrap_or(0);
        if done >= at {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        done >= at,
        "{b:?}: the run moved {done} rows, not {at} (seed {seed})"
    );

    // The CLI meets the HTTP run's lock.
    let (code, out, err) = run(&t, &["up", "--lock-timeout", "1s"], None);
    assert_eq!(code, 2, "{b:?}: {out}{err}");
    assert!(format!("{out}{err}").contains("lock"), "{b:?}: {out}{err}");

    drop(server); // killed mid-run
    let moved = t.count("SELECT count(*) FROM t WHERE v = id * 2").await;
    assert!(
        moved > 0 && moved < n,
        "{b:?}: {moved} rows moved when killed"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM t WHERE v <> id * 2 AND v <> 0")
            .await,
        0,
        "{b:?}: every row whole"
    );
    let (code, out, err) = run(&t, &["up"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    assert_eq!(
        t.count("SELECT count(*) FROM t WHERE v = id * 2").await,
        n,
        "{b:?}"
    );

    // The next server shows the interrupted run: its start row, then the CLI's apply.
    let (_server, addr) = serve(&t).await;
    let h = call(addr, "GET", "/migrations/history", &[], "")
        .await
        .json();
    let rows = h["history"].as_array().unwrap();
    assert!(
        rows.iter()
            .any(|r| r["event"] == "start" && r["run_id"] == id.as_str()),
        "{b:?}: {h}"
    );
    assert_eq!(rows.last().unwrap()["event"], "apply", "{b:?}: {h}");
}
