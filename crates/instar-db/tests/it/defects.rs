//! The defects a review found, each with the test that failed before its fix.

use std::time::Duration;

use instar_core::plan::Target;
use instar_db::runner::RunOptions;
use instar_db::{backup, Error};

use crate::conformance::data_migration;
use crate::harness::{migration, Backend, TestDb};

on_every_engine!(
    composite_keys_of_any_type_are_walked,
    floating_point_keys_are_refused_before_any_batch,
    a_restore_keeps_the_run_lock,
    a_failing_statement_is_not_run_twice,
    a_declared_unique_key_needs_no_duplicate_scan,
    a_data_migration_edited_mid_run_is_halted_not_refused,
    an_unterminated_script_is_refused_before_anything_runs,
    a_script_with_its_own_commit_is_refused,
    a_large_table_is_counted_from_the_engine_statistics,
    a_damaged_backup_is_never_restored_and_a_restore_can_be_undone,
);

/// Restoring a damaged backup once replaced the database with garbage and
/// exited 0. A backup is checked (size, checksum, the engine reading it)
/// before anything is touched, and a restore keeps the database as it was.
async fn a_damaged_backup_is_never_restored_and_a_restore_can_be_undone(b: Backend) {
    let Some(t) = TestDb::new(b, "damaged_backup").await else {
        return;
    };
    if crate::harness::backup_tool_missing(b, "damaged_backup") {
        return;
    }
    migration(
        &t.migrations(),
        "0001_t",
        "CREATE TABLE t (id INT PRIMARY KEY);\nINSERT INTO t VALUES (1), (2);\n",
        None,
    );
    t.up().await.expect("up");
    let mut db = t.db().await;
    let info = backup::take(&mut db, &t.backups(), "test")
        .await
        .expect("backup")
        .expect("taken");
    assert!(info
        .sha256
        .as_deref()
        .is_some_and(|s| s.starts_with("sha256:")));
    db.close().await.expect("close");
    let mut raw = t.raw().await;
    sqlx::raw_sql("INSERT INTO t VALUES (3)")
        .execute(&mut raw)
        .await
        .expect("insert after the backup");
    let good = std::fs::read(&info.path).unwrap();
    let damaged: [(&str, Vec<u8>); 2] = [
        ("one byte changed", {
            let mut d = good.clone();
            let mid = d.len() / 2;
            d[mid] ^= 0x55;
            d
        }),
        ("cut short", good[..good.len() / 2].to_vec()),
    ];
    for (how, bytes) in damaged {
        std::fs::write(&info.path, &bytes).unwrap();
        let mut db = t.db().await;
        let e = backup::restore(&mut db, &t.backups(), &info.id)
            .await
            .expect_err(how)
            .to_string();
        db.close().await.expect("close");
        assert!(
            e.contains("failed verification") && e.contains(&info.id),
            "{how}: {e}"
        );
        assert_eq!(
            t.count("SELECT count(*) FROM t").await,
            3,
            "{how}: untouched"
        );
    }
    std::fs::write(&info.path, &good).unwrap();
    let mut db = t.db().await;
    let r = backup::restore(&mut db, &t.backups(), &info.id)
        .await
        .expect("restore");
    db.close().await.expect("close");
    assert_eq!(t.count("SELECT count(*) FROM t").await, 2, "restored");
    // The database as it was before the restore is a backup of its own.
    let mut db = t.db().await;
    backup::restore(&mut db, &t.backups(), &r.set_aside.id)
        .await
        .expect("undo the restore");
    db.close().await.expect("close");
    assert_eq!(t.count("SELECT count(*) FROM t").await, 3, "row 3 is back");
}

/// A table the statistics put at a million rows or more is not scanned to be
/// counted, before or after; every row is still migrated (the range is fixed
/// by keys, not by the count), and `exact_count = true` counts anyway.
async fn a_large_table_is_counted_from_the_engine_statistics(b: Backend) {
    let Some(t) = TestDb::new(b, "row_estimate").await else {
        return;
    };
    let rows: Vec<String> = (1..=30).map(|i| format!("({i}, 0)")).collect();
    migration(
        &t.migrations(),
        "0001_big",
        &format!(
            "CREATE TABLE big (id INT PRIMARY KEY, v INT);\nINSERT INTO big VALUES {};\n",
            rows.join(", ")
        ),
        None,
    );
    t.run_with(
        Target::Up {
            to: Some("0001".parse().unwrap()),
        },
        &t.options(),
    )
    .await
    .expect("seed");
    // Make PostgreSQL's statistics claim five million rows.
    let fake = match b {
        Backend::Postgres => Some(vec![
            "ANALYZE big",
            "UPDATE pg_class SET reltuples = 5000000 WHERE oid = CAST('big' AS regclass)",
        ]),
        // MariaDB keeps InnoDB's estimate in memory: it reads as the true 30 here,
        // which tests the statistics query and the small-table path.
        Backend::MySql => Some(vec!["ANALYZE TABLE big"]),
        Backend::Sqlite => None,
    };
    let mut raw = t.raw().await;
    for sql in fake.iter().flatten() {
        sqlx::raw_sql(sql).execute(&mut raw).await.expect(sql);
    }
    let cfg: instar_core::meta::DataConfig =
        toml::from_str("table = \"big\"\nkey = \"id\"\n").unwrap();
    let mut db = t.db().await;
    let estimate = instar_db::data::estimated_rows(&mut db, &cfg)
        .await
        .expect("estimate");
    db.close().await.expect("close");
    match b {
        Backend::Sqlite => assert_eq!(estimate, None, "SQLite keeps no row statistics"),
        Backend::Postgres => assert_eq!(estimate, Some(5_000_000)),
        Backend::MySql => assert!(estimate.is_some(), "{estimate:?}"),
    }
    data_migration(
        &t,
        "0002_touch",
        "kind = \"data\"\n[data]\ntable = \"big\"\nkey = \"id\"\nbatch_size = 7\n",
        "UPDATE big SET v = 1 WHERE {batch};\n",
    );
    t.up().await.expect("up");
    assert_eq!(t.count("SELECT count(*) FROM big WHERE v = 1").await, 30);
    let note = |v: &str| {
        format!("SELECT count(*) FROM instar_history WHERE version = '{v}' AND event = 'apply' AND note LIKE '%about 5000000 rows%'")
    };
    let exact = |v: &str| {
        format!("SELECT count(*) FROM instar_history WHERE version = '{v}' AND event = 'apply' AND note LIKE '%before: 30, after: 30%'")
    };
    let large = estimate.is_some_and(|n| n >= instar_db::data::LARGE_TABLE);
    assert_eq!(t.count(&note("0002")).await, i64::from(large));
    assert_eq!(t.count(&exact("0002")).await, i64::from(!large));
    if b == Backend::Postgres {
        assert!(large, "the faked statistics are read");
    }
    data_migration(
        &t,
        "0003_touch_counted",
        "kind = \"data\"\n[data]\ntable = \"big\"\nkey = \"id\"\nbatch_size = 7\nexact_count = true\n",
        "UPDATE big SET v = 2 WHERE {batch};\n",
    );
    t.up().await.expect("up");
    assert_eq!(t.count("SELECT count(*) FROM big WHERE v = 2").await, 30);
    assert_eq!(t.count(&exact("0003")).await, 1, "exact_count counts");
}

/// A COMMIT inside a transactional migration would make "rolled back" a lie.
async fn a_script_with_its_own_commit_is_refused(b: Backend) {
    let Some(t) = TestDb::new(b, "own_commit").await else {
        return;
    };
    migration(
        &t.migrations(),
        "0001_c",
        "CREATE TABLE b (x INT);\nCOMMIT;\nCREATE TABLE c (x INT);\nSELECT no_such_function();\n",
        None,
    );
    let r = t.up().await;
    if b == Backend::MySql {
        // MySQL runs every migration statement by statement; its COMMIT commits
        // nothing of Instar's, and the failure is a dirty mark at line 4.
        let e = r.expect_err("fails at line 4");
        assert!(matches!(&e, Error::StatementFailed { line: 4, .. }), "{e}");
        return;
    }
    let e = r.expect_err("refused").to_string();
    assert!(
        e.contains("0001_c/up.sql:2") && e.contains("no-transaction"),
        "{e}"
    );
    assert!(!t.table_exists("b").await, "nothing ran: {e}");
    assert!(
        !t.table_exists("instar_history").await,
        "nothing written: {e}"
    );
}

/// An unterminated comment, string or quote is an error naming file and line,
/// from `plan` and `up` alike, and nothing is written (it once swallowed the
/// history row and COMMIT and reported success on SQLite).
async fn an_unterminated_script_is_refused_before_anything_runs(b: Backend) {
    let Some(t) = TestDb::new(b, "unterminated").await else {
        return;
    };
    migration(&t.migrations(), "0001_a", "CREATE TABLE a (x INT);\n", None);
    t.up().await.expect("0001");
    let mut cases = vec![
        (
            "CREATE TABLE b (x INT);\n/* never closed\nCREATE TABLE c (x INT);\n",
            2,
            "block comment",
        ),
        (
            "CREATE TABLE b (x INT);\n\nINSERT INTO a VALUES ('oops);\n",
            3,
            "string",
        ),
    ];
    if b == Backend::Postgres {
        cases.push((
            "CREATE TABLE b (x INT);\nDO $x$ BEGIN NULL; END\n",
            2,
            "$x$ quote",
        ));
    }
    for (sql, line, what) in cases {
        let _ = std::fs::remove_dir_all(t.migrations().join("0002_b"));
        migration(&t.migrations(), "0002_b", sql, None);
        let mut db = t.db().await;
        let e =
            instar_db::runner::preview(&mut db, &t.source(), Target::Up { to: None }, &t.options())
                .await
                .expect_err("plan refuses");
        db.close().await.expect("close");
        let text = e.to_string();
        assert!(
            text.contains(&format!("0002_b/up.sql:{line}")) && text.contains(what),
            "{text}"
        );
        let e = t.up().await.expect_err("up refuses").to_string();
        assert!(e.contains(&format!("0002_b/up.sql:{line}")), "{e}");
        assert!(!t.table_exists("b").await, "{e}");
        assert_eq!(
            t.count("SELECT count(*) FROM instar_history WHERE version = '0002'")
                .await,
            0,
            "nothing recorded"
        );
    }
    // A NUL byte is refused when the file is read, naming its line.
    let _ = std::fs::remove_dir_all(t.migrations().join("0002_b"));
    migration(&t.migrations(), "0002_b", "SELECT 1;\nSELECT '\0';\n", None);
    let e = instar_core::source::read_dir(&t.migrations(), None).expect_err("NUL");
    assert!(e.to_string().contains("0002_b/up.sql:2"), "{e}");
}

/// After batches ran, an edited script stops the resume with an error that says
/// so (not "refused before any batch"), and nothing more is changed.
async fn a_data_migration_edited_mid_run_is_halted_not_refused(b: Backend) {
    let Some(t) = TestDb::new(b, "edited_mid_run").await else {
        return;
    };
    let values: Vec<String> = (1..=50).map(|i| format!("({i}, 0)")).collect();
    migration(
        &t.migrations(),
        "0001_c",
        &format!(
            "CREATE TABLE c (id INT PRIMARY KEY, v INT NOT NULL);\nINSERT INTO c VALUES {};\n",
            values.join(", ")
        ),
        None,
    );
    let toml = "kind = \"data\"\n[data]\ntable = \"c\"\nkey = \"id\"\nbatch_size = 10\n";
    data_migration(
        &t,
        "0002_bump",
        toml,
        "UPDATE c SET v = v + 1 WHERE {batch}\n",
    );
    let budget = RunOptions {
        max_duration: Some(Duration::ZERO),
        ..t.options()
    };
    let r = t
        .run_with(Target::Up { to: None }, &budget)
        .await
        .expect("one batch");
    assert_eq!(r.paused.as_deref(), Some("0002"));
    data_migration(
        &t,
        "0002_bump",
        toml,
        "UPDATE c SET v = v + 2 WHERE {batch}\n",
    );
    let e = t.up().await.expect_err("edited mid-run");
    assert!(matches!(e, Error::DataHalted { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("changed since the run began") && !text.contains("before any batch"),
        "{text}"
    );
    assert_eq!(t.count("SELECT count(*) FROM c WHERE v = 1").await, 10);
    assert_eq!(t.count("SELECT count(*) FROM c WHERE v > 1").await, 0);
}

/// Primary keys and unique indexes are found from the catalog, in any column order.
async fn a_declared_unique_key_needs_no_duplicate_scan(b: Backend) {
    let Some(t) = TestDb::new(b, "declared_unique_keys").await else {
        return;
    };
    migration(
        &t.migrations(),
        "0001_tables",
        "CREATE TABLE pk (id INTEGER PRIMARY KEY, v INT);\nCREATE TABLE uq (id INT NOT NULL, v INT);\nCREATE UNIQUE INDEX uq_id ON uq (id);\nCREATE TABLE two (a INT NOT NULL, b INT NOT NULL, PRIMARY KEY (b, a));\nCREATE TABLE plain (id INT NOT NULL, v INT);\nCREATE INDEX plain_id ON plain (id);\n",
        None,
    );
    t.up().await.expect("tables");
    let mut db = t.db().await;
    let cols = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for (table, key, unique) in [
        ("pk", cols(&["id"]), true),
        ("uq", cols(&["id"]), true),
        ("two", cols(&["a", "b"]), true),
        ("two", cols(&["a"]), false),
        ("plain", cols(&["id"]), false),
    ] {
        let found = instar_db::data::key_is_declared_unique(&mut db, table, &key)
            .await
            .expect("catalog");
        assert_eq!(found, unique, "{b:?}: {table} {key:?}");
    }
    db.close().await.expect("close");
}

/// (uuid, int) and (date, text) keys on PostgreSQL; the nearest types elsewhere.
async fn composite_keys_of_any_type_are_walked(b: Backend) {
    let Some(t) = TestDb::new(b, "composite_typed_keys").await else {
        return;
    };
    let (uuid, date, text) = match b {
        Backend::Postgres => ("uuid", "date", "text"),
        Backend::MySql => ("CHAR(36)", "DATE", "VARCHAR(20)"),
        Backend::Sqlite => ("TEXT", "TEXT", "TEXT"),
    };
    let mut a = Vec::new();
    let mut d = Vec::new();
    for i in 1..=30u32 {
        let u = format!("{:08x}-0000-4000-8000-{:012x}", i * 7919 % 97, i);
        a.push(format!("('{u}', {}, 0)", i % 4));
        d.push(format!("('2026-01-{:02}', 'k{}', 0)", i % 28 + 1, i % 5));
    }
    // (date, text) pairs must be unique: keep the first of each.
    d.sort();
    d.dedup_by(|x, y| x[..20] == y[..20]);
    let n_d = d.len() as i64;
    migration(
        &t.migrations(),
        "0001_tables",
        &format!(
            "CREATE TABLE a (u {uuid} NOT NULL, n INT NOT NULL, v INT NOT NULL, PRIMARY KEY (u, n));\nINSERT INTO a VALUES {};\nCREATE TABLE d (day {date} NOT NULL, k {text} NOT NULL, v INT NOT NULL, PRIMARY KEY (day, k));\nINSERT INTO d VALUES {};\n",
            a.join(", "),
            d.join(", ")
        ),
        None,
    );
    for (folder, table, key) in [
        ("0002_a", "a", "[\"u\", \"n\"]"),
        ("0003_d", "d", "[\"day\", \"k\"]"),
    ] {
        data_migration(
            &t,
            folder,
            &format!("kind = \"data\"\n[data]\ntable = \"{table}\"\nkey = {key}\nbatch_size = 4\n"),
            &format!("UPDATE {table} SET v = v + 1 WHERE {{batch}}\n"),
        );
    }
    let budget = RunOptions {
        max_duration: Some(Duration::ZERO),
        ..t.options()
    };
    // A few runs of one batch each resume from typed composite checkpoints.
    for _ in 0..4 {
        t.run_with(Target::Up { to: None }, &budget)
            .await
            .expect("a batch");
    }
    t.up().await.expect("the rest");
    assert_eq!(t.count("SELECT count(*) FROM a WHERE v = 1").await, 30);
    assert_eq!(t.count("SELECT count(*) FROM d WHERE v = 1").await, n_d);
}

/// A key that cannot travel exactly through a checkpoint is refused before
/// anything is written, never bound as something else.
async fn floating_point_keys_are_refused_before_any_batch(b: Backend) {
    let Some(t) = TestDb::new(b, "float_keys").await else {
        return;
    };
    let float = if b == Backend::Postgres {
        "double precision"
    } else {
        "DOUBLE"
    };
    let float = if b == Backend::Sqlite { "REAL" } else { float };
    let unsigned_table = if b == Backend::MySql {
        "CREATE TABLE big (id BIGINT UNSIGNED PRIMARY KEY, v INT NOT NULL);\nINSERT INTO big VALUES (1, 0), (18446744073709551615, 0);\n"
    } else {
        ""
    };
    migration(
        &t.migrations(),
        "0001_tables",
        &format!("CREATE TABLE f (id {float} PRIMARY KEY, v INT NOT NULL);\nINSERT INTO f VALUES (0.5, 0), (1.5, 0), (2.25, 0);\n{unsigned_table}"),
        None,
    );
    data_migration(
        &t,
        "0002_f",
        "kind = \"data\"\n[data]\ntable = \"f\"\nkey = \"id\"\nbatch_size = 2\n",
        "UPDATE f SET v = v + 1 WHERE {batch}\n",
    );
    if b == Backend::Postgres {
        // PostgreSQL prints floats exactly: the key travels as text, cast back.
        t.up().await.expect("a float key carried exactly");
        assert_eq!(t.count("SELECT count(*) FROM f WHERE v = 1").await, 3);
        return;
    }
    let e = t.up().await.expect_err("a float key is refused");
    assert!(
        matches!(e, Error::Unsupported(_) | Error::DataRefused { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("key"), "{e}");
    assert_eq!(
        t.count("SELECT count(*) FROM f WHERE v <> 0").await,
        0,
        "nothing was changed"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM instar_history WHERE version = '0002'")
            .await,
        0,
        "no data run was started"
    );
    if b == Backend::MySql {
        std::fs::remove_dir_all(t.migrations().join("0002_f")).expect("rm");
        data_migration(
            &t,
            "0002_big",
            "kind = \"data\"\n[data]\ntable = \"big\"\nkey = \"id\"\nbatch_size = 1\n",
            "UPDATE big SET v = v + 1 WHERE {batch}\n",
        );
        // Either every row is walked exactly, or the key is refused: never a false success.
        match t.up().await {
            Ok(_) => assert_eq!(t.count("SELECT count(*) FROM big WHERE v = 1").await, 2),
            Err(e) => {
                assert!(e.to_string().contains("key"), "{e}");
                assert_eq!(t.count("SELECT count(*) FROM big WHERE v <> 0").await, 0);
            }
        }
    }
}

/// A restore runs under the run lock on the session that holds it: no other
/// runner can take the lock while (or because) the database is being replaced.
async fn a_restore_keeps_the_run_lock(b: Backend) {
    let Some(t) = TestDb::new(b, "restore_keeps_lock").await else {
        return;
    };
    migration(
        &t.migrations(),
        "0001_a",
        "CREATE TABLE a (id INT);\n",
        None,
    );
    t.up().await.expect("up");
    let mut db = t.db().await;
    let Ok(Some(info)) = backup::take(&mut db, &t.backups(), "test").await else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no backup tool for {b:?}, and CI=true"
        );
        eprintln!("SKIPPED a_restore_keeps_the_run_lock on {b:?}: no backup tool");
        return;
    };
    db.lock(Duration::from_secs(5), || {}).await.expect("lock");
    backup::restore(&mut db, &t.backups(), &info.id)
        .await
        .expect("restore");
    let mut other = t.db().await;
    let e = other
        .lock(Duration::ZERO, || {})
        .await
        .expect_err("still locked");
    assert!(matches!(e, Error::LockTimeout { .. }), "{e}");
    // The session still works on the restored database.
    assert!(!db.read_history().await.expect("history").is_empty());
    db.close().await.expect("close");
    other
        .lock(Duration::from_secs(5), || {})
        .await
        .expect("free after close");
    other.close().await.expect("close");
}

/// The failing statement's position comes from the execution, not from running
/// the statements again: a sequence (which no rollback undoes) moves once.
async fn a_failing_statement_is_not_run_twice(b: Backend) {
    let Some(t) = TestDb::new(b, "failing_statement_once").await else {
        return;
    };
    let (create, next) = match b {
        Backend::Postgres => ("CREATE SEQUENCE s;", "SELECT nextval('s');"),
        Backend::MySql => ("CREATE SEQUENCE s;", "SELECT NEXTVAL(s);"),
        // SQLite has no sequence; a table on another connection plays none either,
        // so check the line only.
        Backend::Sqlite => ("CREATE TABLE s (x INT);", "SELECT 1;"),
    };
    migration(&t.migrations(), "0001_seq", &format!("{create}\n"), None);
    t.up().await.expect("0001");
    migration(
        &t.migrations(),
        "0002_fails",
        &format!("{next}\nCREATE TABLE x (id INT);\n\nSELECT * FROM no_such_table;\n"),
        None,
    );
    let e = t.up().await.expect_err("fails");
    assert!(matches!(&e, Error::StatementFailed { line: 4, .. }), "{e}");
    match b {
        Backend::Postgres => assert_eq!(t.count("SELECT last_value FROM s").await, 1, "{e}"),
        Backend::MySql => assert_eq!(t.count("SELECT NEXTVAL(s)").await, 2, "{e}"),
        Backend::Sqlite => {}
    }
}

/// SQLite leaves foreign keys off (its default, the `sqlite3` shell's and
/// diesel's): a table rebuild — create, copy, drop, rename — keeps the child
/// rows that `ON DELETE CASCADE` would delete with them on.
#[tokio::test]
async fn a_sqlite_table_rebuild_keeps_child_rows() {
    let t = TestDb::new(Backend::Sqlite, "fk_rebuild")
        .await
        .expect("SQLite always runs");
    migration(
        &t.migrations(),
        "0001_tables",
        "CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT);\n\
         CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id) ON DELETE CASCADE);\n\
         INSERT INTO parent VALUES (1, 'a'), (2, 'b');\n\
         INSERT INTO child VALUES (10, 1), (11, 1), (12, 2);\n",
        None,
    );
    migration(
        &t.migrations(),
        "0002_rebuild_parent",
        "CREATE TABLE parent_new (id INTEGER PRIMARY KEY, name TEXT NOT NULL DEFAULT '');\n\
         INSERT INTO parent_new SELECT id, name FROM parent;\n\
         DROP TABLE parent;\n\
         ALTER TABLE parent_new RENAME TO parent;\n",
        None,
    );
    t.up().await.expect("up");
    assert_eq!(
        t.count("SELECT count(*) FROM child").await,
        3,
        "no child row deleted"
    );
    assert_eq!(t.count("SELECT count(*) FROM parent").await, 2);
}

/// Applying a file of n statements on SQLite costs time linear in n (each
/// statement was prepared from a copy of the rest of the file: n² bytes).
/// Doubling n must not much more than double the time.
#[tokio::test]
async fn a_sqlite_file_of_many_statements_costs_linear_time() {
    async fn apply(n: usize) -> Duration {
        let t = TestDb::new(Backend::Sqlite, &format!("many_statements_{n}"))
            .await
            .expect("SQLite always runs");
        let mut sql = String::from("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);\n");
        for i in 0..n {
            // Rows of about 300 bytes, like a dump's.
            sql.push_str(&format!("INSERT INTO t VALUES ({i}, '{i:0>290}');\n"));
        }
        migration(&t.migrations(), "0001_many", &sql, None);
        let started = std::time::Instant::now();
        t.up().await.expect("up");
        let took = started.elapsed();
        assert_eq!(t.count("SELECT count(*) FROM t").await, n as i64);
        took
    }
    let small = apply(20_000).await;
    let large = apply(40_000).await;
    let ratio = large.as_secs_f64() / small.as_secs_f64().max(0.001);
    assert!(
        ratio < 3.0,
        "20,000 statements took {small:?}, 40,000 took {large:?} ({ratio:.1}×): not linear"
    );
}
