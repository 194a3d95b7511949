//! `instar-bench docs [--rows N] [--runs R]`: an eager documents migration of
//! N documents on SQLite — pushed down to SQL, and translated in process —
//! next to one hand-written `UPDATE` doing the same change (the limit), each
//! on a fresh copy of the same seeded database, with `instar`'s peak memory.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{median, Args};

const LENS: &str = "lens:\n- rename: {source: a, destination: bb}\n- add: {name: n, type: number, default: 0}\n- copy: {source: d, destination: e}\n- wrap: {name: c}\n";

/// The same change by hand, for every row (what the lens does to these documents).
const LIMIT: &str = "UPDATE users SET doc = json_set(json_remove(doc, '$.a'), '$.bb', json(doc -> '$.a'), '$.c', json_array(json(doc -> '$.c')), '$.e', json(doc -> '$.d'), '$.n', json('0')), v = '2.0.0'";

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

fn instar_up(instar: &Path, dir: &Path) -> (Duration, u64) {
    crate::timed_instar(
        instar,
        dir,
        &["-q", "--database", "sqlite:db.sqlite", "up", "--no-backup"],
    )
}

pub(crate) fn bench(a: &Args, instar: &Path) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let seed = tmp.path().join("seed.sqlite");
    sqlite3(
        &seed,
        &format!("CREATE TABLE users (id INTEGER PRIMARY KEY, doc TEXT NOT NULL, v TEXT); WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {}) INSERT INTO users SELECT i, json_object('a', 'user ' || i, 'c', i, 'd', 'd' || i || '@example.org', 'z', printf('%.200c', 'x')), '1.0.0' FROM c;", a.rows),
    );
    let copy = |name: &str, pushdown: Option<bool>| {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::copy(&seed, dir.join("db.sqlite")).expect("copy");
        if let Some(p) = pushdown {
            project(&dir, p);
        }
        dir
    };
    let (mut limit, mut pushed, mut here) = (Vec::new(), Vec::new(), Vec::new());
    let (mut peak_pushed, mut peak_here) = (0, 0);
    for run in 0..a.runs {
        let l = copy(&format!("limit{run}"), None);
        limit.push(sqlite3(&l.join("db.sqlite"), LIMIT));
        let p = copy(&format!("pushed{run}"), Some(true));
        let (d, kib) = instar_up(instar, &p);
        pushed.push(d);
        peak_pushed = peak_pushed.max(kib);
        let h = copy(&format!("here{run}"), Some(false));
        let (d, kib) = instar_up(instar, &h);
        here.push(d);
        peak_here = peak_here.max(kib);
        for d in [l, p, h] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    let limit_ms = median(limit.clone()).as_secs_f64() * 1000.0;
    println!(
        "\n### Eager documents migration, SQLite, {} documents (~260 B), 4-op lens, median of {}",
        a.rows, a.runs
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
    line("one hand-written UPDATE (sqlite3)", &limit, None);
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
