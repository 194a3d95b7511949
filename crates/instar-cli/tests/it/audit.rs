//! `instar audit` on every engine: a sound database passes; rows breaking a
//! foreign key the database does not enforce, an invalid index, an object
//! dropped by hand, documents at an unknown version or against their schema
//! are each named with what to do; a database with no history is said so.

use crate::adopt::exec;
use crate::documents::{json, run};
use crate::harness::{file, migration, Backend, TestDb};

fn project(t: &TestDb) {
    let m = t.migrations();
    migration(
        &m,
        "0001_shop",
        "CREATE TABLE parent (id int PRIMARY KEY);\nCREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent (id));\nCREATE INDEX child_parent ON child (parent_id);\nCREATE INDEX child_pair ON child (id, parent_id);",
        None,
    );
    migration(
        &m,
        "0002_view",
        "CREATE VIEW parents AS SELECT id FROM parent;",
        None,
    );
}

on_every_engine!(
    audit_names_what_is_broken_and_what_to_do,
    audit_reads_documents_against_their_versions
);

async fn audit_names_what_is_broken_and_what_to_do(b: Backend) {
    let Some(t) = TestDb::new(b, "audit_cli").await else {
        return;
    };
    project(&t);
    // No history yet: said, exit 1.
    let (code, out, err) = run(&t, &["audit"], None);
    assert_eq!(code, 1, "{b:?}: {out}{err}");
    assert!(
        out.contains("error[no-history]") && out.contains("instar adopt"),
        "{b:?}: {out}"
    );

    let (code, out, err) = run(&t, &["up"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    exec(
        &t,
        "INSERT INTO parent VALUES (1); INSERT INTO child VALUES (1, 1)",
    )
    .await;
    let (code, out, err) = run(&t, &["audit"], None);
    assert_eq!(code, 0, "{b:?}: a sound database: {out}{err}");
    assert!(out.contains("0 errors"), "{out}");

    // Orphans the engine let in.
    match b {
        Backend::Sqlite => {
            exec(
                &t,
                "PRAGMA foreign_keys = OFF; INSERT INTO child VALUES (2, 99)",
            )
            .await
        }
        Backend::MySql => {
            exec(
                &t,
                "SET FOREIGN_KEY_CHECKS = 0; INSERT INTO child VALUES (2, 99)",
            )
            .await
        }
        Backend::Postgres => {
            let fk: String = {
                use sqlx::Connection;
                let mut c = t.raw().await;
                let n = sqlx::query_scalar("SELECT conname::text FROM pg_constraint WHERE contype = 'f' AND conrelid = 'child'::regclass")
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
                let _ = c.close().await;
                n
            };
            exec(&t, &format!("ALTER TABLE child DROP CONSTRAINT {fk}; INSERT INTO child VALUES (2, 99); INSERT INTO child VALUES (3, 1); INSERT INTO child VALUES (4, 1); ALTER TABLE child ADD CONSTRAINT child_parent_fk FOREIGN KEY (parent_id) REFERENCES parent (id) NOT VALID; ALTER TABLE child ADD CONSTRAINT positive CHECK (id < 2) NOT VALID")).await;
            // A unique index built concurrently over duplicates fails and stays, invalid.
            use sqlx::Connection;
            let mut c = t.raw().await;
            let r = sqlx::raw_sql("CREATE UNIQUE INDEX CONCURRENTLY dup ON child (parent_id)")
                .execute(&mut c)
                .await;
            assert!(r.is_err(), "duplicates make the build fail");
            let _ = c.close().await;
        }
    }
    // An index dropped by hand.
    exec(
        &t,
        if b == Backend::MySql {
            "DROP INDEX child_pair ON child"
        } else {
            "DROP INDEX child_pair"
        },
    )
    .await;
    let (code, out, err) = run(&t, &["audit"], None);
    assert_eq!(code, 1, "{b:?}: {out}{err}");
    assert!(out.contains("error[foreign-key]"), "{b:?}: {out}");
    assert!(
        out.contains("1 row(s) of child point at no row of parent"),
        "{b:?}: {out}"
    );
    assert!(
        out.contains("index child_pair, created by migration 0001")
            && out.contains("0001_shop/up.sql:4"),
        "{b:?}: {out}"
    );
    if b == Backend::Postgres {
        assert!(out.contains("error[invalid-index]: dup"), "{out}");
        assert!(out.contains("DROP INDEX CONCURRENTLY dup"), "{out}");
        assert!(
            out.contains("3 row(s) of child break check constraint positive"),
            "{out}"
        );
    }
    let (code, j, _) = run(&t, &["--format", "json", "audit", "--exact"], None);
    assert_eq!(code, 1);
    let j = json(&j);
    let findings = j["audit"]["findings"].as_array().unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f["check"] == "missing-object" && f["object"] == "child_pair"),
        "{j}"
    );
    assert!(findings
        .iter()
        .all(|f| f["instead"].as_str().is_some_and(|s| !s.is_empty())));
}

async fn audit_reads_documents_against_their_versions(b: Backend) {
    let Some(t) = crate::documents::users(b, "audit_docs").await else {
        return;
    };
    // Instar's history exists once a migration ran.
    migration(
        &t.migrations(),
        "0001_marker",
        "CREATE TABLE marker (id int PRIMARY KEY);",
        None,
    );
    let (code, out, err) = run(&t, &["up"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    file(
        &t.dir
            .path()
            .join("collections/users/schemas/1.0.0.schema.json"),
        r#"{"type": "object", "required": ["name"]}"#,
    );
    exec(&t, r#"INSERT INTO users VALUES (1, '{"name": "Ada Lovelace", "mail": "ada@example.org"}', '1.0.0')"#).await;
    let (code, out, err) = run(&t, &["audit"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    exec(
        &t,
        r#"INSERT INTO users VALUES (2, '{"mail": "nameless@example.org"}', '1.0.0')"#,
    )
    .await;
    exec(
        &t,
        r#"INSERT INTO users VALUES (3, '{"name": "From The Future"}', '9.0.0')"#,
    )
    .await;
    let (code, out, err) = run(&t, &["audit"], None);
    assert_eq!(code, 1, "{b:?}: {out}{err}");
    assert!(
        out.contains("error[unknown-version]: users 3") && out.contains("\"9.0.0\""),
        "{b:?}: {out}"
    );
    assert!(
        out.contains("error[invalid-document]: users 2"),
        "{b:?}: {out}"
    );
    assert!(!out.contains("users 1:"), "{b:?}: {out}");
}

/// A table with fewer rows than a data migration rewrote is a warning (exit 0).
#[tokio::test]
async fn audit_compares_row_counts_with_data_migrations() {
    let t = TestDb::sqlite("audit_rows").await;
    let m = t.migrations();
    migration(&m, "0001_items", "CREATE TABLE items (id int PRIMARY KEY, n int);\nINSERT INTO items VALUES (1, 0), (2, 0), (3, 0), (4, 0);", None);
    migration(
        &m,
        "0002_bump",
        "UPDATE items SET n = n + 1 WHERE {batch}",
        None,
    );
    file(
        &m.join("0002_bump/migration.toml"),
        "kind = \"data\"\n[data]\ntable = \"items\"\nkey = \"id\"\nbatch_size = 2\n[checks]\nafter = [\"SELECT count(*) = 0 FROM items WHERE n = 0\"]\n",
    );
    let (code, out, err) = run(&t, &["up"], None);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = run(&t, &["audit"], None);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("row-count"), "{out}");
    exec(&t, "DELETE FROM items WHERE id > 1").await;
    let (code, out, _) = run(&t, &["audit"], None);
    assert_eq!(code, 0, "a warning: {out}");
    assert!(
        out.contains("warning[row-count]: items: items holds 1 rows, fewer than the 4 data migration 0002 rewrote"),
        "{out}"
    );
}
