//! `instar-bench cluster [--migrations N] [--runs R] [--postgres URL] [--mysql URL] [--galera URL]`:
//! - the run lock's cost: `instar up` applying one trivial migration with the
//!   advisory lock and with the lease, on PostgreSQL and MariaDB, alternated;
//! - N small migrations (`CREATE TABLE` + one row) applied by `instar up`
//!   on one node of a Galera cluster (`scripts/galera.sh start`) next to one
//!   MariaDB server, each next to the same SQL through one `mariadb` client run;
//! - a data migration over `--rows` rows walked by 1, 2 and 3 processes
//!   (`up --slices 6`, `up --worker`) next to one `UPDATE` (see `workers.rs`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{header, migration_sql, row, run, Args};

/// A fresh database `name` on the server of `base` (`mysql://` or `postgres://`); its URL.
pub(crate) fn fresh(base: &str, name: &str) -> String {
    let mut u = url::Url::parse(base).expect("URL");
    if base.starts_with("postgres") {
        crate::psql(base, &format!("DROP DATABASE IF EXISTS {name}"));
        crate::psql(base, &format!("CREATE DATABASE {name}"));
    } else {
        mariadb(
            base,
            &format!("DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}"),
        );
    }
    u.set_path(&format!("/{name}"));
    u.to_string()
}

/// Runs `sql` with the `mariadb` client against the server (and database) of `url`.
fn mariadb(url: &str, sql: &str) -> Duration {
    let u = url::Url::parse(url).expect("URL");
    let mut c = Command::new("mariadb");
    c.args(["-h", u.host_str().unwrap_or("127.0.0.1")])
        .args(["-P", &u.port().unwrap_or(3306).to_string()])
        .args(["-u", u.username()]);
    let db = u.path().trim_start_matches('/');
    if !db.is_empty() {
        c.arg(db);
    }
    c.args(["-e", sql]);
    run(&mut c)
}

fn project(dir: &Path, lock: &str) {
    std::fs::write(
        dir.join("instar.toml"),
        format!("[run]\nlock = \"{lock}\"\nlease = \"30s\"\nbackup = false\n"),
    )
    .expect("write instar.toml");
}

fn up(instar: &Path, dir: &Path, url: &str) -> Duration {
    let t = Instant::now();
    let out = Command::new(instar)
        .current_dir(dir)
        .args(["--database", url, "up"])
        .output()
        .expect("spawn instar");
    assert!(
        out.status.success(),
        "instar up: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

/// `instar up` of one `SELECT 1` migration, advisory lock next to lease, alternated.
fn lock_cost(a: &Args, instar: &Path, base: &str, engine: &str) {
    let runs = a.runs.max(5);
    let mut times = [Vec::new(), Vec::new()];
    let dirs = [
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    ];
    let urls: Vec<String> = ["advisory", "lease"]
        .iter()
        .map(|l| fresh(base, &format!("instar_bench_lock_{l}")))
        .collect();
    for (i, lock) in ["advisory", "lease"].iter().enumerate() {
        project(dirs[i].path(), lock);
    }
    for r in 0..runs {
        for i in 0..2 {
            let m = dirs[i].path().join(format!("migrations/{:04}_noop", r + 1));
            std::fs::create_dir_all(&m).expect("mkdir");
            std::fs::write(m.join("up.sql"), "SELECT 1;\n").expect("write");
            times[i].push(up(instar, dirs[i].path(), &urls[i]));
        }
    }
    header(&format!(
        "{engine}: one trivial migration, lease next to the advisory lock ({runs} runs)"
    ));
    row(
        "instar up, lock = \"advisory\" (the limit here)",
        &times[0],
        &times[0],
    );
    row("instar up, lock = \"lease\"", &times[1], &times[0]);
}

/// N small migrations through `instar up` on `base`, next to the same SQL in one client run.
fn many(a: &Args, instar: &Path, base: &str, label: &str) {
    let n = a.migrations;
    let mut ours = Vec::new();
    let mut floor = Vec::new();
    for r in 0..a.runs {
        let dir = tempfile::tempdir().expect("tmp");
        for i in 1..=n {
            let f = dir.path().join(format!("migrations/{i:04}_m{i}"));
            std::fs::create_dir_all(&f).expect("mkdir");
            std::fs::write(f.join("up.sql"), migration_sql(i)).expect("write");
        }
        project(dir.path(), "auto");
        let url = fresh(base, &format!("instar_bench_many_{r}"));
        ours.push(up(instar, dir.path(), &url));
        let script: String = (1..=n).map(migration_sql).collect();
        let url = fresh(base, &format!("instar_bench_floor_{r}"));
        floor.push(mariadb(&url, &script));
    }
    row(
        &format!("{label}: instar up, {n} migrations"),
        &ours,
        &floor,
    );
    row(
        &format!("{label}: the same SQL, one mariadb client run"),
        &floor,
        &floor,
    );
}

pub(crate) fn bench(a: &Args, instar: &Path) {
    match &a.postgres {
        Some(pg) => lock_cost(a, instar, pg, "PostgreSQL"),
        None => println!("PostgreSQL skipped: --postgres URL or INSTAR_TEST_POSTGRES_URL"),
    }
    match &a.mysql {
        Some(my) => lock_cost(a, instar, my, "MariaDB"),
        None => println!("MariaDB skipped: --mysql URL or INSTAR_TEST_MYSQL_URL"),
    }
    header(&format!(
        "{} small migrations: a Galera node next to one MariaDB server",
        a.migrations
    ));
    if let Some(my) = &a.mysql {
        many(a, instar, my, "one MariaDB server");
    }
    match &a.galera {
        Some(g) => many(a, instar, g, "Galera node (3 nodes)"),
        None => println!("Galera skipped: --galera URL (scripts/galera.sh start prints them)"),
    }
    if let Some(pg) = &a.postgres {
        crate::workers::bench(a, instar, pg);
    }
}
