//! `instar-bench serve [--rows N] [--seconds S] [--clients C] [--sse K]`: the
//! HTTP server under load while a data migration runs. A SQLite table of N
//! rows gets one data migration (`UPDATE … WHERE {batch}`, batches of
//! 10,000). First `instar up` alone (the throughput without load); then the
//! same on a fresh copy started over HTTP by `instar serve`, while C clients
//! poll `GET /status` and `GET /migrations/progress/{id}` for S seconds and K
//! clients follow the run's event stream. Loopback only; every loop bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request on its own connection: status and body (blocking, bounded).
fn get(addr: SocketAddr, method: &str, path: &str, auth: bool) -> Result<(u16, String), String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let token = if auth {
        "Authorization: Bearer bench\r\n"
    } else {
        ""
    };
    let len = if method == "GET" {
        ""
    } else {
        "Content-Length: 0\r\n"
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{token}{len}\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    Ok((status, body))
}

fn seed(db: &Path, rows: u64) {
    let ok = Command::new("sqlite3")
        .arg(db)
        .arg(format!("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER); WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {rows}) INSERT INTO t SELECT i, 0 FROM c;"))
        .status()
        .expect("sqlite3")
        .success();
    assert!(ok, "seeding with sqlite3");
}

fn project(dir: &Path, seed_db: &Path) {
    let m = dir.join("migrations/0001_fill");
    std::fs::create_dir_all(&m).expect("mkdir");
    std::fs::write(m.join("up.sql"), "UPDATE t SET v = id * 2 WHERE {batch}").expect("write");
    std::fs::write(
        m.join("migration.toml"),
        "kind = \"data\"\n[data]\ntable = \"t\"\nkey = \"id\"\nbatch_size = 10000\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("instar.toml"),
        "[database]\nurl = \"sqlite:db.sqlite\"\n[run]\nbackup = false\n",
    )
    .expect("write");
    std::fs::copy(seed_db, dir.join("db.sqlite")).expect("copy");
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Options of the benchmark.
pub struct Load {
    pub rows: u64,
    pub seconds: u64,
    pub clients: usize,
    pub sse: usize,
}

pub fn bench(instar: &Path, load: &Load) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let seed_db = tmp.path().join("seed.sqlite");
    seed(&seed_db, load.rows);

    // Without load: `instar up`.
    let alone = tmp.path().join("alone");
    project(&alone, &seed_db);
    let t = Instant::now();
    let ok = Command::new(instar)
        .current_dir(&alone)
        .args(["-q", "up"])
        .status()
        .expect("instar up")
        .success();
    assert!(ok, "instar up");
    let alone_ms = t.elapsed().as_secs_f64() * 1000.0;

    // With load: over HTTP.
    let loaded = tmp.path().join("loaded");
    project(&loaded, &seed_db);
    let addr: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        l.local_addr().expect("addr")
    };
    let mut server = Command::new(instar)
        .current_dir(&loaded)
        .args(["-q", "serve", "--listen", &addr.to_string()])
        .env("INSTAR_SERVE_TOKEN", "bench")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("instar serve");
    for _ in 0..200 {
        if TcpStream::connect(addr).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let (code, body) = get(addr, "POST", "/migrations/execute-all", true).expect("execute-all");
    assert_eq!(code, 202, "{body}");
    let t0 = Instant::now();
    let id = body
        .split("\"run_id\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("run id")
        .to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for c in 0..load.clients {
        let (stop, latencies, errors, id) =
            (stop.clone(), latencies.clone(), errors.clone(), id.clone());
        threads.push(std::thread::spawn(move || {
            let mut mine = Vec::new();
            let mut k = c;
            while !stop.load(Ordering::Relaxed) {
                let path = if k % 2 == 0 {
                    "/status".to_string()
                } else {
                    format!("/migrations/progress/{id}")
                };
                k += 1;
                let t = Instant::now();
                match get(addr, "GET", &path, false) {
                    Ok((200, _)) => mine.push(t.elapsed()),
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies.lock().expect("latencies").extend(mine);
        }));
    }
    let finished_streams = Arc::new(AtomicU64::new(0));
    for _ in 0..load.sse {
        let (finished, errors, id) = (finished_streams.clone(), errors.clone(), id.clone());
        threads.push(std::thread::spawn(move || {
            match get(addr, "GET", &format!("/runs/{id}/events"), false) {
                Ok((200, body)) if body.contains("run_finished") => {
                    finished.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // The run's own duration, then the load goes on to its full length.
    let mut run_ms = None;
    let deadline = Instant::now() + Duration::from_secs(load.seconds.max(1));
    while Instant::now() < deadline {
        if run_ms.is_none() {
            if let Ok((200, b)) = get(addr, "GET", &format!("/runs/{id}"), false) {
                if !b.contains("\"state\":\"running\"") {
                    run_ms = Some(t0.elapsed().as_secs_f64() * 1000.0);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let _ = server.kill();
    let _ = server.wait();
    let mut l = latencies.lock().expect("latencies").clone();
    l.sort_unstable();
    println!(
        "\n### instar serve under load: {} clients polling for {} s and {} event streams, while a data migration of {} rows runs (SQLite)\n",
        load.clients, load.seconds, load.sse, load.rows
    );
    println!("| what | value |\n|---|---:|");
    println!("| requests served (200) | {} |", l.len());
    println!(
        "| requests per second | {:.0} |",
        l.len() as f64 / load.seconds.max(1) as f64
    );
    println!("| latency p50 | {:.1} ms |", percentile(&l, 0.5));
    println!("| latency p99 | {:.1} ms |", percentile(&l, 0.99));
    println!(
        "| errors (non-200, refused, or a stream without its end) | {} |",
        errors.load(Ordering::Relaxed)
    );
    println!(
        "| event streams that saw `run_finished` | {} of {} |",
        finished_streams.load(Ordering::Relaxed),
        load.sse
    );
    println!("| data migration alone (`instar up`) | {alone_ms:.0} ms |");
    match run_ms {
        Some(ms) => println!(
            "| data migration over HTTP under this load | {ms:.0} ms ({:.2}× the time alone) |",
            ms / alone_ms
        ),
        None => println!(
            "| data migration over HTTP under this load | not finished within {} s |",
            load.seconds
        ),
    }
}
