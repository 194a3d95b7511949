//! Reading migration folders in every layout, and refusing bad input with the file named.

use std::path::Path;

use instar_core::source::read_dir;
use instar_core::{Error, Layout};

fn write(root: &Path, rel: &str, text: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn versions(root: &Path) -> Vec<String> {
    read_dir(root, None)
        .unwrap()
        .migrations
        .iter()
        .map(|m| m.version.to_string())
        .collect()
}

#[test]
fn instar_folders_order_numbers_as_numbers_and_ignore_other_files() {
    let d = tempfile::tempdir().unwrap();
    for v in ["1_a", "2_b", "10_c"] {
        write(d.path(), &format!("{v}/up.sql"), b"SELECT 1;");
    }
    write(d.path(), "README.md", b"docs");
    write(d.path(), "fixtures/data.csv", b"1,2");
    write(d.path(), "2_b/notes.txt", b"x");
    let s = read_dir(d.path(), None).unwrap();
    assert_eq!(s.layout, Some(Layout::Instar));
    assert_eq!(versions(d.path()), ["1", "2", "10"]);
    assert_eq!(s.notes.len(), 3, "{:?}", s.notes);
}

#[test]
fn diesel_folders_order_as_diesel_does_and_honour_metadata() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "00000000000000_diesel_initial_setup/up.sql",
        b"SELECT 1;",
    );
    write(
        d.path(),
        "00000000000000_diesel_initial_setup/down.sql",
        b"SELECT 1;",
    );
    write(
        d.path(),
        "2018-01-14-171611_create_users/up.sql",
        b"CREATE TABLE u (id int);",
    );
    write(
        d.path(),
        "2018-01-14-171611_create_users/down.sql",
        b"DROP TABLE u;",
    );
    write(
        d.path(),
        "2019-02-01-000000_concurrently/up.sql",
        b"CREATE INDEX CONCURRENTLY i ON u (id);",
    );
    write(
        d.path(),
        "2019-02-01-000000_concurrently/metadata.toml",
        b"run_in_transaction = false\n",
    );
    let s = read_dir(d.path(), None).unwrap();
    assert_eq!(s.layout, Some(Layout::Diesel));
    assert_eq!(
        versions(d.path()),
        ["00000000000000", "2018-01-14-171611", "2019-02-01-000000"]
    );
    assert!(s.migrations[1].transaction && !s.migrations[2].transaction);
    assert!(s.migrations[1].down.is_some());
}

#[test]
fn sqlx_files_simple_and_reversible() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "20220101000000_init.up.sql",
        b"CREATE TABLE a (id int);",
    );
    write(d.path(), "20220101000000_init.down.sql", b"DROP TABLE a;");
    write(d.path(), "3_plain.sql", b"-- no-transaction\nSELECT 1;");
    let s = read_dir(d.path(), None).unwrap();
    assert_eq!(s.layout, Some(Layout::Sqlx));
    assert_eq!(versions(d.path()), ["3", "20220101000000"]);
    assert!(
        !s.migrations[0].transaction,
        "sqlx's -- no-transaction header is honoured"
    );
    assert!(s.migrations[1].down.is_some());
}

#[test]
fn flyway_versioned_undo_and_repeatable() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "V1__init.sql", b"CREATE TABLE a (id int);");
    write(d.path(), "V1_1__more.sql", b"CREATE TABLE b (id int);");
    write(d.path(), "V1.10__later.sql", b"CREATE TABLE c (id int);");
    write(d.path(), "V2__two.sql", b"CREATE TABLE d (id int);");
    write(d.path(), "U2__two.sql", b"DROP TABLE d;");
    write(d.path(), "R__views.sql", b"CREATE VIEW v AS SELECT 1;");
    let s = read_dir(d.path(), None).unwrap();
    assert_eq!(versions(d.path()), ["1", "1.1", "1.10", "2", "R__views"]);
    assert!(s.migrations[3].down.is_some());
    assert!(s.migrations[4].is_repeatable());
}

#[test]
fn crlf_and_bom_variants_have_one_checksum() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "1_a/up.sql",
        b"CREATE TABLE a (id int);\nSELECT 1;\n",
    );
    let lf = read_dir(d.path(), None).unwrap().migrations[0]
        .checksum
        .clone();
    write(
        d.path(),
        "1_a/up.sql",
        b"\xEF\xBB\xBFCREATE TABLE a (id int);\r\nSELECT 1;\r\n",
    );
    assert_eq!(read_dir(d.path(), None).unwrap().migrations[0].checksum, lf);
}

fn err(root: &Path) -> String {
    match read_dir(root, None) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_input_names_the_file() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "V1_missing_double_underscore.sql", b"SELECT 1;");
    assert!(
        err(d.path()).contains("V1_missing_double_underscore.sql"),
        "{}",
        err(d.path())
    );

    let d = tempfile::tempdir().unwrap();
    write(d.path(), "12abc.sql", b"SELECT 1;");
    assert!(err(d.path()).contains("12abc.sql"));

    let d = tempfile::tempdir().unwrap();
    write(d.path(), "1_a/up.sql", b"SELECT 1;");
    write(d.path(), "01_b/up.sql", b"SELECT 1;");
    let e = err(d.path());
    assert!(e.contains("duplicate version") && e.contains("01_b"), "{e}");

    let d = tempfile::tempdir().unwrap();
    write(d.path(), "1_a/up.sql", b"SELECT 1;");
    write(
        d.path(),
        "1_a/migration.toml",
        b"description = \"unterminated\nschema_version = 1",
    );
    let e = err(d.path());
    assert!(e.contains("migration.toml") && e.contains("line"), "{e}");

    let d = tempfile::tempdir().unwrap();
    write(d.path(), "1_a/up.sql", b"SELECT 1;");
    write(d.path(), "1_a/migration.toml", b"desciption = \"typo\"\n");
    assert!(
        err(d.path()).contains("desciption"),
        "unknown keys are refused"
    );

    let d = tempfile::tempdir().unwrap();
    write(d.path(), "1_a/up.sql", b"SELECT \xFF;");
    assert!(err(d.path()).contains("UTF-8"));

    let d = tempfile::tempdir().unwrap();
    write(d.path(), "1_a/up.sql", b"SELECT 1;");
    write(d.path(), "2_b.sql", b"SELECT 1;");
    assert!(matches!(
        read_dir(d.path(), None),
        Err(Error::MixedLayouts { .. })
    ));
}

#[test]
fn depends_on_orders_and_cycles_are_named() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "1_a/up.sql", b"SELECT 1;");
    write(d.path(), "2_b/up.sql", b"SELECT 1;");
    write(d.path(), "2_b/migration.toml", b"depends_on = [\"3\"]\n");
    write(d.path(), "3_c/up.sql", b"SELECT 1;");
    write(d.path(), "3_c/migration.toml", b"depends_on = [\"1\"]\n");
    assert_eq!(versions(d.path()), ["1", "3", "2"]);

    write(d.path(), "1_a/migration.toml", b"depends_on = [\"2\"]\n");
    let e = err(d.path());
    assert!(
        e.contains("dependency cycle") && e.contains('1') && e.contains('2'),
        "{e}"
    );

    let d = tempfile::tempdir().unwrap();
    write(d.path(), "1_a/up.sql", b"SELECT 1;");
    write(d.path(), "1_a/migration.toml", b"depends_on = [\"7\"]\n");
    assert!(err(d.path()).contains("depends on 7"));
}

#[test]
fn malformed_data_migrations_are_refused_naming_the_file() {
    let cases: [(&[u8], &[u8], &str); 4] = [
        (
            b"UPDATE t SET x = 1;",
            b"kind = \"data\"\n[data]\ntable = \"t\"\nkey = \"id\"\n",
            "{batch}",
        ),
        (
            b"UPDATE t SET x = 1 WHERE {batch}",
            b"kind = \"data\"\n[data]\ntable = \"t\"\nkey = \"id\"\npause = \"5 parsecs\"\n",
            "invalid duration",
        ),
        (
            b"UPDATE t SET x = 1 WHERE {batch}",
            b"kind = \"data\"\n",
            "[data] table",
        ),
        (
            b"UPDATE t SET x = 1 WHERE {batch}",
            b"kind = \"data\"\n[data]\ntable = \"t\"\nkey = \"id\"\nbatch_size = 0\n",
            "batch_size",
        ),
    ];
    for (up, toml, expected) in cases {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "1_backfill/up.sql", up);
        write(d.path(), "1_backfill/migration.toml", toml);
        let e = err(d.path());
        assert!(e.contains(expected) && e.contains("1_backfill"), "{e}");
    }
}

#[test]
fn data_durations_are_checked_when_read_and_accept_every_unit() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "1_backfill/up.sql",
        b"UPDATE t SET x = 1 WHERE {batch}",
    );
    write(
        d.path(),
        "1_backfill/migration.toml",
        b"kind = \"data\"\n[data]\ntable = \"t\"\nkey = \"id\"\npause = \"5m\"\ntarget_batch_time = \"1s 500ms\"\n",
    );
    let s = instar_core::source::read_dir(d.path(), None).expect("read");
    let data = s.migrations[0].meta.data.as_ref().expect("[data]");
    assert_eq!(data.pause.as_ref().unwrap().value.as_secs(), 300);
    assert_eq!(
        data.target_batch_time.as_ref().unwrap().value.as_millis(),
        1500
    );
}

#[test]
fn a_data_script_is_one_statement_in_the_engines_own_dialect() {
    use instar_core::split::Dialect;
    let script = |sql: &str| instar_core::Script {
        path: "1_backfill/up.sql".into(),
        sql: sql.into(),
        original: None,
    };
    let two = script("UPDATE t SET x = 1 WHERE {batch}; DELETE FROM t;");
    let e = instar_core::source::check_data_statement(&two, Dialect::Sqlite).unwrap_err();
    assert!(
        e.to_string().contains("exactly one statement") && e.to_string().contains("1_backfill")
    );
    // `#` starts a comment on MySQL only: one statement there, two elsewhere.
    let hash = script("UPDATE t SET x = 1 WHERE {batch} # ; DELETE FROM t");
    assert!(instar_core::source::check_data_statement(&hash, Dialect::MySql).is_ok());
    assert!(instar_core::source::check_data_statement(&hash, Dialect::Postgres).is_err());
}
