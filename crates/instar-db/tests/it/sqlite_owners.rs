//! SQLite as its owners run it: foreign keys left off (SQLite's default), a
//! foreign-key check before a migration commits, and statement text stored
//! exactly as `sqlite3` stores it.

use instar_db::Error;

use crate::harness::{migration, TestDb};

const TABLES: &str = "CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT);\n\
     CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id) ON DELETE CASCADE);\n\
     INSERT INTO parent VALUES (1, 'a'), (2, 'b');\n\
     INSERT INTO child VALUES (10, 1), (11, 1), (12, 2);\n";

/// A rebuild that forgets a parent row leaves child rows pointing nowhere:
/// SQLite does not stop it with foreign keys off, so Instar's check does, and
/// the migration is rolled back, naming the table and the row.
#[tokio::test]
async fn a_rebuild_that_orphans_child_rows_is_rolled_back() {
    let t = TestDb::sqlite("fk_orphans").await;
    migration(&t.migrations(), "0001_tables", TABLES, None);
    migration(
        &t.migrations(),
        "0002_rebuild_parent",
        "CREATE TABLE parent_new (id INTEGER PRIMARY KEY, name TEXT NOT NULL DEFAULT '');\n\
         INSERT INTO parent_new SELECT id, name FROM parent WHERE id = 1;\n\
         DROP TABLE parent;\n\
         ALTER TABLE parent_new RENAME TO parent;\n",
        None,
    );
    let e = t.up().await.expect_err("orphans refused");
    assert!(
        matches!(&e, Error::ForeignKeyViolation { version, .. } if version == "0002"),
        "{e}"
    );
    let text = e.to_string();
    for words in [
        "child rowid 12",
        "parent",
        "0002_rebuild_parent",
        "rolled back",
    ] {
        assert!(text.contains(words), "{words:?} in: {text}");
    }
    // Exactly as before 0002: both parents, every child, 0001 applied only.
    assert_eq!(t.count("SELECT count(*) FROM parent").await, 2);
    assert_eq!(t.count("SELECT count(*) FROM child").await, 3);
    assert!(!t.table_exists("parent_new").await);
    assert_eq!(t.events("apply").await, 1);
    assert_eq!(t.events("fail").await, 1);
}

/// With foreign keys switched on by `init_sql`, SQLite enforces them itself:
/// no check is needed, and a rebuild then cascades as SQLite says it does.
#[tokio::test]
async fn foreign_keys_switched_on_by_init_sql_are_enforced_by_sqlite() {
    let t = TestDb::sqlite("fk_on").await;
    migration(&t.migrations(), "0001_tables", TABLES, None);
    migration(
        &t.migrations(),
        "0002_delete_parent",
        "DELETE FROM parent WHERE id = 2;\n",
        None,
    );
    let mut settings = instar_db::Settings::new(&t.url);
    settings.init_sql = vec!["PRAGMA foreign_keys = ON".into()];
    let mut db = instar_db::Db::connect(&settings).await.expect("connect");
    let source = t.source();
    instar_db::runner::run(
        &mut db,
        &source,
        instar_core::plan::Target::Up { to: None },
        &t.options(),
        &mut instar_core::event::NullSink,
    )
    .await
    .expect("up");
    db.close().await.expect("close");
    assert_eq!(t.count("SELECT count(*) FROM child").await, 2, "cascaded");
}

/// `sqlite_master.sql` holds each `CREATE` as the project's file wrote it,
/// exactly as the `sqlite3` shell stores it from the same file.
#[tokio::test]
async fn the_schema_text_is_what_sqlite3_stores() {
    let Some(sqlite3) = crate::harness::tool("sqlite3", "the_schema_text_is_what_sqlite3_stores")
    else {
        return;
    };
    let sql = "CREATE TABLE t (\n  id INTEGER PRIMARY KEY,\n  v TEXT -- the value\n);\n\
               CREATE INDEX t_v ON t (v);\n\
               CREATE UNIQUE INDEX t_v2 ON t (v, id)   \n;\n\
               CREATE INDEX t_partial ON t (v) WHERE v IS NOT NULL -- partial\n;\n\
               CREATE VIEW tv AS SELECT v FROM t;\n\
               CREATE TABLE d (x TEXT DEFAULT '--', y TEXT DEFAULT '#');\n\
               CREATE TRIGGER tt AFTER INSERT ON t BEGIN\n  UPDATE t SET v = v WHERE id = new.id;\nEND;\n";
    let t = TestDb::sqlite("schema_text").await;
    migration(&t.migrations(), "0001_schema", sql, None);
    t.up().await.expect("up");
    let theirs = t.dir.path().join("sqlite3.db");
    let out = std::process::Command::new(&sqlite3)
        .arg(&theirs)
        .arg(format!(
            ".read {}",
            t.migrations().join("0001_schema/up.sql").display()
        ))
        .output()
        .expect("sqlite3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = |path: &std::path::Path| {
        let out = std::process::Command::new(&sqlite3)
            .arg(path)
            .arg("SELECT name || ': ' || quote(sql) FROM sqlite_master WHERE name NOT LIKE 'instar%' ORDER BY name")
            .output()
            .expect("sqlite3 runs");
        String::from_utf8(out.stdout).expect("text")
    };
    let ours = dump(&t.dir.path().join("test.db"));
    assert_eq!(ours, dump(&theirs));
    for name in ["t:", "t_v:", "t_v2:", "t_partial:", "tv:", "tt:", "d:"] {
        assert!(ours.contains(name), "{name} in {ours}");
    }
}

/// Orphans already in the database (foreign keys were off) and a foreign key
/// SQLite cannot check (to a column that is not unique) do not fail a
/// migration that adds none.
#[tokio::test]
async fn only_the_orphans_a_migration_adds_fail_it() {
    let t = TestDb::sqlite("fk_existing_orphans").await;
    migration(&t.migrations(), "0001_tables", TABLES, None);
    t.up().await.expect("0001");
    // Another client, with foreign keys off, orphans a row.
    {
        use sqlx::Connection;
        let mut c = t.raw().await;
        sqlx::raw_sql("PRAGMA foreign_keys = OFF; INSERT INTO child VALUES (13, 99)")
            .execute(&mut c)
            .await
            .expect("orphan");
        let _ = c.close().await;
    }
    migration(
        &t.migrations(),
        "0002_unrelated",
        "CREATE TABLE other (x INT);\nINSERT INTO other VALUES (1);\n",
        None,
    );
    t.up()
        .await
        .expect("an orphan from before is not this migration's");
    assert_eq!(t.events("apply").await, 2);

    let t = TestDb::sqlite("fk_mismatch").await;
    migration(
        &t.migrations(),
        "0001_tables",
        "CREATE TABLE p (code TEXT);\nCREATE TABLE c (code TEXT REFERENCES p(code));\nINSERT INTO c VALUES ('x');\n",
        None,
    );
    t.up()
        .await
        .expect("a foreign key SQLite cannot check is not checked");
}
