//! `instar-bench copy [--rows N] [--runs R] [--postgres URL]`: `instar copy`
//! of an N-row table from a SQLite file into PostgreSQL (checkpoints and
//! verification on) next to the limit in the same run: `sqlite3 -csv`
//! piped into `psql \copy`, each into a fresh database.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{header, median, paired_median, pg_url, psql, run, timed_instar, Args};

const TABLE: &str = "CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL, qty integer, price real, created text)";

fn seed(dir: &Path, instar: &Path, rows: u64) -> std::path::PathBuf {
    let m = dir.join("migrations/0001_items");
    std::fs::create_dir_all(&m).expect("mkdir");
    std::fs::write(m.join("up.sql"), format!("{TABLE};\n")).expect("write");
    let db = dir.join("source.db");
    let url = format!("sqlite:{}", db.display());
    run(Command::new(instar)
        .current_dir(dir)
        .args(["--database", &url, "up"]));
    run(Command::new("sqlite3").arg(&db).arg(format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) \
         INSERT INTO items SELECT i, 'item ' || i || ' with a name', i % 1000, i / 7.0, \
         '2026-01-01 10:00:' || printf('%02d', i % 60) FROM n"
    )));
    db
}

pub(crate) fn bench(a: &Args, instar: &Path) {
    let Some(base) = &a.postgres else {
        println!("copy needs PostgreSQL: pass --postgres URL or set INSTAR_TEST_POSTGRES_URL");
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let t = Instant::now();
    let db = seed(dir.path(), instar, a.rows);
    println!(
        "seeded {} rows into SQLite in {:.1}s",
        a.rows,
        t.elapsed().as_secs_f64()
    );
    let from = format!("sqlite:{}", db.display());
    let (mut limit, mut sample, mut full) = (vec![], vec![], vec![]);
    let mut rss = vec![];
    for _ in 0..a.runs {
        for n in [
            "instar_bench_copy_limit",
            "instar_bench_copy_sample",
            "instar_bench_copy_full",
        ] {
            psql(base, &format!("DROP DATABASE IF EXISTS {n}"));
            psql(base, &format!("CREATE DATABASE {n}"));
        }
        let limit_url = pg_url(base, "instar_bench_copy_limit");
        psql(&limit_url, TABLE);
        let pipe = format!(
            "sqlite3 -csv '{}' 'SELECT id, name, qty, price, created FROM items ORDER BY id' | psql -q -v ON_ERROR_STOP=1 '{limit_url}' -c '\\copy items FROM STDIN WITH (FORMAT csv)'",
            db.display()
        );
        limit.push(run(Command::new("sh").args(["-c", &pipe])));
        for (name, verify, times) in [
            ("instar_bench_copy_sample", "sample", &mut sample),
            ("instar_bench_copy_full", "full", &mut full),
        ] {
            let to = pg_url(base, name);
            let (d, kib) = timed_instar(
                instar,
                dir.path(),
                &[
                    "--database",
                    &from,
                    "copy",
                    "--from",
                    &from,
                    "--to",
                    &to,
                    "--verify",
                    verify,
                ],
            );
            times.push(d);
            rss.push(kib);
        }
    }
    header(&format!(
        "instar copy: {} rows, SQLite → PostgreSQL",
        a.rows
    ));
    let line = |name: &str, v: &[Duration]| {
        println!(
            "| {name:<58} | {:>9.1} | {:>6.2}x |",
            median(v.to_vec()).as_secs_f64() * 1000.0,
            paired_median(v, &limit)
        )
    };
    line("limit: sqlite3 -csv | psql \\copy", &limit);
    line(
        "instar copy (checkpoints, --verify sample: counts + 10,000 rows)",
        &sample,
    );
    line(
        "instar copy (checkpoints, --verify full: every row compared)",
        &full,
    );
    println!(
        "\nthroughput vs the limit (limit time / instar time): sample {:.2}, full {:.2}; peak RSS of instar {} KiB",
        1.0 / paired_median(&sample, &limit),
        1.0 / paired_median(&full, &limit),
        rss.iter().max().copied().unwrap_or(0)
    );
    for n in [
        "instar_bench_copy_limit",
        "instar_bench_copy_sample",
        "instar_bench_copy_full",
    ] {
        psql(base, &format!("DROP DATABASE IF EXISTS {n}"));
    }
}
