//! `history_schema`: the history kept apart from the application's tables, on
//! every engine (a PostgreSQL schema Instar creates, a MySQL database and an
//! attached SQLite database that must exist).

use crate::harness::{migration, Backend, TestDb};

on_every_engine!(the_history_lives_in_its_own_schema);

async fn the_history_lives_in_its_own_schema(b: Backend) {
    let Some(t) = TestDb::new(b, "history_schema").await else {
        return;
    };
    // MySQL's schema is a database of its own, which must exist first.
    let other = match b {
        Backend::MySql => TestDb::new(b, "history_schema_meta").await,
        _ => None,
    };
    let schema = match &other {
        Some(o) => url::Url::parse(&o.url).unwrap().path()[1..].to_string(),
        None => "meta".to_string(),
    };
    let init = match b {
        Backend::Sqlite => format!(
            "init_sql = [\"ATTACH DATABASE '{}' AS meta\"]\n",
            t.dir.path().join("meta.db").display()
        ),
        _ => String::new(),
    };
    std::fs::write(
        t.dir.path().join("instar.toml"),
        format!("[database]\n{init}history_schema = \"{schema}\"\n"),
    )
    .unwrap();
    migration(&t.migrations(), "0001_a", "CREATE TABLE a (x INT);\n", None);
    let run = |args: &[&str]| {
        let out = crate::instar_at(&t, &t.url).args(args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {text}");
        text
    };
    run(&["up", "--no-backup"]);
    assert!(run(&["status"]).contains("1 applied, 0 pending"));
    let applied = match b {
        // The attached file is a database of its own.
        Backend::Sqlite => rusqlite::Connection::open(t.dir.path().join("meta.db"))
            .unwrap()
            .query_row(
                "SELECT count(*) FROM instar_history WHERE event = 'apply'",
                [],
                |r| r.get(0),
            )
            .unwrap(),
        _ => {
            t.count(&format!(
                "SELECT count(*) FROM {schema}.instar_history WHERE event = 'apply'"
            ))
            .await
        }
    };
    assert_eq!(applied, 1, "the history row is in {schema}");
    assert!(
        !t.table_exists("instar_history").await,
        "no history beside the application's tables"
    );
    assert!(t.table_exists("a").await);
}
