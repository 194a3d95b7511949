//! `instar-bench fleet [--tenants N] [--migrations M] [--postgres URL]`:
//! - N SQLite tenant files (default 1,000), M small migrations each
//!   (default 10): `instar fleet up` at `--parallel` 1, 2, 4 and 8, next to
//!   a shell loop running `instar up` once per tenant (what users write
//!   today), next to the floor (the same SQL through one `sqlite3` per tenant);
//! - the same over 200 PostgreSQL schemas (floor: one `psql` per schema);
//! - `instar fleet status` over 10,000 recorded tenants.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{header, row, run, Args};

fn migrations(dir: &Path, m: usize) -> String {
    let mut all = String::new();
    for i in 1..=m {
        let sql = if i == 1 {
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);\n".to_string()
        } else {
            format!("INSERT INTO notes (id, body) VALUES ({i}, 'note {i}');\n")
        };
        let d = dir.join(format!("migrations/{i:04}_m{i}"));
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("up.sql"), &sql).expect("write");
        all.push_str(&sql);
    }
    all
}

/// A project folder with the migrations (and `all.sql`, the same SQL as
/// one script), under a header naming `what`.
fn project(a: &Args, what: &str) -> tempfile::TempDir {
    header(&format!("{what}, {} migrations each", a.migrations));
    let dir = tempfile::tempdir().expect("tmp");
    let script = migrations(dir.path(), a.migrations);
    std::fs::write(dir.path().join("all.sql"), script).expect("write");
    dir
}

fn sqlite_tenants(dir: &Path, n: usize) {
    let t = dir.join("tenants");
    let _ = std::fs::remove_dir_all(&t);
    std::fs::create_dir_all(&t).expect("mkdir");
    for i in 0..n {
        std::fs::write(t.join(format!("t{i:05}.db")), b"").expect("touch");
    }
    forget_state(dir);
}

/// Removes the fleet's state file (and its WAL beside it).
fn forget_state(dir: &Path) {
    for f in ["fleet.db", "fleet.db-wal", "fleet.db-shm"] {
        let _ = std::fs::remove_file(dir.join(".instar").join(f));
    }
}

fn fleet_up(instar: &Path, dir: &Path, parallel: usize) -> Duration {
    run(Command::new(instar).current_dir(dir).args([
        "fleet",
        "up",
        "--parallel",
        &parallel.to_string(),
    ]))
}

fn sqlite(a: &Args, instar: &Path, tenants: usize) {
    let dir = project(a, &format!("{tenants} SQLite tenants"));
    let d = dir.path();
    std::fs::write(
        d.join("instar.toml"),
        "[database]\nurl = \"sqlite:catalogue.db\"\n[run]\nbackup = false\n[fleet]\nglob = \"tenants/*.db\"\n",
    )
    .expect("write");
    let (mut floor, mut shell) = (Vec::new(), Vec::new());
    let mut by: Vec<Vec<Duration>> = vec![Vec::new(); 4];
    for _ in 0..a.runs.max(1) {
        sqlite_tenants(d, tenants);
        floor.push(run(Command::new("sh").current_dir(d).args([
            "-c",
            "for f in tenants/*.db; do sqlite3 \"$f\" < all.sql || exit 1; done",
        ])));
        sqlite_tenants(d, tenants);
        shell.push(run(Command::new("sh").current_dir(d).env("INSTAR", instar).args([
            "-c",
            "for f in tenants/*.db; do \"$INSTAR\" -q --database \"sqlite:$f\" up || exit 1; done",
        ])));
        for (i, p) in [1, 2, 4, 8].iter().enumerate() {
            sqlite_tenants(d, tenants);
            by[i].push(fleet_up(instar, d, *p));
        }
    }
    for (i, p) in [1, 2, 4, 8].iter().enumerate() {
        row(&format!("instar fleet up --parallel {p}"), &by[i], &floor);
    }
    row("shell loop: instar up per tenant", &shell, &floor);
    row("floor: sqlite3 per tenant", &floor, &floor);
    status(instar, d);
}

fn status(instar: &Path, d: &Path) {
    // 10,000 recorded tenants, written straight into the state file.
    let db = rusqlite::Connection::open(d.join(".instar/fleet.db")).expect("state");
    db.execute_batch("BEGIN").expect("begin");
    for i in 0..10_000 {
        db.execute(
            "INSERT OR REPLACE INTO fleet_targets (target, state, release, attempts, wave, started_at, duration_ms, applied, version, error) VALUES (?1, ?2, 'r', 1, 1, '2026-12-07T00:00:00Z', ?3, 10, '0010', ?4)",
            rusqlite::params![format!("tenants/x{i:05}.db"), if i % 97 == 0 { "failed" } else { "done" }, i % 1000, if i % 97 == 0 { Some("boom") } else { None }],
        )
        .expect("insert");
    }
    db.execute_batch("COMMIT").expect("commit");
    let runs: Vec<Duration> = (0..5)
        .map(|_| {
            run(Command::new(instar)
                .current_dir(d)
                .args(["fleet", "status"]))
        })
        .collect();
    header("instar fleet status over 10,000 recorded tenants");
    row("instar fleet status (whole command)", &runs, &runs);
}

fn postgres(a: &Args, instar: &Path, base: &str) {
    let schemas = 200;
    let dir = project(a, &format!("{schemas} PostgreSQL schemas"));
    let url = crate::cluster::fresh(base, "instar_bench_fleet");
    let d = dir.path();
    std::fs::write(
        d.join("instar.toml"),
        format!("[run]\nbackup = false\n[fleet]\ncommand = \"seq -f 's%03g' 1 {schemas}\"\nserver = \"{url}\"\n"),
    )
    .expect("write");
    let reset = || {
        let mut sql = String::new();
        for i in 1..=schemas {
            sql.push_str(&format!(
                "DROP SCHEMA IF EXISTS s{i:03} CASCADE; CREATE SCHEMA s{i:03};"
            ));
        }
        crate::psql(&url, &sql);
        forget_state(d);
    };
    let (mut floor, mut by) = (Vec::new(), vec![Vec::new(); 4]);
    for _ in 0..a.runs.max(1) {
        reset();
        let t = Instant::now();
        for i in 1..=schemas {
            run(Command::new("psql")
                .args([
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    &url,
                    "-c",
                    &format!("SET search_path TO s{i:03}"),
                    "-f",
                ])
                .arg(d.join("all.sql")));
        }
        floor.push(t.elapsed());
        for (i, p) in [1, 2, 4, 8].iter().enumerate() {
            reset();
            by[i].push(fleet_up(instar, d, *p));
        }
    }
    for (i, p) in [1, 2, 4, 8].iter().enumerate() {
        row(&format!("instar fleet up --parallel {p}"), &by[i], &floor);
    }
    row("floor: psql per schema", &floor, &floor);
    crate::psql(base, "DROP DATABASE IF EXISTS instar_bench_fleet");
}

pub(crate) fn bench(a: &Args, instar: &Path) {
    sqlite(a, instar, a.tenants);
    match &a.postgres {
        Some(pg) => postgres(a, instar, pg),
        None => println!("PostgreSQL skipped: --postgres URL or INSTAR_TEST_POSTGRES_URL"),
    }
}
