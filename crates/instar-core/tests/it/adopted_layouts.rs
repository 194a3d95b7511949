//! The layouts of other tools, read as those tools read them: golang-migrate,
//! dotted names, ory/popx (engine suffixes, `.autocommit`, 20-digit
//! versions), dbmate and goose sections, and a declared pattern.

use std::path::Path;

use instar_core::layouts::Pattern;
use instar_core::source::{read_dir, read_tree_with, Reading};
use instar_core::version::Order;
use instar_core::{Dialect, Error, Layout};

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn versions(s: &instar_core::Source) -> Vec<&str> {
    s.migrations.iter().map(|m| m.version.as_str()).collect()
}

#[test]
fn golang_migrate_files_with_long_versions_read_in_number_order() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "20150100000001000000_init.up.sql",
        "CREATE TABLE a (id INT);",
    );
    write(
        d.path(),
        "20150100000001000000_init.down.sql",
        "DROP TABLE a;",
    );
    write(
        d.path(),
        "20150100000002000000_b.up.sql",
        "CREATE TABLE b (id INT);",
    );
    write(d.path(), "9_first.up.sql", "SELECT 1;");
    let s = read_dir(d.path(), None).unwrap();
    assert_eq!(s.layout, Some(Layout::Sqlx));
    assert_eq!(
        versions(&s),
        ["9", "20150100000001000000", "20150100000002000000"]
    );
    assert!(s.migrations[1].down.is_some());
}

#[test]
fn dotted_names_read_as_versions_and_names() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "V0001.Initial_Schema.up.sql",
        "CREATE TABLE a (id INT);",
    );
    write(d.path(), "V0001.Initial_Schema.down.sql", "DROP TABLE a;");
    write(
        d.path(),
        "V0010.Add_Index.up.sql",
        "CREATE INDEX i ON a (id);",
    );
    write(d.path(), "V0002.Seed.up.sql", "INSERT INTO a VALUES (1);");
    let s = read_dir(d.path(), None).unwrap();
    assert_eq!(s.layout, Some(Layout::Dotted));
    assert_eq!(versions(&s), ["0001", "0002", "0010"]);
    assert_eq!(s.migrations[0].name, "Initial_Schema");
    assert!(s.migrations[0].down.is_some() && s.migrations[1].down.is_none());
}

fn popx_folder(root: &Path) {
    let v1 = "20150100000001000000_networks";
    write(
        root,
        &format!("{v1}.sqlite3.up.sql"),
        "CREATE TABLE networks (id TEXT PRIMARY KEY);",
    );
    write(
        root,
        &format!("{v1}.postgres.up.sql"),
        "CREATE TABLE networks (id UUID PRIMARY KEY);",
    );
    write(
        root,
        &format!("{v1}.mysql.up.sql"),
        "CREATE TABLE networks (id CHAR(36) PRIMARY KEY);",
    );
    write(
        root,
        &format!("{v1}.cockroach.up.sql"),
        "CREATE TABLE networks (id UUID PRIMARY KEY);",
    );
    write(
        root,
        &format!("{v1}.sqlite3.down.sql"),
        "DROP TABLE networks;",
    );
    write(
        root,
        &format!("{v1}.postgres.down.sql"),
        "DROP TABLE networks;",
    );
    write(
        root,
        &format!("{v1}.mysql.down.sql"),
        "DROP TABLE networks;",
    );
    let v2 = "20150100000002000000_index";
    write(
        root,
        &format!("{v2}.up.sql"),
        "CREATE INDEX networks_id ON networks (id);",
    );
    write(root, &format!("{v2}.down.sql"), "DROP INDEX networks_id;");
    write(
        root,
        &format!("{v2}.postgres.autocommit.up.sql"),
        "CREATE INDEX CONCURRENTLY networks_id ON networks (id);",
    );
    write(
        root,
        &format!("{v2}.postgres.down.sql"),
        "DROP INDEX networks_id;",
    );
    // Only PostgreSQL has this one: on SQLite and MySQL it does not exist.
    write(
        root,
        "20150100000003000000_pg_only.postgres.up.sql",
        "SELECT 1;",
    );
}

#[test]
fn popx_picks_each_engines_files() {
    let d = tempfile::tempdir().unwrap();
    popx_folder(d.path());
    let s = read_dir(d.path(), None).unwrap();
    assert_eq!(s.layout, Some(Layout::Popx));
    assert_eq!(s.migrations.len(), 3);

    let pg = s.clone().for_dialect(Dialect::Postgres);
    assert_eq!(pg.migrations.len(), 3);
    assert!(pg.migrations[0].up.sql.contains("UUID"));
    assert!(pg.migrations[1].up.sql.contains("CONCURRENTLY"));
    assert!(
        !pg.migrations[1].transaction,
        ".autocommit runs outside a transaction"
    );
    assert!(pg.migrations[1].down.is_some());

    let lite = s.clone().for_dialect(Dialect::Sqlite);
    assert_eq!(
        versions(&lite),
        ["20150100000001000000", "20150100000002000000"]
    );
    assert!(lite.migrations[0].up.sql.contains("TEXT PRIMARY KEY"));
    assert!(lite.migrations[1].transaction, "the dialect-free file");
    assert!(
        lite.notes.iter().any(|n| n.contains("pg_only")),
        "{:?}",
        lite.notes
    );
    assert_ne!(lite.migrations[0].checksum, pg.migrations[0].checksum);

    let my = s.for_dialect(Dialect::MySql);
    assert!(my.migrations[0].up.sql.contains("CHAR(36)"));
}

#[test]
fn popx_refuses_what_it_cannot_run() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "1_a.sqlite3.up.sql", "SELECT 1;");
    write(d.path(), "2_b.up.fizz", "create_table(\"b\") {}");
    let e = read_dir(d.path(), None).unwrap_err();
    assert!(e.to_string().contains("2_b.up.fizz"), "{e}");
    assert!(e.to_string().contains("fizz"), "{e}");

    let d = tempfile::tempdir().unwrap();
    write(d.path(), "1_a.sqlite3.down.sql", "SELECT 1;");
    write(d.path(), "1_a.postgres.up.sql", "SELECT 1;");
    let e = read_dir(d.path(), None).unwrap_err();
    assert!(e.to_string().contains("no forward script"), "{e}");
}

#[test]
fn dbmate_files_hold_both_directions() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "20151129054053_create_users.sql",
        "-- migrate:up\ncreate table users (\n  id integer,\n  name varchar(255)\n);\n\n-- migrate:down\ndrop table users;\n",
    );
    write(
        d.path(),
        "20151129054054_index.sql",
        "-- migrate:up transaction:false\ncreate index concurrently users_name on users (name);\n\n-- migrate:down\n",
    );
    let s = read_dir(d.path(), None).unwrap();
    assert_eq!(s.layout, Some(Layout::Dbmate));
    let (a, b) = (&s.migrations[0], &s.migrations[1]);
    assert!(a.transaction && a.down.as_ref().unwrap().sql.contains("drop table users"));
    assert!(!a.up.sql.contains("drop"));
    // Line numbers are the file's: the down statement is on line 8.
    let down = &a.down.as_ref().unwrap().sql;
    assert_eq!(down.lines().position(|l| l.contains("drop")), Some(7));
    assert!(!b.transaction && b.down.is_none());
}

#[test]
fn a_dbmate_file_without_sections_is_named() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "1_a.sql", "-- migrate:up\nSELECT 1;\n");
    write(d.path(), "2_b.sql", "SELECT 2;\n");
    let e = read_dir(d.path(), None).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("2_b.sql") && text.contains("dbmate"),
        "{text}"
    );
}

#[test]
fn goose_files_hold_annotated_directions() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "00001_create_users.sql",
        "-- +goose Up\nCREATE TABLE users (id INT);\n-- +goose StatementBegin\nCREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\n-- +goose StatementEnd\n\n-- +goose Down\nDROP FUNCTION f;\nDROP TABLE users;\n",
    );
    write(
        d.path(),
        "00002_index.sql",
        "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE INDEX CONCURRENTLY i ON users (id);\n-- +goose Down\nDROP INDEX i;\n",
    );
    let s = read_dir(d.path(), None).unwrap();
    assert_eq!(s.layout, Some(Layout::Goose));
    assert_eq!(versions(&s), ["00001", "00002"]);
    assert!(s.migrations[0].transaction && !s.migrations[1].transaction);
    match instar_core::split::split(&s.migrations[0].up.sql, Dialect::Postgres) {
        instar_core::split::Split::Statements(st) => {
            assert_eq!(st.len(), 2, "{st:?}");
            assert_eq!(st[1].line, 4);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn goose_go_migrations_are_refused_not_skipped() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "00001_a.sql", "-- +goose Up\nSELECT 1;\n");
    write(d.path(), "00002_b.go", "package migrations\n");
    let e = read_dir(d.path(), None).unwrap_err();
    assert!(e.to_string().contains("00002_b.go"), "{e}");
}

#[test]
fn a_declared_pattern_reads_any_naming() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "0001.create.users.up.sql",
        "CREATE TABLE users (id INT);",
    );
    write(d.path(), "0001.create.users.down.sql", "DROP TABLE users;");
    write(
        d.path(),
        "0002.seed.up.sql",
        "INSERT INTO users VALUES (1);",
    );
    write(d.path(), "notes.txt", "x");
    let reading = Reading {
        layout: Some(Layout::Pattern(Order::Numeric)),
        pattern: Some(Pattern::parse("{version}.{name}.{direction}.sql").unwrap()),
    };
    let s = read_tree_with(&instar_core::files::Disk, d.path(), &reading).unwrap();
    assert_eq!(versions(&s), ["0001", "0002"]);
    assert_eq!(s.migrations[0].name, "create.users");
    assert!(s.migrations[0].down.is_some());
    assert_eq!(s.notes.len(), 1);
}

#[test]
fn an_unreadable_name_lists_the_layouts_tried() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "V1_init.sql", "SELECT 1;");
    let e = read_dir(d.path(), None).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, Error::MalformedName { .. }));
    for words in ["V1_init.sql", "golang-migrate", "dbmate", "pattern ="] {
        assert!(text.contains(words), "{words:?} in {text}");
    }
}

#[test]
fn each_direction_keeps_its_own_transaction_setting() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "1_index.sql",
        "-- migrate:up\nCREATE INDEX i ON t (x);\n-- migrate:down transaction:false\nDROP INDEX CONCURRENTLY i;\n",
    );
    let s = read_dir(d.path(), None).unwrap();
    assert!(s.migrations[0].transaction);
    assert_eq!(s.migrations[0].down_transaction, Some(false));

    // popx: each direction is chosen by itself, its .autocommit too.
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "1_x.postgres.up.sql",
        "CREATE INDEX CONCURRENTLY i ON t (x);",
    );
    write(d.path(), "1_x.up.sql", "CREATE INDEX i ON t (x);");
    write(d.path(), "1_x.down.sql", "DROP INDEX i;");
    write(
        d.path(),
        "1_x.postgres.autocommit.down.sql",
        "DROP INDEX CONCURRENTLY i;",
    );
    write(d.path(), "2_y.postgres.up.sql", "SELECT 2;");
    write(d.path(), "2_y.down.sql", "SELECT -2;");
    let pg = read_dir(d.path(), None)
        .unwrap()
        .for_dialect(Dialect::Postgres);
    let (one, two) = (&pg.migrations[0], &pg.migrations[1]);
    assert!(one.down.as_ref().unwrap().sql.contains("CONCURRENTLY"));
    assert_eq!(one.down_transaction, Some(false));
    assert_eq!(
        two.down.as_ref().unwrap().sql,
        "SELECT -2;",
        "the dialect-free down"
    );
}

#[test]
fn a_flyway_name_with_one_underscore_is_refused_not_read_as_dotted() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "V1.2_add.sql", "SELECT 1;");
    let e = read_dir(d.path(), None).unwrap_err();
    assert!(e.to_string().contains("two underscores"), "{e}");
}
