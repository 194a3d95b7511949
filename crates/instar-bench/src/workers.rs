//! `instar-bench cluster` (with `--postgres`): one data migration over
//! `--rows` rows (default 1,000,000) walked by one, two and three `instar`
//! processes (`up --slices 6` and `up --worker`s), next to one set-based
//! `UPDATE` through `psql` on the same table.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{header, psql, row, Args};

fn table(url: &str, rows: u64) {
    psql(url, "DROP TABLE IF EXISTS t");
    psql(
        url,
        "CREATE TABLE t (id bigint PRIMARY KEY, a bigint NOT NULL, b bigint NOT NULL)",
    );
    psql(
        url,
        &format!("INSERT INTO t SELECT g, g, 0 FROM generate_series(1, {rows}) g"),
    );
    psql(url, "VACUUM ANALYZE t");
}

fn project(dir: &Path) {
    let m = dir.join("migrations/0001_double");
    std::fs::create_dir_all(&m).expect("mkdir");
    std::fs::write(m.join("up.sql"), "UPDATE t SET b = a * 2 WHERE {batch}").expect("write");
    std::fs::write(
        m.join("migration.toml"),
        "kind = \"data\"\n[data]\ntable = \"t\"\nkey = \"id\"\nbatch_size = 10000\nexact_count = true\n",
    )
    .expect("write");
    std::fs::write(dir.join("instar.toml"), "[run]\nbackup = false\n").expect("write");
}

/// `instar up --slices 6` and `workers - 1` workers; the owner's wall clock.
fn walk(instar: &Path, dir: &Path, url: &str, workers: usize) -> Duration {
    let t = Instant::now();
    let spawn = |args: &[&str]| {
        Command::new(instar)
            .current_dir(dir)
            .args(["--database", url])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn instar")
    };
    let owner = spawn(&["up", "--slices", "6"]);
    let others: Vec<_> = (1..workers).map(|_| spawn(&["up", "--worker"])).collect();
    let out = owner.wait_with_output().expect("owner");
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "instar up: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for w in others {
        let o = w.wait_with_output().expect("worker");
        assert!(
            o.status.success(),
            "instar up --worker: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    took
}

pub(crate) fn bench(a: &Args, instar: &Path, base: &str) {
    header(&format!(
        "A data migration over {} rows: 1, 2, 3 worker processes (PostgreSQL, batches of 10,000, 6 slices)",
        a.rows
    ));
    let url = crate::cluster::fresh(base, "instar_bench_workers");
    let dir = tempfile::tempdir().expect("tmp");
    project(dir.path());
    let mut floor = Vec::new();
    let mut by_workers: Vec<Vec<Duration>> = vec![Vec::new(); 3];
    for _ in 0..a.runs.max(1) {
        table(&url, a.rows);
        let t = Instant::now();
        psql(&url, "UPDATE t SET b = a * 2");
        floor.push(t.elapsed());
        for (w, runs) in by_workers.iter_mut().enumerate() {
            table(&url, a.rows);
            psql(&url, "DROP TABLE IF EXISTS instar_history, instar_checkpoints, instar_errors, instar_claims, instar_lock");
            runs.push(walk(instar, dir.path(), &url, w + 1));
        }
    }
    for (w, runs) in by_workers.iter().enumerate() {
        row(&format!("instar up, {} process(es)", w + 1), runs, &floor);
    }
    row("one UPDATE of every row (psql)", &floor, &floor);
    psql(base, "DROP DATABASE IF EXISTS instar_bench_workers");
}
