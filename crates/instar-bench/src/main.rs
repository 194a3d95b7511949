//! `instar-bench`: times the release `instar` binary next to the physical limit —
//! the same SQL run by `sqlite3` / `psql` in one process — in the same run.
//!
//! Usage:
//! - `instar-bench [--migrations N] [--runs R] [--postgres URL]`: schema migrations;
//! - `instar-bench data [--rows N] [--batches 1000,10000] [--runs R] [--postgres URL]`:
//!   a data migration over N rows next to one plain `UPDATE`;
//! - `instar-bench lens`: documents per second through a lens and a chain of lenses;
//! - `instar-bench wasm`: a WebAssembly lens stage against the same change as a
//!   declarative op, and loading a module cold and warm;
//! - `instar-bench serve [--rows N] [--seconds S] [--clients C] [--sse K]`: the HTTP
//!   server under load while a data migration runs;
//! - `instar-bench docs [--rows N] [--runs R]`: an eager documents migration on
//!   SQLite, pushed down and in process, next to one hand-written `UPDATE`;
//! - `instar-bench copy [--rows N] [--runs R] [--postgres URL]`: `instar copy`
//!   from SQLite into PostgreSQL next to `sqlite3 -csv | psql \copy`;
//! - `instar-bench online [--rows N] [--runs R] [--postgres URL]`: an online
//!   migration's start next to one `UPDATE`, writes through the sync triggers,
//!   reads through a version view, and the expand/contract transactions.
//!
//! - `instar-bench cluster [--migrations N] [--runs R] [--postgres URL] [--mysql URL] [--galera URL]`:
//!   the lease's cost next to the advisory lock, and N migrations on a Galera node
//!   next to one MariaDB server, each next to one `mariadb` client run; with
//!   `--postgres`, one data migration walked by 1, 2 and 3 worker processes.
//! - `instar-bench fleet [--tenants N] [--migrations M] [--runs R] [--postgres URL]`:
//!   `instar fleet up` over N SQLite tenants (and 200 PostgreSQL schemas) at
//!   `--parallel` 1, 2, 4, 8, next to a shell loop of `instar up` and the floor
//!   (one `sqlite3`/`psql` per tenant); `fleet status` over 10,000 tenants.
//!
//! Key-value stores have their own: `cargo bench -p instar-rocksdb --bench kv`
//! (it builds RocksDB in release without the rest of Instar).
//!
//! The `instar` binary is looked up next to this one, or in `INSTAR_BIN`.

mod cluster;
mod copy;
mod data;
mod docs;
mod fleet;
mod lens;
mod online;
mod serve;
mod wasm;
mod workers;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct Args {
    migrations: usize,
    pub(crate) runs: usize,
    pub(crate) postgres: Option<String>,
    pub(crate) mysql: Option<String>,
    pub(crate) galera: Option<String>,
    cluster: bool,
    fleet: bool,
    pub(crate) tenants: usize,
    data: bool,
    docs: bool,
    copy: bool,
    online: bool,
    serve: bool,
    seconds: u64,
    clients: usize,
    sse: usize,
    pub(crate) rows: u64,
    pub(crate) batches: Vec<u64>,
}

fn args() -> Args {
    let mut a = Args {
        migrations: 500,
        runs: 5,
        postgres: std::env::var("INSTAR_TEST_POSTGRES_URL").ok(),
        mysql: std::env::var("INSTAR_TEST_MYSQL_URL").ok(),
        galera: None,
        cluster: false,
        fleet: false,
        tenants: 1_000,
        data: false,
        docs: false,
        copy: false,
        online: false,
        serve: false,
        seconds: 30,
        clients: 200,
        sse: 50,
        rows: 1_000_000,
        batches: vec![1_000, 10_000, 50_000],
    };
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("data") {
        a.data = true;
        a.runs = 3;
        argv.remove(0);
    } else if argv.first().map(String::as_str) == Some("docs") {
        a.docs = true;
        a.runs = 3;
        argv.remove(0);
    } else if argv.first().map(String::as_str) == Some("copy") {
        a.copy = true;
        a.runs = 3;
        argv.remove(0);
    } else if argv.first().map(String::as_str) == Some("online") {
        a.online = true;
        a.runs = 3;
        argv.remove(0);
    } else if argv.first().map(String::as_str) == Some("cluster") {
        a.cluster = true;
        a.migrations = 100;
        a.runs = 3;
        argv.remove(0);
    } else if argv.first().map(String::as_str) == Some("fleet") {
        a.fleet = true;
        a.migrations = 10;
        a.runs = 1;
        argv.remove(0);
    } else if argv.first().map(String::as_str) == Some("serve") {
        a.serve = true;
        argv.remove(0);
    }
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--migrations" => a.migrations = value.parse().expect("--migrations N"),
            "--runs" => a.runs = value.parse().expect("--runs R"),
            "--postgres" => a.postgres = Some(value),
            "--mysql" => a.mysql = Some(value),
            "--galera" => a.galera = Some(value),
            "--rows" => a.rows = value.parse().expect("--rows N"),
            "--seconds" => a.seconds = value.parse().expect("--seconds S"),
            "--clients" => a.clients = value.parse().expect("--clients C"),
            "--sse" => a.sse = value.parse().expect("--sse K"),
            "--tenants" => a.tenants = value.parse().expect("--tenants N"),
            "--batches" => {
                a.batches = value
                    .split(',')
                    .map(|b| b.parse().expect("--batches 1000,10000"))
                    .collect()
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

fn instar_bin() -> PathBuf {
    if let Ok(p) = std::env::var("INSTAR_BIN") {
        return p.into();
    }
    let me = std::env::current_exe().expect("current exe");
    let p = me.with_file_name("instar");
    assert!(
        p.is_file(),
        "build it first: cargo build --release -p instar-cli ({} not found)",
        p.display()
    );
    p
}

pub(crate) fn migration_sql(i: usize) -> String {
    format!("CREATE TABLE t{i} (id INTEGER PRIMARY KEY, name VARCHAR(40));\nINSERT INTO t{i} VALUES (1, 'row {i}');\n")
}

/// A history table like Instar's, for the "limit + bookkeeping" script.
const HISTORY: &str = "CREATE TABLE h (id BIGINT PRIMARY KEY, version TEXT, name TEXT, event TEXT, direction TEXT, kind TEXT, checksum TEXT, schema_version TEXT, started_at TEXT, finished_at TEXT, duration_ms BIGINT, statements_applied BIGINT, statements_total BIGINT, statement_hashes TEXT, rows_affected BIGINT, error TEXT, failed_statement TEXT, operator TEXT, tool_version TEXT, note TEXT);\n";

fn history_insert(i: usize) -> String {
    format!("INSERT INTO h VALUES ({i}, '{i:04}', 'm{i}', 'apply', 'up', 'schema', 'sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef', NULL, '2026-11-22T00:00:00.000Z', '2026-11-22T00:00:00.001Z', 1, 2, 2, NULL, 1, NULL, NULL, 'bench@host', '0.1.0', NULL);\n")
}

/// Writes N Instar-layout migrations, and the same SQL as two scripts with a
/// transaction per migration (what sqlite3 / psql run as the limit): the bare
/// SQL, and the SQL plus a history-row INSERT in each transaction.
fn fixtures(dir: &Path, n: usize) -> (PathBuf, PathBuf) {
    let m = dir.join("migrations");
    let mut script = String::new();
    let mut booked = String::from(HISTORY);
    for i in 1..=n {
        let f = m.join(format!("{i:04}_m{i}"));
        std::fs::create_dir_all(&f).expect("mkdir");
        std::fs::write(f.join("up.sql"), migration_sql(i)).expect("write");
        script.push_str(&format!("BEGIN;\n{}COMMIT;\n", migration_sql(i)));
        booked.push_str(&format!(
            "BEGIN;\n{}{}COMMIT;\n",
            migration_sql(i),
            history_insert(i)
        ));
    }
    let (s, b) = (dir.join("limit.sql"), dir.join("limit_booked.sql"));
    std::fs::write(&s, script).expect("write script");
    std::fs::write(&b, booked).expect("write script");
    (s, b)
}

/// Runs `instar` with `args` in `dir` under `/usr/bin/time`, which must
/// succeed; returns wall time and peak RSS in KiB.
pub(crate) fn timed_instar(instar: &Path, dir: &Path, args: &[&str]) -> (Duration, u64) {
    let t = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(instar)
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::null())
        .output()
        .expect("spawn /usr/bin/time");
    let d = t.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "instar {args:?} failed: {stderr}");
    let kib = stderr
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    (d, kib)
}

pub(crate) fn run(cmd: &mut Command) -> Duration {
    let t = Instant::now();
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("spawn");
    let d = t.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    d
}

/// The median of the ratios a[k] / b[k]: runs made one after the other,
/// alternated, compared pair by pair (the same machine load).
pub(crate) fn paired_median(a: &[Duration], b: &[Duration]) -> f64 {
    let mut ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(x, y)| x.as_secs_f64() / y.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

pub(crate) fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// One table row: the median time of `runs`, and the median of the ratios
/// run k / limit run k (the two were run one after the other, alternated, so
/// each ratio compares runs made under the same machine load).
pub(crate) fn row(name: &str, runs: &[Duration], limit: &[Duration]) {
    println!(
        "| {name:<58} | {:>9} | {:>6.2}x |",
        ms(median(runs.to_vec())),
        paired_median(runs, limit)
    );
}

pub(crate) fn header(title: &str) {
    println!("\n### {title}\n\n| what | median ms | vs limit (median of paired ratios) |\n|---|---:|---:|");
}

fn sqlite(a: &Args, instar: &Path) {
    let dir = tempfile::tempdir().expect("tmp");
    let (script, booked) = fixtures(dir.path(), a.migrations);
    let db = |k: usize, tag: &str| dir.path().join(format!("{tag}{k}.db"));
    let (mut limit, mut limit_booked) = (vec![], vec![]);
    let (mut plain, mut nobackup, mut single) = (vec![], vec![], vec![]);
    for k in 0..a.runs {
        let input = std::fs::File::open(&script).expect("script");
        limit.push(run(Command::new("sqlite3")
            .arg(db(k, "limit"))
            .stdin(input)));
        let input = std::fs::File::open(&booked).expect("script");
        limit_booked.push(run(Command::new("sqlite3")
            .arg(db(k, "booked"))
            .stdin(input)));
        let url = |tag: &str| format!("sqlite:{}", db(k, tag).display());
        plain.push(run(Command::new(instar).current_dir(dir.path()).args([
            "-q",
            "--database",
            &url("plain"),
            "up",
        ])));
        nobackup.push(run(Command::new(instar).current_dir(dir.path()).args([
            "-q",
            "--database",
            &url("nob"),
            "up",
            "--no-backup",
        ])));
        single.push(run(Command::new(instar).current_dir(dir.path()).args([
            "-q",
            "--database",
            &url("single"),
            "up",
            "--single-transaction",
            "--no-backup",
        ])));
    }
    header(&format!(
        "SQLite: apply {} migrations to a fresh file ({} runs)",
        a.migrations, a.runs
    ));
    row(
        "limit: sqlite3 < script (BEGIN/COMMIT per migration)",
        &limit,
        &limit,
    );
    row(
        "limit + a history-row INSERT per migration (sqlite3)",
        &limit_booked,
        &limit,
    );
    row(
        "instar up (backup first, commit per migration)",
        &plain,
        &limit,
    );
    row("instar up --no-backup", &nobackup, &limit);
    row(
        "instar up --single-transaction --no-backup",
        &single,
        &limit,
    );

    let applied = db(0, "nob");
    let mut limit_cmd = Command::new("sqlite3");
    limit_cmd
        .arg(&applied)
        .arg("SELECT count(*) FROM instar_history");
    let url = format!("sqlite:{}", applied.display());
    noop(
        a,
        instar,
        dir.path(),
        "SQLite",
        &url,
        limit_cmd,
        "sqlite3 db 'SELECT count(*) FROM instar_history'",
    );
}

/// Times a no-op `up` against one client run of a query on the history table.
fn noop(
    a: &Args,
    instar: &Path,
    dir: &Path,
    engine: &str,
    url: &str,
    mut limit_cmd: Command,
    limit_name: &str,
) {
    let (mut lim, mut noop) = (vec![], vec![]);
    for _ in 0..a.runs * 4 {
        lim.push(run(&mut limit_cmd));
        noop.push(run(Command::new(instar).current_dir(dir).args([
            "-q",
            "--database",
            url,
            "up",
        ])));
    }
    header(&format!(
        "{engine}: no-op `up` with all {} applied ({} runs)",
        a.migrations,
        a.runs * 4
    ));
    row(&format!("limit: {limit_name}"), &lim, &lim);
    row("instar up (nothing pending)", &noop, &lim);
}

pub(crate) fn pg_url(base: &str, name: &str) -> String {
    let (head, _) = base.rsplit_once('/').expect("URL with a database");
    format!("{head}/{name}")
}

pub(crate) fn psql(base: &str, sql: &str) {
    run(Command::new("psql").args(["-q", "-v", "ON_ERROR_STOP=1", base, "-c", sql]));
}

fn postgres(a: &Args, instar: &Path, base: &str) {
    let dir = tempfile::tempdir().expect("tmp");
    let (script, booked) = fixtures(dir.path(), a.migrations);
    let (mut limit, mut limit_booked, mut plain, mut single) = (vec![], vec![], vec![], vec![]);
    let names = [
        "instar_bench_limit",
        "instar_bench_plain",
        "instar_bench_single",
        "instar_bench_booked",
    ];
    for _ in 0..a.runs {
        for n in names {
            psql(base, &format!("DROP DATABASE IF EXISTS {n}"));
            psql(base, &format!("CREATE DATABASE {n}"));
        }
        limit.push(run(Command::new("psql")
            .args(["-q", "-v", "ON_ERROR_STOP=1", &pg_url(base, names[0]), "-f"])
            .arg(&script)));
        limit_booked.push(run(Command::new("psql")
            .args(["-q", "-v", "ON_ERROR_STOP=1", &pg_url(base, names[3]), "-f"])
            .arg(&booked)));
        plain.push(run(Command::new(instar).current_dir(dir.path()).args([
            "-q",
            "--database",
            &pg_url(base, names[1]),
            "up",
        ])));
        single.push(run(Command::new(instar).current_dir(dir.path()).args([
            "-q",
            "--database",
            &pg_url(base, names[2]),
            "up",
            "--single-transaction",
        ])));
    }
    header(&format!(
        "PostgreSQL: apply {} migrations to a fresh database ({} runs)",
        a.migrations, a.runs
    ));
    row(
        "limit: psql -f script (BEGIN/COMMIT per migration)",
        &limit,
        &limit,
    );
    row(
        "limit + a history-row INSERT per migration (psql)",
        &limit_booked,
        &limit,
    );
    row("instar up (commit per migration)", &plain, &limit);
    row("instar up --single-transaction", &single, &limit);

    let url = pg_url(base, names[1]);
    let mut limit_cmd = Command::new("psql");
    limit_cmd.args(["-q", &url, "-c", "SELECT count(*) FROM instar_history"]);
    noop(
        a,
        instar,
        dir.path(),
        "PostgreSQL",
        &url,
        limit_cmd,
        "psql -c 'SELECT count(*) FROM instar_history'",
    );
    for n in names {
        psql(base, &format!("DROP DATABASE IF EXISTS {n}"));
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("lens") {
        lens::bench(5);
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("wasm") {
        wasm::bench(5);
        return;
    }
    let a = args();
    let instar = instar_bin();
    if a.data {
        data::bench(&a, &instar);
        return;
    }
    if a.docs {
        docs::bench(&a, &instar);
        return;
    }
    if a.copy {
        copy::bench(&a, &instar);
        return;
    }
    if a.online {
        online::bench(&a, &instar);
        return;
    }
    if a.cluster {
        cluster::bench(&a, &instar);
        return;
    }
    if a.fleet {
        fleet::bench(&a, &instar);
        return;
    }
    if a.serve {
        let load = serve::Load {
            rows: a.rows,
            seconds: a.seconds,
            clients: a.clients,
            sse: a.sse,
        };
        serve::bench(&instar, &load);
        return;
    }
    sqlite(&a, &instar);
    match &a.postgres {
        Some(base) => postgres(&a, &instar, base),
        None => {
            println!("\nPostgreSQL skipped: pass --postgres URL or set INSTAR_TEST_POSTGRES_URL")
        }
    }
}
