//! `instar-bench data`: a batched, checkpointed data migration over N rows,
//! next to the same change as one plain `UPDATE` (the physical limit), each on
//! a fresh copy of the same seeded table, plus the `instar` process's peak memory.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{median, pg_url, psql, run, Args};

const STATEMENT: &str = "UPDATE items SET email_lower = lower(email)";

fn write_migration(dir: &Path, batch: u64, target: Option<&str>) {
    let f = dir.join("migrations").join("0001_backfill");
    std::fs::create_dir_all(&f).expect("mkdir");
    std::fs::write(f.join("up.sql"), format!("{STATEMENT} WHERE {{batch}}\n")).expect("write");
    std::fs::write(
        f.join("migration.toml"),
        format!(
            "kind = \"data\"\n[data]\ntable = \"items\"\nkey = \"id\"\nbatch_size = {batch}\n{}",
            target
                .map(|t| format!("target_batch_time = \"{t}\"\n"))
                .unwrap_or_default()
        ),
    )
    .expect("write");
}

/// Runs `instar up` under /usr/bin/time; returns wall time and peak RSS in KiB.
fn instar_up(instar: &Path, dir: &Path, url: &str, parallel: usize) -> (Duration, u64) {
    let t = std::time::Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(instar)
        .current_dir(dir)
        .args([
            "-q",
            "--database",
            url,
            "up",
            "--no-backup",
            "--parallel",
            &parallel.to_string(),
        ])
        .stdout(Stdio::null())
        .output()
        .expect("spawn /usr/bin/time");
    let d = t.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "instar up failed: {stderr}");
    let kib = stderr
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    (d, kib)
}

/// Each fixed batch size, then adaptive mode from the smallest one.
fn configs(a: &Args) -> Vec<(u64, Option<&'static str>)> {
    let mut v: Vec<(u64, Option<&'static str>)> = a.batches.iter().map(|&b| (b, None)).collect();
    v.push((
        a.batches.iter().copied().min().unwrap_or(1000),
        Some("250ms"),
    ));
    v
}

fn label(batch: u64, target: Option<&str>) -> String {
    match target {
        Some(t) => format!("instar up, adaptive from {batch}, target {t}"),
        None => format!("instar up, batch_size = {batch}"),
    }
}

fn rate(rows: u64, d: Duration) -> f64 {
    rows as f64 / d.as_secs_f64()
}

fn line(what: &str, rows: u64, d: Duration, limit: Duration, kib: Option<u64>) {
    println!(
        "| {what:<44} | {:>8.0} | {:>10.0} | {:>5.2}x | {} |",
        d.as_secs_f64() * 1000.0,
        rate(rows, d),
        limit.as_secs_f64() / d.as_secs_f64(),
        kib.map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
    );
}

fn table_header(title: &str) {
    println!("\n### {title}");
    println!(
        "\n| what | ms | rows/s | throughput vs limit | peak RSS |\n|---|---:|---:|---:|---:|"
    );
}

fn sqlite(a: &Args, instar: &Path) {
    let dir = tempfile::tempdir().expect("tmp");
    let seed = dir.path().join("seed.db");
    let seed_sql = format!(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, email TEXT NOT NULL, email_lower TEXT);
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {})
         INSERT INTO items (id, email) SELECT x, 'User' || x || '@Example.COM' FROM c;",
        a.rows
    );
    run(Command::new("sqlite3").arg(&seed).arg(&seed_sql));
    let fresh = |name: &str| {
        let p = dir.path().join(name);
        std::fs::copy(&seed, &p).expect("copy");
        p
    };
    let mut limit = vec![];
    for _ in 0..a.runs {
        let db = fresh("limit.db");
        limit.push(run(Command::new("sqlite3").arg(&db).arg(STATEMENT)));
    }
    let limit = median(limit);
    table_header(&format!(
        "SQLite: backfill {} rows ({} runs, medians)",
        a.rows, a.runs
    ));
    line(
        "limit: sqlite3, one plain UPDATE",
        a.rows,
        limit,
        limit,
        None,
    );
    for (batch, target) in configs(a) {
        let work = dir.path().join(format!("b{batch}{}", target.unwrap_or("")));
        write_migration(&work, batch, target);
        let (mut times, mut peak) = (vec![], 0);
        for _ in 0..a.runs {
            let db = fresh("instar.db");
            let (d, kib) = instar_up(instar, &work, &format!("sqlite:{}", db.display()), 1);
            times.push(d);
            peak = peak.max(kib);
        }
        line(
            &label(batch, target),
            a.rows,
            median(times),
            limit,
            Some(peak),
        );
    }
}

fn postgres(a: &Args, instar: &Path, base: &str) {
    let dir = tempfile::tempdir().expect("tmp");
    psql(base, "DROP DATABASE IF EXISTS instar_bench_seed");
    psql(base, "CREATE DATABASE instar_bench_seed");
    let seed = pg_url(base, "instar_bench_seed");
    psql(
        &seed,
        &format!(
            "CREATE TABLE items (id BIGINT PRIMARY KEY, email TEXT NOT NULL, email_lower TEXT);
             INSERT INTO items (id, email) SELECT x, 'User' || x || '@Example.COM' FROM generate_series(1, {}) x;",
            a.rows
        ),
    );
    psql(&seed, "VACUUM ANALYZE items");
    let fresh = |name: &str| {
        psql(base, &format!("DROP DATABASE IF EXISTS {name}"));
        psql(
            base,
            &format!("CREATE DATABASE {name} TEMPLATE instar_bench_seed"),
        );
        pg_url(base, name)
    };
    let mut limit = vec![];
    for _ in 0..a.runs {
        let url = fresh("instar_bench_limit");
        limit.push(run(Command::new("psql").args(["-q", &url, "-c", STATEMENT])));
    }
    let limit = median(limit);
    table_header(&format!(
        "PostgreSQL: backfill {} rows ({} runs, medians)",
        a.rows, a.runs
    ));
    line("limit: psql, one plain UPDATE", a.rows, limit, limit, None);
    for (batch, target, parallel) in configs(a)
        .into_iter()
        .map(|(b, t)| (b, t, 1))
        .chain([(10_000, None, 2)])
    {
        let work = dir.path().join(format!("b{batch}{}", target.unwrap_or("")));
        write_migration(&work, batch, target);
        let (mut times, mut peak) = (vec![], 0);
        for _ in 0..a.runs {
            let url = fresh("instar_bench_data");
            let (d, kib) = instar_up(instar, &work, &url, parallel);
            times.push(d);
            peak = peak.max(kib);
        }
        line(
            &format!(
                "{}{}",
                label(batch, target),
                if parallel > 1 {
                    format!(", --parallel {parallel}")
                } else {
                    String::new()
                }
            ),
            a.rows,
            median(times),
            limit,
            Some(peak),
        );
    }
    for n in [
        "instar_bench_limit",
        "instar_bench_data",
        "instar_bench_seed",
    ] {
        psql(base, &format!("DROP DATABASE IF EXISTS {n}"));
    }
}

pub(crate) fn bench(a: &Args, instar: &Path) {
    sqlite(a, instar);
    match &a.postgres {
        Some(base) => postgres(a, instar, base),
        None => {
            println!("\nPostgreSQL skipped: pass --postgres URL or set INSTAR_TEST_POSTGRES_URL")
        }
    }
}
