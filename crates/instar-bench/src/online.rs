//! `instar-bench online [--rows N] [--runs R] [--postgres URL]`: an online
//! migration (a type change with up/down, a rename) on N rows, per engine:
//! - `instar start` (expand, backfill, views) next to one set-based `UPDATE`
//!   filling a new column with the same expression (the limit);
//! - single-row `UPDATE`s and `INSERT`s while both versions are served (the
//!   sync triggers fire) next to the same statements on a table without them;
//! - a full read through the new version (view) next to the same read of the table;
//! - how long the expand and contract transactions (which hold the DDL's locks) took.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{header, median, paired_median, pg_url, psql, row, run, Args};

const SCHEMA: &str =
    "CREATE TABLE orders (id integer PRIMARY KEY, price_cents integer NOT NULL, note text)";

const OPS: &str = r#"kind = "online"

[[ops]]
op = "alter_column"
table = "orders"
column = "price_cents"
type = "numeric(12,2)"
up = "price_cents / 100.0"
down = "CAST(round(price_cents * 100) AS integer)"

[[ops]]
op = "rename_column"
table = "orders"
column = "note"
to = "comment"
"#;

/// Single-row writes per script.
const WRITES: u64 = 2000;

#[derive(Clone, Copy, PartialEq)]
enum Engine {
    Sqlite,
    Postgres,
}

struct Target<'a> {
    engine: Engine,
    dir: &'a Path,
    /// The instar URL.
    url: String,
    /// SQLite: the file.
    file: Option<std::path::PathBuf>,
}

impl Target<'_> {
    /// Runs `sql` (a script) with the engine's own client; its wall time.
    fn client(&self, sql: &str) -> Duration {
        let script = self.dir.join("script.sql");
        std::fs::write(&script, sql).expect("write script");
        match self.engine {
            Engine::Sqlite => run(Command::new("sqlite3")
                .arg(self.file.as_ref().expect("file"))
                .arg(format!(".read {}", script.display()))),
            Engine::Postgres => run(Command::new("psql")
                .args(["-q", "-v", "ON_ERROR_STOP=1", &self.url, "-f"])
                .arg(&script)),
        }
    }

    fn instar(&self, instar: &Path, args: &[&str]) -> (Duration, String) {
        let t = Instant::now();
        let out = Command::new(instar)
            .current_dir(self.dir)
            .args(["--database", &self.url, "--format", "json"])
            .args(args)
            .output()
            .expect("spawn instar");
        let d = t.elapsed();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "instar {args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (d, text)
    }

    fn seed(&self, rows: u64) {
        let gen = match self.engine {
            Engine::Sqlite => format!("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) INSERT INTO orders SELECT i, i * 3, 'note ' || i FROM n;"),
            Engine::Postgres => format!("INSERT INTO orders SELECT i, i * 3, 'note ' || i FROM generate_series(1, {rows}) i; VACUUM ANALYZE orders;"),
        };
        self.client(&gen);
    }
}

/// A number from the last JSON line of `out` (`"key":N`).
fn field(out: &str, key: &str) -> u64 {
    let line = out.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
    fn find(v: &serde_json::Value, key: &str) -> Option<u64> {
        match v {
            serde_json::Value::Object(m) => m
                .get(key)
                .and_then(serde_json::Value::as_u64)
                .or_else(|| m.values().find_map(|x| find(x, key))),
            _ => None,
        }
    }
    find(&v, key).unwrap_or(0)
}

fn writes(kind: &str, rows: u64, column: &str) -> String {
    let mut s = String::new();
    for i in 1..=WRITES {
        if kind == "update" {
            s.push_str(&format!(
                "UPDATE orders SET price_cents = price_cents + 1 WHERE id = {};\n",
                1 + (i * 7919) % rows
            ));
        } else {
            s.push_str(&format!(
                "INSERT INTO orders (id, price_cents, {column}) VALUES ({}, {i}, 'w');\n",
                rows + i
            ));
        }
    }
    s
}

struct Times {
    start: Vec<Duration>,
    limit: Vec<Duration>,
    expand_ms: Vec<u64>,
    contract_ms: Vec<u64>,
    upd_trig: Vec<Duration>,
    upd_plain: Vec<Duration>,
    ins_trig: Vec<Duration>,
    ins_plain: Vec<Duration>,
    read_view: Vec<Duration>,
    read_table: Vec<Duration>,
}

fn one_run(engine: Engine, a: &Args, instar: &Path, base: Option<&str>, t: &mut Times) {
    let rows = a.rows;
    // Two fresh databases: one for Instar, one for the limit and the plain writes.
    let work = tempfile::tempdir().expect("tmp");
    let m = work.path().join("migrations");
    std::fs::create_dir_all(m.join("0001_orders")).expect("mkdir");
    std::fs::write(m.join("0001_orders/up.sql"), format!("{SCHEMA};\n")).expect("write");
    std::fs::create_dir_all(m.join("0002_units")).expect("mkdir");
    std::fs::write(m.join("0002_units/migration.toml"), OPS).expect("write");
    let targets: Vec<Target> = ["instar_bench_online_a", "instar_bench_online_b"]
        .iter()
        .map(|name| match engine {
            Engine::Sqlite => {
                let file = work.path().join(format!("{name}.db"));
                Target {
                    engine,
                    dir: work.path(),
                    url: format!("sqlite:{}", file.display()),
                    file: Some(file),
                }
            }
            Engine::Postgres => {
                let base = base.expect("postgres URL");
                psql(base, &format!("DROP DATABASE IF EXISTS {name}"));
                psql(base, &format!("CREATE DATABASE {name}"));
                Target {
                    engine,
                    dir: work.path(),
                    url: pg_url(base, name),
                    file: None,
                }
            }
        })
        .collect();
    let (inst, plain) = (&targets[0], &targets[1]);
    for x in &targets {
        x.instar(instar, &["up", "--to", "0001"]);
        x.seed(rows);
    }
    // The limit: one UPDATE filling a new column with the same expression.
    plain.client("ALTER TABLE orders ADD COLUMN x numeric(12,2);");
    t.limit
        .push(plain.client("UPDATE orders SET x = price_cents / 100.0;"));
    plain.client("ALTER TABLE orders DROP COLUMN x;");
    if engine == Engine::Postgres {
        plain.client("VACUUM FULL orders;");
    }
    let (d, out) = inst.instar(instar, &["start", "--batch", "10000"]);
    t.start.push(d);
    t.expand_ms.push(field(&out, "expand_ms"));
    // Reads: the new version through its view, the same column from the table.
    let connect = match engine {
        Engine::Postgres => "SET search_path = instar_0002, public;\n".to_string(),
        Engine::Sqlite => inst
            .instar(instar, &["connect-sql", "--at", "0002"])
            .1
            .lines()
            .last()
            .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .and_then(|v| v["statements"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s.as_str())
            .map(|s| format!("{s};\n"))
            .collect(),
    };
    let reads = |sql: &str| (0..5).map(|_| format!("{sql};\n")).collect::<String>();
    // One untimed scan first: after the backfill, the first read of each page
    // pays for cleaning it up (PostgreSQL's hint bits), whichever read comes first.
    inst.client("SELECT count(*) FROM orders;");
    t.read_table.push(inst.client(&reads(
        "SELECT sum(\"_instar_new_price_cents\") FROM orders",
    )));
    t.read_view.push(inst.client(&format!(
        "{connect}{}",
        reads("SELECT sum(price_cents) FROM orders")
    )));
    // Single-row writes with the sync triggers, and without (the other database).
    t.upd_trig
        .push(inst.client(&writes("update", rows, "note")));
    t.upd_plain
        .push(plain.client(&writes("update", rows, "note")));
    t.ins_trig
        .push(inst.client(&writes("insert", rows, "note")));
    t.ins_plain
        .push(plain.client(&writes("insert", rows, "note")));
    let (_, out) = inst.instar(instar, &["complete"]);
    t.contract_ms.push(field(&out, "contract_ms"));
    if let Some(base) = base {
        for name in ["instar_bench_online_a", "instar_bench_online_b"] {
            psql(base, &format!("DROP DATABASE IF EXISTS {name}"));
        }
    }
}

fn report(engine: &str, rows: u64, t: &Times) {
    header(&format!("online migration on {engine}, {rows} rows"));
    let per_s = |d: Duration| rows as f64 / d.as_secs_f64();
    println!(
        "| instar start (expand + backfill + views), batch 10000: {:.0} rows/s | {:.0} | {:.2}x |",
        per_s(median(t.start.clone())),
        median(t.start.clone()).as_secs_f64() * 1000.0,
        paired_median(&t.start, &t.limit)
    );
    println!(
        "| limit: one UPDATE filling a column with the same expression: {:.0} rows/s | {:.0} | 1.00x |",
        per_s(median(t.limit.clone())),
        median(t.limit.clone()).as_secs_f64() * 1000.0
    );
    let pairs = [
        ("single-row UPDATEs", &t.upd_trig, &t.upd_plain),
        ("single-row INSERTs", &t.ins_trig, &t.ins_plain),
    ];
    for (what, on, off) in pairs {
        row(&format!("{WRITES} {what}, sync triggers on"), on, off);
        row(&format!("{WRITES} {what}, no triggers"), off, off);
    }
    row(
        "5 full reads through the new version's view",
        &t.read_view,
        &t.read_table,
    );
    row(
        "5 full reads of the same column in the table",
        &t.read_table,
        &t.read_table,
    );
    let mid = |v: &[u64]| {
        let mut v = v.to_vec();
        v.sort();
        v[v.len() / 2]
    };
    println!(
        "| expand transaction (holds its DDL's locks), median | {} | |",
        mid(&t.expand_ms)
    );
    println!(
        "| contract transaction of complete (holds its DDL's locks), median | {} | |",
        mid(&t.contract_ms)
    );
}

pub(crate) fn bench(a: &Args, instar: &Path) {
    // INSTAR_BENCH_ONLY=reshape runs the Reshape comparison alone.
    let only_reshape = std::env::var("INSTAR_BENCH_ONLY").as_deref() == Ok("reshape");
    for engine in [Engine::Sqlite, Engine::Postgres]
        .into_iter()
        .filter(|_| !only_reshape)
    {
        let base = match engine {
            Engine::Postgres => {
                match &a.postgres {
                    Some(b) => Some(b.as_str()),
                    None => {
                        println!("\nPostgreSQL skipped: pass --postgres URL or set INSTAR_TEST_POSTGRES_URL");
                        continue;
                    }
                }
            }
            Engine::Sqlite => None,
        };
        let mut t = Times {
            start: vec![],
            limit: vec![],
            expand_ms: vec![],
            contract_ms: vec![],
            upd_trig: vec![],
            upd_plain: vec![],
            ins_trig: vec![],
            ins_plain: vec![],
            read_view: vec![],
            read_table: vec![],
        };
        for _ in 0..a.runs {
            one_run(engine, a, instar, base, &mut t);
        }
        report(
            if base.is_some() {
                "PostgreSQL"
            } else {
                "SQLite"
            },
            a.rows,
            &t,
        );
    }
    reshape(a, instar);
}

/// The peer on PostgreSQL: the same type change and rename through Reshape
/// (`cargo install reshape`; found on PATH or in `RESHAPE_BIN`), on the same
/// rows: its `migration start` and `complete` next to Instar's `start` and
/// `complete`, alternated run by run.
pub(crate) fn reshape(a: &Args, instar: &Path) {
    let Some(base) = &a.postgres else {
        return;
    };
    let bin = std::env::var("RESHAPE_BIN").unwrap_or_else(|_| "reshape".into());
    if Command::new(&bin).arg("--version").output().is_err() {
        println!("\nReshape skipped: `cargo install reshape` (or set RESHAPE_BIN) to compare");
        return;
    }
    let (mut r_start, mut r_complete, mut i_start, mut i_complete) =
        (vec![], vec![], vec![], vec![]);
    for _ in 0..a.runs {
        let work = tempfile::tempdir().expect("tmp");
        // Reshape: its own migrations folder, the table made by its first migration.
        let rdir = work.path().join("reshape");
        std::fs::create_dir_all(&rdir).expect("mkdir");
        std::fs::write(
            rdir.join("1_orders.toml"),
            "[[actions]]\ntype = \"create_table\"\nname = \"orders\"\nprimary_key = [\"id\"]\n\n[[actions.columns]]\nname = \"id\"\ntype = \"INTEGER\"\n\n[[actions.columns]]\nname = \"price_cents\"\ntype = \"INTEGER\"\nnullable = false\n\n[[actions.columns]]\nname = \"note\"\ntype = \"TEXT\"\n",
        )
        .expect("write");
        std::fs::write(
            rdir.join("2_units.toml"),
            "[[actions]]\ntype = \"alter_column\"\ntable = \"orders\"\ncolumn = \"price_cents\"\nup = \"price_cents / 100.0\"\ndown = \"CAST(round(price_cents * 100) AS integer)\"\n\n    [actions.changes]\n    type = \"numeric(12,2)\"\n\n[[actions]]\ntype = \"alter_column\"\ntable = \"orders\"\ncolumn = \"note\"\n\n    [actions.changes]\n    name = \"comment\"\n",
        )
        .expect("write");
        let name = "instar_bench_reshape";
        psql(base, &format!("DROP DATABASE IF EXISTS {name}"));
        psql(base, &format!("CREATE DATABASE {name}"));
        let url = pg_url(base, name);
        // Reshape's client tries TLS unless told not to.
        let rurl = format!("{url}?sslmode=disable");
        // `start` reads the migrations folder; `complete` only the database.
        let reshape = |args: &[&str]| {
            let mut c = Command::new(&bin);
            c.current_dir(work.path()).args(args).args(["--url", &rurl]);
            if args.contains(&"start") {
                c.arg("--dirs").arg(&rdir);
            }
            run(&mut c)
        };
        reshape(&[
            "migration",
            "start",
            "--complete",
            "--migration",
            "1_orders",
        ]);
        psql(
            &url,
            &format!(
                "INSERT INTO orders SELECT i, i * 3, 'note ' || i FROM generate_series(1, {}) i",
                a.rows
            ),
        );
        psql(&url, "VACUUM ANALYZE orders");

        r_start.push(reshape(&["migration", "start"]));
        r_complete.push(reshape(&["migration", "complete"]));
        psql(base, &format!("DROP DATABASE IF EXISTS {name}"));
        // Instar, the same change on the same rows.
        let m = work.path().join("migrations");
        std::fs::create_dir_all(m.join("0001_orders")).expect("mkdir");
        std::fs::write(m.join("0001_orders/up.sql"), format!("{SCHEMA};\n")).expect("write");
        std::fs::create_dir_all(m.join("0002_units")).expect("mkdir");
        std::fs::write(m.join("0002_units/migration.toml"), OPS).expect("write");
        psql(base, &format!("CREATE DATABASE {name}"));
        let t = Target {
            engine: Engine::Postgres,
            dir: work.path(),
            url: url.clone(),
            file: None,
        };
        t.instar(instar, &["up", "--to", "0001"]);
        t.seed(a.rows);
        i_start.push(t.instar(instar, &["start", "--batch", "10000"]).0);
        i_complete.push(t.instar(instar, &["complete"]).0);
        psql(base, &format!("DROP DATABASE IF EXISTS {name}"));
    }
    header(&format!(
        "online migration on PostgreSQL, {} rows: Instar next to Reshape",
        a.rows
    ));
    row("instar start (type change + rename)", &i_start, &r_start);
    row("reshape migration start (the same)", &r_start, &r_start);
    row("instar complete", &i_complete, &r_complete);
    row("reshape migration complete", &r_complete, &r_complete);
}
