//! `instar-bench data`: a batched, checkpointed data migration over N rows,
//! next to the same change as one plain `UPDATE` (the physical limit), each on
//! a fresh copy of the same seeded table, plus the `instar` process's peak memory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{median, paired_median, pg_url, psql, run, Args};

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
    let parallel = parallel.to_string();
    let args = [
        "-q",
        "--database",
        url,
        "up",
        "--no-backup",
        "--parallel",
        &parallel,
    ];
    crate::timed_instar(instar, dir, &args)
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

/// One Instar configuration measured against the limit.
struct Case {
    label: String,
    work: PathBuf,
    parallel: usize,
}

/// Runs the limit and every case one after the other, `runs` times over, so
/// each run k of a case is compared with run k of the limit (same machine load).
fn alternate(
    runs: usize,
    mut limit: impl FnMut() -> Duration,
    cases: &[Case],
    mut instar: impl FnMut(&Case) -> (Duration, u64),
) -> (Vec<Duration>, Vec<(Vec<Duration>, u64)>) {
    let mut limits = Vec::new();
    let mut results: Vec<(Vec<Duration>, u64)> = cases.iter().map(|_| (Vec::new(), 0)).collect();
    for _ in 0..runs {
        limits.push(limit());
        for (case, (times, peak)) in cases.iter().zip(&mut results) {
            let (d, kib) = instar(case);
            times.push(d);
            *peak = (*peak).max(kib);
        }
    }
    (limits, results)
}

/// Prints the table: medians, and throughput relative to the limit as the
/// median of the paired ratios (limit run k / case run k).
fn report(
    title: &str,
    limit_label: &str,
    rows: u64,
    limits: &[Duration],
    cases: &[Case],
    results: &[(Vec<Duration>, u64)],
) {
    println!("\n### {title}");
    println!(
        "\n| what | median ms | rows/s | throughput vs limit (median of paired ratios) | peak RSS |\n|---|---:|---:|---:|---:|"
    );
    let line = |what: &str, times: &[Duration], kib: Option<u64>| {
        let d = median(times.to_vec());
        println!(
            "| {what:<44} | {:>8.0} | {:>10.0} | {:>5.2}x | {} |",
            d.as_secs_f64() * 1000.0,
            rows as f64 / d.as_secs_f64(),
            paired_median(limits, times),
            kib.map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
        );
    };
    line(limit_label, limits, None);
    for (case, (times, peak)) in cases.iter().zip(results) {
        line(&case.label, times, Some(*peak));
    }
}

/// The cases: each fixed batch size, adaptive mode, and `extra` (batch, parallel) ones.
fn cases(a: &Args, dir: &Path, extra: &[(u64, usize)]) -> Vec<Case> {
    let mut v = Vec::new();
    let all = configs(a)
        .into_iter()
        .map(|(b, t)| (b, t, 1))
        .chain(extra.iter().map(|&(b, p)| (b, None, p)));
    for (batch, target, parallel) in all {
        let work = dir.join(format!("b{batch}{}p{parallel}", target.unwrap_or("")));
        write_migration(&work, batch, target);
        let mut label = label(batch, target);
        if parallel > 1 {
            label.push_str(&format!(", --parallel {parallel}"));
        }
        v.push(Case {
            label,
            work,
            parallel,
        });
    }
    v
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
    let cases = cases(a, dir.path(), &[]);
    let (limits, results) = alternate(
        a.runs,
        || {
            run(Command::new("sqlite3")
                .arg(fresh("limit.db"))
                .arg(STATEMENT))
        },
        &cases,
        |c| {
            let db = fresh("instar.db");
            instar_up(
                instar,
                &c.work,
                &format!("sqlite:{}", db.display()),
                c.parallel,
            )
        },
    );
    report(
        &format!(
            "SQLite: backfill {} rows ({} runs, alternated)",
            a.rows, a.runs
        ),
        "limit: sqlite3, one plain UPDATE",
        a.rows,
        &limits,
        &cases,
        &results,
    );
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
    let cases = cases(a, dir.path(), &[(10_000, 2)]);
    let (limits, results) = alternate(
        a.runs,
        || {
            let url = fresh("instar_bench_limit");
            run(Command::new("psql").args(["-q", &url, "-c", STATEMENT]))
        },
        &cases,
        |c| instar_up(instar, &c.work, &fresh("instar_bench_data"), c.parallel),
    );
    report(
        &format!(
            "PostgreSQL: backfill {} rows ({} runs, alternated)",
            a.rows, a.runs
        ),
        "limit: psql, one plain UPDATE",
        a.rows,
        &limits,
        &cases,
        &results,
    );
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
