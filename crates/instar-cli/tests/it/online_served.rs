//! One online migration served at two versions (`instar start`), then
//! contracted (`complete`) or removed (`rollback`), while the application
//! keeps writing through both versions; `start` killed at random moments of
//! its backfill resumes and ends with every row in step.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;

use crate::documents::run;
use crate::harness::{file, migration, Backend, TestDb};
use crate::kills::{kill_trials, Rng};

const ROWS: i64 = 3000;

fn project(t: &TestDb) {
    let rows = match t.backend {
        Backend::Postgres => format!("SELECT g, g * 3, 'n' || g FROM generate_series(1, {ROWS}) g"),
        Backend::MySql => format!("SELECT seq, seq * 3, CONCAT('n', seq) FROM seq_1_to_{ROWS}"),
        Backend::Sqlite => format!("WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {ROWS}) SELECT g, g * 3, 'n' || g FROM s"),
    };
    migration(
        &t.migrations(),
        "0001_orders",
        &format!(
            "CREATE TABLE orders (id int PRIMARY KEY, price_cents int NOT NULL, note varchar(100));\n\
             INSERT INTO orders {rows};\n\
             CREATE TABLE users (id int PRIMARY KEY, name text);\n\
             INSERT INTO users VALUES (1, 'Ada');"
        ),
        None,
    );
    let dir = t.migrations().join("0002_prices");
    std::fs::create_dir_all(&dir).unwrap();
    let int = if t.backend == Backend::MySql {
        "SIGNED"
    } else {
        "integer"
    };
    file(
        &dir.join("migration.toml"),
        &r#"kind = "online"
description = "prices in units, note renamed, users get an email"

[[ops]]
op = "alter_column"
table = "orders"
column = "price_cents"
type = "numeric(12,2)"
up = "price_cents / 100.0"
down = "CAST(round(price_cents * 100) AS INT_TYPE)"

[[ops]]
op = "rename_column"
table = "orders"
column = "note"
to = "comment"

[[ops]]
op = "add_column"
table = "users"
column = "email"
type = "text"

[[ops]]
op = "create_index"
table = "orders"
columns = ["comment"]
"#
        .replace("INT_TYPE", int),
    );
}

/// Rows whose new-version price is not the old one translated.
async fn out_of_step(t: &TestDb) -> i64 {
    t.count(if t.backend == Backend::MySql {
        "SELECT count(*) FROM orders WHERE NOT (_instar_new_price_cents <=> price_cents / 100.0)"
    } else {
        "SELECT count(*) FROM orders WHERE \"_instar_new_price_cents\" IS DISTINCT FROM price_cents / 100.0"
    })
        .await
}

/// What a writer did: rows inserted, and how many of its rows it updated
/// (ids `first`, `first + 2`, … each set to a value of its own).
#[derive(Debug, Default)]
struct Wrote {
    inserted: i64,
    updated: i64,
}

/// Writes through one version until told to stop: the old one (no
/// search_path) inserts ids from 100000 and sets odd ids to `id * 5` cents;
/// the new one (`instar_0002`, once its views exist) inserts ids from 500000
/// and sets even ids to `id * 7 / 100.0` units.
fn writer(t: &TestDb, new: bool, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Wrote> {
    let url = t.url.clone();
    let at = Connect::of(t);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    std::thread::spawn(move || {
        rt.block_on(async move {
            let mut c = sqlx::AnyConnection::connect(&url).await.expect("writer");
            let mut w = Wrote::default();
            if new {
                // Bounded wait for the new version (its views, or on SQLite what connect-sql prints).
                for _ in 0..2000 {
                    if stop.load(Ordering::SeqCst) || at_new_version(&mut c, &at).await {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            for i in 0..4000i64 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let (insert, update) = if new {
                    let id = 500_000 + i;
                    (
                        format!("INSERT INTO orders (id, price_cents, comment) VALUES ({id}, {}.{:02}, 'new')", (id % 991) / 100, (id % 991) % 100),
                        format!("UPDATE orders SET price_cents = id * 7 / 100.0 WHERE id = {}", 2 + 2 * (i % (ROWS / 2))),
                    )
                } else {
                    let id = 100_000 + i;
                    (
                        format!("INSERT INTO orders (id, price_cents, note) VALUES ({id}, {}, 'old')", id % 991),
                        format!("UPDATE orders SET price_cents = id * 5 WHERE id = {}", 1 + 2 * (i % (ROWS / 2))),
                    )
                };
                if new && sqlx::raw_sql(&insert).execute(&mut c).await.is_err() {
                    // The views are not there yet (start has not expanded): nothing written.
                    break;
                }
                if !new {
                    sqlx::raw_sql(&insert).execute(&mut c).await.expect("old-version insert");
                }
                w.inserted += 1;
                sqlx::raw_sql(&update).execute(&mut c).await.expect("update");
                w.updated = (i + 1).min(ROWS / 2);
            }
            let _ = c.close().await;
            w
        })
    })
}

/// How a test connection gets to the new version: what `instar connect-sql
/// --at 0002` prints, run on it.
#[derive(Clone)]
pub(crate) struct Connect {
    dir: std::path::PathBuf,
    url: String,
    migrations: std::path::PathBuf,
}

impl Connect {
    pub(crate) fn of(t: &TestDb) -> Connect {
        Connect {
            dir: t.dir.path().to_path_buf(),
            url: t.url.clone(),
            migrations: t.migrations(),
        }
    }
}

/// Runs what `connect-sql --at 0002` prints on `c`; whether the new version is there.
async fn at_new_version(c: &mut sqlx::AnyConnection, at: &Connect) -> bool {
    at_new_version_as(c, at, "SELECT comment FROM orders LIMIT 1").await
}

/// [`at_new_version`], checked by `probe` (a query only the new version answers).
pub(crate) async fn at_new_version_as(
    c: &mut sqlx::AnyConnection,
    at: &Connect,
    probe: &str,
) -> bool {
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("instar"))
        .current_dir(&at.dir)
        .args(["--database", &at.url, "--migrations"])
        .arg(&at.migrations)
        .args(["connect-sql", "--at", "0002"])
        .env_remove("DATABASE_URL")
        .env_remove("INSTAR_DATABASE_URL")
        .output();
    let Ok(out) = out else {
        return false;
    };
    if !out.status.success() {
        eprintln!(
            "connect-sql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return false;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for line in text
        .lines()
        .filter(|l| !l.starts_with("--") && !l.trim().is_empty())
    {
        if let Err(e) = sqlx::raw_sql(line).execute(&mut *c).await {
            eprintln!("connect-sql statement failed: {line}: {e}");
            return false;
        }
    }
    // The new version's shape is readable.
    sqlx::raw_sql(probe).execute(&mut *c).await.is_ok()
}

/// Row by row: what each writer wrote is there, as each version sees it.
async fn check_writes(t: &TestDb, old: &Wrote, new: &Wrote) {
    let n = |sql: String| async move { t.count(&sql).await };
    assert_eq!(n("SELECT count(*) FROM orders WHERE id >= 100000 AND id < 500000 AND note = 'old' AND price_cents = id % 991".into()).await, old.inserted, "old-version inserts");
    assert_eq!(n("SELECT count(*) FROM orders WHERE id >= 500000 AND note = 'new' AND price_cents = id % 991".into()).await, new.inserted, "new-version inserts");
    assert_eq!(n(format!("SELECT count(*) FROM orders WHERE id <= {ROWS} AND id % 2 = 1 AND price_cents = id * 5")).await, old.updated, "old-version updates");
    assert_eq!(n(format!("SELECT count(*) FROM orders WHERE id <= {ROWS} AND id % 2 = 0 AND price_cents = id * 7")).await, new.updated, "new-version updates");
    assert_eq!(
        n(format!("SELECT count(*) FROM orders WHERE id <= {ROWS} AND price_cents NOT IN (id * 3, id * 5, id * 7)")).await,
        0,
        "no other value anywhere"
    );
}

on_every_engine!(
    two_versions_served_while_the_application_writes,
    a_lossy_change_is_refused_and_complete_survives_kills,
    new_version_writes_keep_defaults_and_untouched_values,
    a_column_split_while_both_releases_write
);

async fn two_versions_served_while_the_application_writes(b: Backend) {
    let Some(t) = TestDb::new(b, "online_served").await else {
        return;
    };
    let pg = b == Backend::Postgres;
    let my = b == Backend::MySql;
    // MariaDB: each version's views live in a database of their own.
    let dbname = t.url.rsplit('/').next().unwrap_or_default().to_string();
    let views = |v: &str| format!("{dbname}_instar_{v}");
    let text = if my { "CHAR" } else { "text" };
    project(&t);
    let (code, out, err) = run(&t, &["up", "--to", "0001"], None);
    assert_eq!(code, 0, "{out}{err}");

    let (code, plan, err) = run(&t, &["start", "--dry-run"], None);
    assert_eq!(code, 0, "{plan}{err}");
    let my_words = [
        format!("`{}`.`orders`", views("0002")),
        "CREATE OR REPLACE TRIGGER".into(),
        "@instar_version".into(),
        "backfill of orders".into(),
    ];
    let my_words: Vec<&str> = my_words.iter().map(String::as_str).collect();
    let words: &[&str] = if my {
        &my_words
    } else if pg {
        &[
            "CREATE FUNCTION",
            "search_path",
            "\"instar_0002\".\"orders\"",
            "CONCURRENTLY",
            "backfill of orders",
        ]
    } else {
        &[
            "AFTER INSERT ON \"orders\"",
            "CREATE TEMP VIEW \"orders\"",
            "INSTEAD OF UPDATE",
            "backfill of orders",
        ]
    };
    for word in words {
        assert!(plan.contains(word), "{b:?}: {word} missing from\n{plan}");
    }
    assert!(!has_shadow(&t).await, "a dry run changes nothing");

    // start while the application writes through the old version, and through
    // the new one as soon as it is there (during the backfill).
    let stop = Arc::new(AtomicBool::new(false));
    let old_w = writer(&t, false, stop.clone());
    let new_w = writer(&t, true, stop.clone());
    let (code, out, err) = run(&t, &["start", "--batch", "20"], None);
    stop.store(true, Ordering::SeqCst);
    let (old, new) = (old_w.join().unwrap(), new_w.join().unwrap());
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("served at two versions: 0001 and 0002"),
        "{out}"
    );
    eprintln!("{b:?} during start: old version {old:?}, new version {new:?}");
    assert!(old.inserted > 0, "the application wrote during start");
    if !matches!(b, Backend::Sqlite) {
        // SQLite's one writer at a time leaves the new version a narrow window: printed above.
        assert!(
            new.inserted > 0,
            "the new version wrote during the backfill"
        );
    }
    assert_eq!(
        out_of_step(&t).await,
        0,
        "every row, old or written during start, is in step"
    );
    check_writes(&t, &old, &new).await;

    let (_, status, _) = run(&t, &["status"], None);
    assert!(
        status.contains("in flight: online migration 0002"),
        "{status}"
    );
    let (code, out, err) = run(&t, &["up"], None);
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("being served at two versions"), "{err}");
    let (code, out, err) = run(&t, &["plan"], None);
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains("being served at two versions"),
        "plan too: {err}"
    );

    // The new version reads and writes its own shape; the old one sees the translation.
    let mut newc = sqlx::AnyConnection::connect(&t.url).await.unwrap();
    assert!(at_new_version(&mut newc, &Connect::of(&t)).await);
    for sql in [
        "INSERT INTO orders (id, price_cents, comment) VALUES (900001, 12.34, 'new')",
        "INSERT INTO orders (id, price_cents, comment) VALUES (900002, 1.00, 'new')",
        "UPDATE orders SET price_cents = 5.00 WHERE id = 900002",
        "INSERT INTO users (id, name, email) VALUES (2, 'Grace', 'g@x')",
    ] {
        sqlx::raw_sql(sql)
            .execute(&mut newc)
            .await
            .unwrap_or_else(|e| panic!("{b:?}: {sql}: {e}"));
    }
    assert_eq!(
        t.count("SELECT price_cents FROM orders WHERE id = 900001 AND note = 'new'")
            .await,
        1234
    );
    assert_eq!(
        t.count("SELECT price_cents FROM orders WHERE id = 900002")
            .await,
        500
    );
    let units: String = sqlx::query_scalar(&format!(
        "SELECT CAST(price_cents AS {text}) FROM orders WHERE id = 100000"
    ))
    .fetch_one(&mut newc)
    .await
    .unwrap();
    assert!(
        units == "9.00" || units == "9",
        "{b:?}: the new version reads units: {units}"
    );
    assert_eq!(out_of_step(&t).await, 0);

    if pg || my {
        // complete waits for clients of the old version it can see: on
        // PostgreSQL announced in application_name, on MariaDB using its views.
        let mut oldc = sqlx::AnyConnection::connect(&t.url).await.unwrap();
        let (set, seen) = if pg {
            (
                "SET application_name = 'shop@instar_0001'".to_string(),
                "shop@instar_0001".to_string(),
            )
        } else {
            (format!("USE `{}`", views("0001")), "root@".to_string())
        };
        sqlx::raw_sql(&set).execute(&mut oldc).await.unwrap();
        let (code, out, err) = run(&t, &["complete"], None);
        assert_ne!(code, 0, "{out}{err}");
        assert!(err.contains(&seen), "{err}");
        let _ = oldc.close().await;
    }
    let _ = newc.close().await;

    // rollback loses no write made through either version.
    let rows_before = t.count("SELECT count(*) FROM orders").await;
    let (code, out, err) = run(&t, &["rollback"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(t.count("SELECT count(*) FROM orders").await, rows_before);
    assert_eq!(
        t.count("SELECT price_cents FROM orders WHERE id = 900001")
            .await,
        1234
    );
    check_writes(&t, &old, &new).await;
    assert!(!has_shadow(&t).await);
    assert!(!works_sql(&t, "SELECT email FROM users").await);
    if pg {
        assert!(!works_sql(&t, "SELECT 1 FROM instar_0002.orders").await);
    }
    if my {
        assert!(!works_sql(&t, &format!("SELECT 1 FROM `{}`.orders", views("0002"))).await);
    }

    // Killed at random moments of start: start again goes on; rows stay in step.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ std::process::id() as u64);
    let trials = (kill_trials() / 4).max(3);
    for trial in 0..trials {
        let at = 20 + rng.below(600);
        let mut child = crate::instar_at(&t, &t.url)
            .args(["start", "--batch", "50"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(at));
        let _ = child.kill();
        let _ = child.wait();
        let (code, out, err) = run(&t, &["start", "--batch", "500"], None);
        assert_eq!(code, 0, "trial {trial} (killed at {at} ms): {out}{err}");
        assert_eq!(out_of_step(&t).await, 0, "trial {trial}");
        if trial + 1 < trials {
            let (code, out, err) = run(&t, &["rollback"], None);
            assert_eq!(code, 0, "{out}{err}");
        }
    }

    let (code, out, err) = run(&t, &["complete"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        t.count("SELECT count(*) FROM instar_history WHERE version = '0002' AND event = 'apply'")
            .await,
        1
    );
    let units: String = {
        let mut c = t.raw().await;
        let v = sqlx::query_scalar(&format!(
            "SELECT CAST(price_cents AS {text}) FROM orders WHERE id = 900001"
        ))
        .fetch_one(&mut c)
        .await
        .unwrap();
        let _ = c.close().await;
        v
    };
    assert_eq!(units, "12.34", "the base table has the new version's shape");
    assert!(
        works_sql(&t, "SELECT comment FROM orders").await
            && works_sql(&t, "SELECT email FROM users").await
    );
    if pg {
        for v in ["instar_0001", "instar_0002"] {
            assert!(
                !works_sql(&t, &format!("SELECT 1 FROM {v}.orders")).await,
                "{v}'s views are gone"
            );
        }
        // A client still at search_path = instar_0002, public finds the base tables in its shape.
        let mut c = sqlx::AnyConnection::connect(&t.url).await.unwrap();
        sqlx::raw_sql("SET search_path = instar_0002, public")
            .execute(&mut c)
            .await
            .unwrap();
        let r = sqlx::raw_sql("SELECT comment, CAST(price_cents AS text) FROM orders LIMIT 1")
            .execute(&mut c)
            .await;
        assert!(r.is_ok(), "{r:?}");
        let _ = c.close().await;
    }
    if my {
        for v in ["0001", "0002"] {
            assert!(!works_sql(&t, &format!("SELECT 1 FROM `{}`.orders", views(v))).await);
        }
    }
    let (code, out, err) = run(&t, &["connect-sql", "--at", "0002"], None);
    assert!(code == 0 && out.contains("nothing to run"), "{out}{err}");
    let (code, out, err) = run(&t, &["validate"], None);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(&t, &["status"], None);
    assert!(code == 0 && !out.contains("in flight"), "{out}{err}");
    drop_views_databases(&t).await;
}

/// MariaDB: the databases of views live beside the test's database; dropped with it.
async fn drop_views_databases(t: &TestDb) {
    if t.backend != Backend::MySql {
        return;
    }
    let dbname = t.url.rsplit('/').next().unwrap_or_default().to_string();
    for v in ["0001", "0002"] {
        assert!(works_sql(t, &format!("DROP DATABASE IF EXISTS `{dbname}_instar_{v}`")).await);
    }
}

/// Whether orders has the shadow column (asked of the catalog: SQLite reads an
/// unknown double-quoted name as a string).
async fn has_shadow(t: &TestDb) -> bool {
    let sql = match t.backend {
        Backend::Sqlite => "SELECT count(*) FROM pragma_table_info('orders') WHERE name = '_instar_new_price_cents'",
        Backend::MySql => "SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' AND column_name = '_instar_new_price_cents' AND table_schema = DATABASE()",
        Backend::Postgres => "SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' AND column_name = '_instar_new_price_cents' AND table_schema = current_schema()",
    };
    t.count(sql).await > 0
}

async fn works_sql(t: &TestDb, sql: &str) -> bool {
    let mut c = t.raw().await;
    let ok = sqlx::raw_sql(sql).execute(&mut c).await.is_ok();
    let _ = c.close().await;
    ok
}

async fn a_lossy_change_is_refused_and_complete_survives_kills(b: Backend) {
    let Some(t) = TestDb::new(b, "online_lossy").await else {
        return;
    };
    let rows = match b {
        Backend::Postgres => "SELECT g, g * 7 FROM generate_series(1, 500) g",
        Backend::MySql => "SELECT seq, seq * 7 FROM seq_1_to_500",
        Backend::Sqlite => "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < 500) SELECT g, g * 7 FROM s",
    };
    migration(
        &t.migrations(),
        "0001_orders",
        &format!("CREATE TABLE orders (id int PRIMARY KEY, price_cents int NOT NULL);\nINSERT INTO orders {rows};"),
        None,
    );
    let dir = t.migrations().join("0002_units");
    std::fs::create_dir_all(&dir).unwrap();
    let div = if b == Backend::MySql { "DIV" } else { "/" };
    let lossy = |declared: bool| {
        format!(
            "kind = \"online\"\n\n[[ops]]\nop = \"alter_column\"\ntable = \"orders\"\ncolumn = \"price_cents\"\ntype = \"integer\"\nup = \"price_cents {div} 100\"\ndown = \"price_cents * 100\"\n{}",
            if declared { "lossy = true\n" } else { "" }
        )
    };
    file(&dir.join("migration.toml"), &lossy(false));
    let (code, out, err) = run(&t, &["up", "--to", "0001"], None);
    assert_eq!(code, 0, "{out}{err}");
    // Integer division loses the cents: refused with example rows, nothing changed.
    let (code, out, err) = run(&t, &["start"], None);
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains("down(up(x)) = x does not hold") && err.contains("key 1: 7 becomes 0"),
        "{err}"
    );
    assert!(err.contains("lossy = true"), "{err}");
    assert!(!has_shadow(&t).await);

    // Declared lossy: served, and said so.
    file(&dir.join("migration.toml"), &lossy(true));
    let (code, out, err) = run(&t, &["start"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("lossy (declared)"), "{out}");
    // A second start while it is in flight changes nothing and says where it stands.
    let (code, out, err) = run(&t, &["start"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("served at two versions"), "{out}");

    // complete killed at random moments: either done or still served, never between.
    let mut rng = Rng(0x51_7cc1_b727_220a ^ std::process::id() as u64);
    let mut completed = false;
    for trial in 0..(kill_trials() / 5).max(4) {
        if completed {
            break;
        }
        let at = rng.below(150);
        let mut child = crate::instar_at(&t, &t.url)
            .arg("complete")
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(at));
        let _ = child.kill();
        let status = child.wait().unwrap();
        let applied = t
            .count("SELECT count(*) FROM instar_history WHERE version = '0002' AND event = 'apply'")
            .await;
        let shadow = has_shadow(&t).await;
        let (_, st, _) = run(&t, &["status"], None);
        let in_flight = st.contains("in flight: online migration 0002");
        if b == Backend::MySql {
            // DDL commits by itself: a kill may land between two contract steps;
            // the migration then stays in flight (completing) until complete runs again.
            assert!(
                (applied == 1 && !shadow) || in_flight,
                "trial {trial} (killed at {at} ms, {status:?}): applied {applied}, shadow {shadow}, status {st}"
            );
        } else {
            assert!(
                (applied == 1 && !shadow && !in_flight) || (applied == 0 && shadow && in_flight),
                "trial {trial} (killed at {at} ms, {status:?}): applied {applied}, shadow column there: {shadow}, status {st}"
            );
        }
        completed = applied == 1 && !in_flight;
    }
    if !completed {
        let (code, out, err) = run(&t, &["complete"], None);
        assert_eq!(code, 0, "{out}{err}");
    }
    assert_eq!(
        t.count("SELECT price_cents FROM orders WHERE id = 100")
            .await,
        7
    );
    assert_eq!(t.count("SELECT count(*) FROM orders").await, 500);
    drop_views_databases(&t).await;
}

/// Review findings kept fixed: an insert at the new version that leaves
/// columns out gets their defaults (the changed one's translated by `up`);
/// an update of another column leaves the changed one as it was; a column an
/// index uses is not changed at two versions (completing would drop the index).
async fn new_version_writes_keep_defaults_and_untouched_values(b: Backend) {
    let Some(t) = TestDb::new(b, "online_defaults").await else {
        return;
    };
    let int = if b == Backend::MySql {
        "SIGNED"
    } else {
        "integer"
    };
    migration(
        &t.migrations(),
        "0001_items",
        "CREATE TABLE items (id int PRIMARY KEY, price_cents int NOT NULL DEFAULT 250, note varchar(50), tag varchar(10));\nCREATE INDEX items_tag ON items (tag);\nINSERT INTO items (id, price_cents, note, tag) VALUES (1, 333, 'a', 't');",
        None,
    );
    let dir = t.migrations().join("0002_units");
    std::fs::create_dir_all(&dir).unwrap();
    file(
        &dir.join("migration.toml"),
        &format!("kind = \"online\"\n\n[[ops]]\nop = \"alter_column\"\ntable = \"items\"\ncolumn = \"price_cents\"\ntype = \"numeric(12,2)\"\nup = \"price_cents / 100.0\"\ndown = \"CAST(round(price_cents * 100) AS {int})\"\n\n[[ops]]\nop = \"add_column\"\ntables = [\"items\", \"ghosts\"]\nskip_missing_table = true\ncolumn = \"flag\"\ntype = \"int\"\ndefault = \"7\"\n"),
    );
    let dir3 = t.migrations().join("0003_tag");
    std::fs::create_dir_all(&dir3).unwrap();
    file(
        &dir3.join("migration.toml"),
        "kind = \"online\"\n\n[[ops]]\nop = \"alter_column\"\ntable = \"items\"\ncolumn = \"tag\"\ntype = \"varchar(20)\"\n",
    );
    let (code, out, err) = run(&t, &["up", "--to", "0001"], None);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(&t, &["start"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");

    let mut c = sqlx::AnyConnection::connect(&t.url).await.unwrap();
    let (_, connect, _) = run(&t, &["connect-sql", "--at", "0002"], None);
    for line in connect
        .lines()
        .filter(|l| !l.starts_with("--") && !l.trim().is_empty())
    {
        sqlx::raw_sql(line)
            .execute(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{b:?}: {line}: {e}"));
    }
    for sql in [
        "INSERT INTO items (id, note) VALUES (2, 'defaults')",
        "UPDATE items SET note = 'only the note' WHERE id = 1",
    ] {
        sqlx::raw_sql(sql)
            .execute(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{b:?}: {sql}: {e}"));
    }
    let _ = c.close().await;
    assert_eq!(
        t.count("SELECT price_cents FROM items WHERE id = 2").await,
        250,
        "{b:?}: the default, in both columns"
    );
    assert_eq!(
        t.count("SELECT flag FROM items WHERE id = 2").await,
        7,
        "{b:?}: an added column's default"
    );
    assert_eq!(
        t.count("SELECT price_cents FROM items WHERE id = 1 AND note = 'only the note'")
            .await,
        333,
        "{b:?}: untouched by an update of another column"
    );
    let (code, out, err) = run(&t, &["complete"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    let mut c = t.raw().await;
    let text = if b == Backend::MySql { "CHAR" } else { "text" };
    let v: String = sqlx::query_scalar(&format!(
        "SELECT CAST(price_cents AS {text}) FROM items WHERE id = 1"
    ))
    .fetch_one(&mut c)
    .await
    .unwrap();
    let _ = c.close().await;
    assert!(v == "3.33", "{b:?}: {v}");

    // An indexed column: refused before anything changes, naming the index.
    let (code, out, err) = run(&t, &["start"], None);
    assert_ne!(code, 0, "{b:?}: {out}{err}");
    assert!(
        err.contains("items.tag is used by") && err.contains("items_tag"),
        "{b:?}: {err}"
    );
    let (_, status, _) = run(&t, &["status"], None);
    assert!(!status.contains("in flight"), "{status}");
    // An op with no two-version form: refused at plan time, naming the plain way.
    file(
        &dir3.join("migration.toml"),
        "kind = \"online\"\n\n[[ops]]\nop = \"add_check\"\ntable = \"items\"\nname = \"items_tag_short\"\ncheck = \"tag <> ''\"\n",
    );
    let (code, out, err) = run(&t, &["start", "--dry-run"], None);
    assert_ne!(code, 0, "{b:?}: {out}{err}");
    assert!(
        err.contains("add_check is not served at two versions yet")
            && err.contains("plainly with `instar up`"),
        "{b:?}: {err}"
    );
    let (code, out, err) = run(&t, &["up"], None);
    assert_eq!(code, 0, "{b:?}: the plain way works: {out}{err}");
    drop_views_databases(&t).await;
}

/// The README's rollout: `users.name` split into `first_name` and
/// `last_name`, `mail` renamed `email`, while a release of each version writes.
async fn a_column_split_while_both_releases_write(b: Backend) {
    let Some(t) = TestDb::new(b, "online_split").await else {
        return;
    };
    let (first, last, whole) = match b {
        Backend::Postgres => (
            "split_part(name, ' ', 1)",
            "split_part(name, ' ', 2)",
            "first_name || ' ' || last_name",
        ),
        Backend::MySql => (
            "SUBSTRING_INDEX(name, ' ', 1)",
            "SUBSTRING_INDEX(name, ' ', -1)",
            "CONCAT(first_name, ' ', last_name)",
        ),
        Backend::Sqlite => (
            "substr(name, 1, instr(name, ' ') - 1)",
            "substr(name, instr(name, ' ') + 1)",
            "first_name || ' ' || last_name",
        ),
    };
    migration(
        &t.migrations(),
        "0001_users",
        "CREATE TABLE users (id int PRIMARY KEY, name varchar(100) NOT NULL, mail varchar(100));\nINSERT INTO users VALUES (1, 'Ada Lovelace', 'ada@x'), (2, 'Grace Hopper', 'grace@x');",
        None,
    );
    let dir = t.migrations().join("0002_split");
    std::fs::create_dir_all(&dir).unwrap();
    file(
        &dir.join("migration.toml"),
        &format!(
            "kind = \"online\"\n\n[[ops]]\nop = \"add_column\"\ntable = \"users\"\ncolumn = \"first_name\"\ntype = \"varchar(50)\"\nup = \"{first}\"\n\n[[ops]]\nop = \"add_column\"\ntable = \"users\"\ncolumn = \"last_name\"\ntype = \"varchar(50)\"\nup = \"{last}\"\n\n[[ops]]\nop = \"drop_column\"\ntable = \"users\"\ncolumn = \"name\"\ndown = \"{whole}\"\n\n[[ops]]\nop = \"rename_column\"\ntable = \"users\"\ncolumn = \"mail\"\nto = \"email\"\n"
        ),
    );
    let (code, out, err) = run(&t, &["up", "--to", "0001"], None);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(&t, &["start"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    let n = |sql: &'static str| async { t.count(sql).await };
    assert_eq!(
        n("SELECT count(*) FROM users WHERE first_name = 'Ada' AND last_name = 'Lovelace'").await,
        1,
        "{b:?}: backfilled"
    );

    // Release 1 writes the base table as it always did.
    assert!(
        works_sql(
            &t,
            "INSERT INTO users (id, name, mail) VALUES (3, 'Alan Turing', 'alan@x')"
        )
        .await
    );
    assert!(works_sql(&t, "UPDATE users SET name = 'Ada King' WHERE id = 1").await);
    // Release 2 works at 0002.
    let mut c = sqlx::AnyConnection::connect(&t.url).await.unwrap();
    assert!(
        at_new_version_as(&mut c, &Connect::of(&t), "SELECT email FROM users LIMIT 1").await,
        "{b:?}"
    );
    for sql in [
        "INSERT INTO users (id, first_name, last_name, email) VALUES (4, 'Barbara', 'Liskov', 'barbara@x')",
        "UPDATE users SET last_name = 'Murray' WHERE id = 2",
    ] {
        sqlx::raw_sql(sql).execute(&mut c).await.unwrap_or_else(|e| panic!("{b:?}: {sql}: {e}"));
    }
    let _ = c.close().await;
    // Each release sees the other's writes in its own shape.
    assert_eq!(n("SELECT count(*) FROM users WHERE id = 3 AND first_name = 'Alan' AND last_name = 'Turing'").await, 1, "{b:?}");
    assert_eq!(
        n("SELECT count(*) FROM users WHERE id = 1 AND first_name = 'Ada' AND last_name = 'King'")
            .await,
        1,
        "{b:?}"
    );
    assert_eq!(n("SELECT count(*) FROM users WHERE id = 4 AND name = 'Barbara Liskov' AND mail = 'barbara@x'").await, 1, "{b:?}");
    assert_eq!(
        n("SELECT count(*) FROM users WHERE id = 2 AND name = 'Grace Murray'").await,
        1,
        "{b:?}"
    );

    let (code, out, err) = run(&t, &["complete"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    assert_eq!(n("SELECT count(*) FROM users WHERE first_name IS NOT NULL AND last_name IS NOT NULL AND email IS NOT NULL").await, 4, "{b:?}");
    assert!(
        !works_sql(&t, "SELECT mail FROM users").await
            && !works_sql(&t, "SELECT name FROM users").await,
        "{b:?}"
    );
    drop_views_databases(&t).await;
}
