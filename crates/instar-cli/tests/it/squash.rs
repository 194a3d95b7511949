//! `instar squash` on every engine: the baseline builds the same schema and
//! seeded rows on a new database; a database that applied the squashed
//! migrations keeps working (nothing runs twice, validate is clean); one
//! that applied only some of them is told what to do.

use crate::documents::run;
use crate::harness::{migration, Backend, TestDb};

fn migrations(t: &TestDb) {
    let m = t.migrations();
    migration(
        &m,
        "0001_users",
        "CREATE TABLE users (id int PRIMARY KEY, name varchar(100) NOT NULL);",
        None,
    );
    migration(&m, "0002_roles", "CREATE TABLE roles (id int PRIMARY KEY, label varchar(20));\nINSERT INTO roles VALUES (1, 'admin'), (2, 'it''s me');", None);
    migration(
        &m,
        "0003_index",
        "CREATE INDEX users_name ON users (name);\nALTER TABLE users ADD COLUMN role_id int;",
        None,
    );
    migration(
        &m,
        "0004_later",
        "CREATE TABLE later (id int PRIMARY KEY);",
        None,
    );
}

async fn fresh(b: Backend, t: &TestDb, name: &str) -> Option<TestDb> {
    let other = TestDb::new(b, name).await?;
    // The same project folder.
    let _ = std::fs::remove_dir_all(other.migrations());
    copy_dir(&t.migrations(), &other.migrations());
    Some(other)
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

on_every_engine!(a_squash_serves_new_and_old_databases);

async fn a_squash_serves_new_and_old_databases(b: Backend) {
    let Some(old) = TestDb::new(b, "squash_old").await else {
        return;
    };
    migrations(&old);
    // One database applied everything before the squash, one only 0001.
    let (code, out, err) = run(&old, &["up", "--to", "0003"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    let partial = fresh(b, &old, "squash_partial").await.unwrap();
    let (code, out, err) = run(&partial, &["up", "--to", "0001"], None);
    assert_eq!(code, 0, "{out}{err}");

    let (code, out, err) = run(&old, &["squash", "--to", "0003", "--dry-run"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    assert!(
        out.contains("would replace 3 migrations (0001, 0002, 0003)"),
        "{out}"
    );
    assert!(
        old.migrations().join("0001_users").exists(),
        "a dry run moves nothing"
    );
    let (code, out, err) = run(&old, &["squash", "--to", "0003"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    let baseline = old.migrations().join("0003_baseline");
    let sql = std::fs::read_to_string(baseline.join("up.sql")).unwrap();
    assert!(
        sql.to_lowercase().contains("create table") && sql.contains("admin"),
        "{b:?}: {sql}"
    );
    assert!(!old.migrations().join("0001_users").exists());
    assert!(old
        .dir
        .path()
        .join("archive/squashed-to-0003/0002_roles/up.sql")
        .exists());

    // The old database: validate is clean, 0004 runs, nothing runs twice.
    let (code, out, err) = run(&old, &["validate"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    let (code, out, err) = run(&old, &["up"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    assert!(
        out.contains("0004") && !out.contains("baseline"),
        "{b:?}: {out}"
    );

    // A new database runs the baseline, then 0004: the same schema and rows.
    let new = fresh(b, &old, "squash_new").await.unwrap();
    let (code, out, err) = run(&new, &["up"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    assert_eq!(
        new.count("SELECT count(*) FROM roles WHERE label = 'it''s me'")
            .await,
        1,
        "{b:?}"
    );
    new_row(&new).await;
    let (code, out, err) = run(&new, &["validate"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");

    // The partly migrated one is told what to do, and nothing runs.
    let _ = std::fs::remove_dir_all(partial.migrations());
    copy_dir(&old.migrations(), &partial.migrations());
    let (code, out, err) = run(&partial, &["up"], None);
    assert_ne!(code, 0, "{b:?}: {out}{err}");
    assert!(
        err.contains("were squashed into baseline 0003") && err.contains("applied only 0001"),
        "{b:?}: {err}"
    );
    assert!(!partial.table_exists("roles").await, "{b:?}: nothing ran");
}

async fn new_row(t: &TestDb) {
    crate::adopt::exec(
        t,
        "INSERT INTO users (id, name, role_id) VALUES (1, 'Ada', 1)",
    )
    .await;
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE role_id = 1")
            .await,
        1
    );
}
