//! `instar-bench docs [--rows N] [--runs R] [--postgres URL]`: an eager
//! documents migration of N documents — pushed down to SQL, and translated
//! in process — next to one hand-written `UPDATE` doing the same change (the
//! limit), each on a fresh copy of the same seeded database, with `instar`'s
//! peak memory; on SQLite, and on PostgreSQL when a URL is given.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{median, Args};

const LENS: &str = "lens:\n- rename: {source: a, destination: bb}\n- add: {name: n, type: number, default: 0}\n- copy: {source: d, destination: e}\n- wrap: {name: c}\n";

/// The same change by hand, for every row (what the lens does to these documents).
const SQLITE_LIMIT: &str = "UPDATE users SET doc = json_set(json_remove(doc, '$.a'), '$.bb', json(doc -> '$.a'), '$.c', json_array(json(doc -> '$.c')), '$.e', json(doc -> '$.d'), '$.n', json('0')), v = '2.0.0'";

fn sqlite3(db: &Path, sql: &str) -> Duration {
    let t = Instant::now();
    let ok = Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .stdout(Stdio::null())
        .status()
        .expect("sqlite3")
        .success();
    assert!(ok, "sqlite3 failed: {sql}");
    t.elapsed()
}

fn project(dir: &Path, pushdown: bool) {
    std::fs::write(
        dir.join("instar.toml"),
        "[collections.users]\ntable = \"users\"\nkey = \"id\"\nbody = \"doc\"\nversion_column = \"v\"\nversions = [\"1.0.0\", \"2.0.0\"]\n",
    )
    .expect("write");
    let lenses = dir.join("collections/users/lenses");
    std::fs::create_dir_all(&lenses).expect("mkdir");
    std::fs::write(lenses.join("1.0.0--2.0.0.lens.yaml"), LENS).expect("write");
    let m = dir.join("migrations/0001_users_to_2");
    std::fs::create_dir_all(&m).expect("mkdir");
    std::fs::write(m.join("up.sql"), "-- documents\n").expect("write");
    std::fs::write(
        m.join("migration.toml"),
        format!("kind = \"documents\"\n[documents]\ncollection = \"users\"\nto = \"2.0.0\"\nbatch_size = 10000\npushdown = {pushdown}\n"),
    )
    .expect("write");
}

/// The same change on PostgreSQL's `jsonb`.
const PG_LIMIT: &str = "UPDATE users SET doc = (doc - 'a') || jsonb_build_object('bb', doc -> 'a', 'c', jsonb_build_array(doc -> 'c'), 'e', doc -> 'd', 'n', 0), v = '2.0.0'";

/// Where the benchmark's databases live: each case gets a fresh copy of the seed.
enum Engine<'a> {
    Sqlite,
    Postgres(&'a str),
}

const SEED_PG: &str = "instar_bench_docs_seed";

impl Engine<'_> {
    fn name(&self) -> &'static str {
        match self {
            Engine::Sqlite => "SQLite",
            Engine::Postgres(_) => "PostgreSQL",
        }
    }

    fn seed(&self, dir: &Path, rows: u64) {
        match self {
            Engine::Sqlite => {
                sqlite3(
                    &dir.join("seed.sqlite"),
                    &format!("CREATE TABLE users (id INTEGER PRIMARY KEY, doc TEXT NOT NULL, v TEXT); WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {rows}) INSERT INTO users SELECT i, json_object('a', 'user ' || i, 'c', i, 'd', 'd' || i || '@example.org', 'z', printf('%.200c', 'x')), '1.0.0' FROM c;"),
                );
            }
            Engine::Postgres(base) => {
                crate::psql(base, &format!("DROP DATABASE IF EXISTS {SEED_PG}"));
                crate::psql(base, &format!("CREATE DATABASE {SEED_PG}"));
                crate::psql(
                    &crate::pg_url(base, SEED_PG),
                    &format!("CREATE TABLE users (id INTEGER PRIMARY KEY, doc JSONB NOT NULL, v TEXT); INSERT INTO users SELECT i, jsonb_build_object('a', 'user ' || i, 'c', i, 'd', 'd' || i || '@example.org', 'z', repeat('x', 200)), '1.0.0' FROM generate_series(1, {rows}) i"),
                );
                crate::psql(&crate::pg_url(base, SEED_PG), "VACUUM ANALYZE users");
            }
        }
    }

    /// A fresh copy of the seed for case `name`, and its URL.
    fn copy(&self, tmp: &Path, dir: &Path, name: &str) -> String {
        match self {
            Engine::Sqlite => {
                std::fs::copy(tmp.join("seed.sqlite"), dir.join("db.sqlite")).expect("copy");
                "sqlite:db.sqlite".into()
            }
            Engine::Postgres(base) => {
                let db = format!("instar_bench_docs_{name}");
                crate::psql(base, &format!("DROP DATABASE IF EXISTS {db}"));
                crate::psql(base, &format!("CREATE DATABASE {db} TEMPLATE {SEED_PG}"));
                crate::pg_url(base, &db)
            }
        }
    }

    /// The hand-written UPDATE by the engine's own shell, timed.
    fn limit(&self, dir: &Path, url: &str) -> Duration {
        match self {
            Engine::Sqlite => sqlite3(&dir.join("db.sqlite"), SQLITE_LIMIT),
            Engine::Postgres(_) => {
                let t = Instant::now();
                crate::psql(url, PG_LIMIT);
                t.elapsed()
            }
        }
    }

    fn drop(&self, url: &str) {
        if let Engine::Postgres(base) = self {
            let (_, db) = url.rsplit_once('/').expect("a database");
            crate::psql(base, &format!("DROP DATABASE IF EXISTS {db}"));
        }
    }
}

fn instar_up(instar: &Path, dir: &Path, url: &str) -> (Duration, u64) {
    crate::timed_instar(instar, dir, &["-q", "--database", url, "up", "--no-backup"])
}

pub(crate) fn bench(a: &Args, instar: &Path) {
    run(a, instar, &Engine::Sqlite);
    match &a.postgres {
        Some(base) => run(a, instar, &Engine::Postgres(base)),
        None => {
            println!("\nPostgreSQL skipped: pass --postgres URL or set INSTAR_TEST_POSTGRES_URL")
        }
    }
}

fn run(a: &Args, instar: &Path, e: &Engine) {
    let tmp = tempfile::tempdir().expect("tempdir");
    e.seed(tmp.path(), a.rows);
    let copy = |name: &str, pushdown: Option<bool>| {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let url = e.copy(tmp.path(), &dir, name);
        if let Some(p) = pushdown {
            project(&dir, p);
        }
        (dir, url)
    };
    let (mut limit, mut pushed, mut here) = (Vec::new(), Vec::new(), Vec::new());
    let (mut peak_pushed, mut peak_here) = (0, 0);
    for run in 0..a.runs {
        let (l, url) = copy(&format!("limit{run}"), None);
        limit.push(e.limit(&l, &url));
        e.drop(&url);
        let (p, url) = copy(&format!("pushed{run}"), Some(true));
        let (d, kib) = instar_up(instar, &p, &url);
        pushed.push(d);
        peak_pushed = peak_pushed.max(kib);
        e.drop(&url);
        let (h, url) = copy(&format!("here{run}"), Some(false));
        let (d, kib) = instar_up(instar, &h, &url);
        here.push(d);
        peak_here = peak_here.max(kib);
        e.drop(&url);
        for d in [l, p, h] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    if let Engine::Postgres(base) = e {
        crate::psql(base, &format!("DROP DATABASE IF EXISTS {SEED_PG}"));
    }
    let limit_ms = median(limit.clone()).as_secs_f64() * 1000.0;
    println!(
        "\n### Eager documents migration, {}, {} documents (~260 B), 4-op lens, median of {}",
        e.name(),
        a.rows,
        a.runs
    );
    println!("\n| what | median ms | documents/s | throughput vs the hand-written UPDATE | peak RSS |\n|---|---:|---:|---:|---:|");
    let line = |what: &str, times: &[Duration], kib: Option<u64>| {
        let ms = median(times.to_vec()).as_secs_f64() * 1000.0;
        println!(
            "| {what} | {ms:.0} | {:.0} | {:.2}× | {} |",
            a.rows as f64 / (ms / 1000.0),
            limit_ms / ms,
            kib.map_or("–".into(), |k| format!("{} MB", k / 1024))
        );
    };
    line(
        match e {
            Engine::Sqlite => "one hand-written UPDATE (sqlite3)",
            Engine::Postgres(_) => "one hand-written UPDATE (psql)",
        },
        &limit,
        None,
    );
    line(
        "instar up, pushed down, batch_size = 10000",
        &pushed,
        Some(peak_pushed),
    );
    line(
        "instar up, in process (pushdown = false), batch_size = 10000",
        &here,
        Some(peak_here),
    );
}
