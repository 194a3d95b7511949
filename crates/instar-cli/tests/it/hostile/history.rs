//! Hostile databases: history that disagrees with the files, damaged or
//! foreign history tables, files that are not databases.

use super::*;

pub(super) const CASES: &[Case] = &[
    Case {
        name: "checksum mismatch",
        on: On::Every,
        setup: |d| {
            applied(d);
            m(d, "0001_a", "CREATE TABLE a (y INT);\n");
        },
        args: &["up"],
        code: 2,
        words: &[
            "0001",
            "edited after it was applied",
            "repair --accept-checksums",
        ],
    },
    Case {
        name: "database newer than the files",
        on: On::Every,
        setup: |d| {
            applied(d);
            std::fs::remove_dir_all(d.join("migrations/0001_a")).unwrap();
        },
        args: &["up"],
        code: 2,
        words: &["newer than these migration files", "0001"],
    },
    Case {
        name: "empty history table name",
        on: On::Sqlite,
        setup: |d| {
            empty(d);
            write(d, "instar.toml", "[database]\nhistory_table = \"\"\n");
        },
        args: &["up"],
        code: 2,
        words: &["history_table"],
    },
    Case {
        name: "a file that is not a SQLite database",
        on: On::Sqlite,
        setup: |d| {
            empty(d);
            write(d, "instar.db", [7u8; 4096]);
        },
        args: &["up"],
        code: 2,
        words: &["instar.db", "not a SQLite database"],
    },
    Case {
        name: "a truncated SQLite database",
        on: On::Sqlite,
        setup: |d| {
            for i in 1..=40 {
                m(
                    d,
                    &format!("{i:04}_t{i}"),
                    &format!("CREATE TABLE t{i} (x INT, y TEXT);\nINSERT INTO t{i} VALUES ({i}, '{}');\n", "x".repeat(3000)),
                );
            }
            d.instar().args(["up", "--no-backup"]).assert().success();
            let db = d.join("instar.db");
            let len = std::fs::metadata(&db).unwrap().len();
            let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
            f.set_len(len / 3).unwrap();
            m(d, "0041_more", "CREATE TABLE more (x INT);\n");
        },
        args: &["up", "--no-backup"],
        code: 2,
        words: &["instar.db", "restore a backup"],
    },
    Case {
        name: "a read-only SQLite URL",
        on: On::Sqlite,
        setup: |d| {
            applied(d);
            m(d, "0002_b", "CREATE TABLE b (x INT);\n");
        },
        args: &[
            "--database",
            "sqlite:instar.db?mode=ro",
            "up",
            "--no-backup",
        ],
        code: 2,
        words: &["instar.db", "cannot be written"],
    },
    Case {
        name: "an unsupported SQLite URL parameter",
        on: On::Sqlite,
        setup: applied,
        args: &["--database", "sqlite:instar.db?cache=shared", "status"],
        code: 2,
        words: &["cache=shared", "mode=ro"],
    },
    Case {
        name: "restore of an unknown backup",
        on: On::Every,
        setup: applied,
        args: &["restore", "20990101T000000Z", "--force"],
        code: 2,
        words: &["no backup", "instar backups"],
    },
    Case {
        name: "down past an irreversible migration",
        on: On::Every,
        setup: applied,
        args: &["down"],
        code: 2,
        words: &["0001", "no down script"],
    },
    Case {
        name: "baseline over an existing history",
        on: On::Every,
        setup: applied,
        args: &["baseline", "0001"],
        code: 2,
        words: &["history"],
    },
    Case {
        name: "up --to a version that does not exist",
        on: On::Every,
        setup: applied,
        args: &["up", "--to", "0099"],
        code: 2,
        words: &["0099"],
    },
    Case {
        name: "a SQLite history schema that is not attached",
        on: On::Sqlite,
        setup: |d| config(d, "[database]\nhistory_schema = \"nosuch\"\n"),
        args: &["status"],
        code: 2,
        words: &["history_schema", "nosuch", "ATTACH"],
    },
    Case {
        name: "an applied row without a checksum",
        on: On::Every,
        setup: |d| {
            applied(d);
            d.sql("UPDATE instar_history SET checksum = NULL");
        },
        args: &["up"],
        code: 2,
        words: &["instar_history", "checksum", "version 0001", "is NULL"],
    },
    Case {
        name: "a history version that is not text",
        on: On::Sqlite,
        setup: |d| {
            applied(d);
            d.sql("UPDATE instar_history SET version = x'FF00'");
        },
        args: &["status"],
        code: 2,
        words: &["instar_history", "version of the row with id", "not text"],
    },
    Case {
        name: "a history direction that is neither up nor down",
        on: On::Every,
        setup: |d| {
            applied(d);
            d.sql("UPDATE instar_history SET direction = 'sideways'");
        },
        args: &["up"],
        code: 2,
        words: &["direction", "sideways", "not up or down"],
    },
    Case {
        name: "a history event this Instar does not know",
        on: On::Every,
        setup: |d| {
            applied(d);
            d.sql("UPDATE instar_history SET event = 'boom'");
        },
        args: &["status"],
        code: 2,
        words: &["event", "boom", "newer one"],
    },
    Case {
        name: "a statement count that is not a number",
        on: On::Sqlite,
        setup: |d| {
            applied(d);
            d.sql("UPDATE instar_history SET statements_applied = 'many'");
        },
        args: &["status"],
        code: 2,
        words: &["statements_applied", "not an integer"],
    },
    Case {
        name: "another tool's table under the history's name",
        on: On::Every,
        setup: |d| {
            empty(d);
            m(d, "0001_a", "CREATE TABLE a (x INT);\n");
            if d.url.is_none() {
                write(d, "instar.db", "");
            }
            d.sql("CREATE TABLE instar_history (id INT, migration VARCHAR(50))");
        },
        args: &["up"],
        code: 2,
        words: &["not an Instar history table", "history_table"],
    },
    Case {
        name: "a view under the history's name",
        on: On::Every,
        setup: |d| {
            m(d, "0001_a", "CREATE TABLE a (x INT);\n");
            if d.url.is_none() {
                write(d, "instar.db", "");
            }
            d.sql("CREATE VIEW instar_history AS SELECT 1 AS id");
        },
        args: &["up"],
        code: 2,
        words: &["not an Instar history table", "history_table"],
    },
    Case {
        name: "a MySQL history schema that does not exist",
        on: On::MySql,
        setup: |d| {
            config(
                d,
                "[database]\nhistory_schema = \"instar_no_such_database\"\n",
            )
        },
        args: &["up"],
        code: 2,
        words: &[
            "history_schema",
            "instar_no_such_database",
            "create it first",
        ],
    },
    Case {
        name: "a dirty migration",
        on: On::Every,
        setup: dirty,
        args: &["up"],
        code: 2,
        words: &["0002 is dirty", "statement hashes", "instar repair"],
    },
    Case {
        name: "status --check with a dirty migration",
        on: On::Every,
        setup: dirty,
        args: &["status", "--check"],
        code: 1,
        words: &["dirty", "0002"],
    },
    Case {
        name: "validate with a dirty migration",
        on: On::Every,
        setup: dirty,
        args: &["validate"],
        code: 1,
        words: &["0002 is dirty"],
    },
    Case {
        name: "a history row deleted by hand",
        on: On::Every,
        setup: |d| {
            two_applied(d);
            d.sql("DELETE FROM instar_history WHERE version = '0001'");
        },
        args: &["validate"],
        code: 1,
        words: &["0001", "older than the newest applied migration 0002"],
    },
    Case {
        name: "validate after an applied file was edited",
        on: On::Every,
        setup: |d| {
            applied(d);
            m(d, "0001_a", "CREATE TABLE a (y INT);\n");
        },
        args: &["validate"],
        code: 1,
        words: &["0001", "edited after it was applied"],
    },
];

/// `applied`, then `0002_b` half run by hand: a `start` row without its end.
fn dirty(d: &Ctx) {
    applied(d);
    m(
        d,
        "0002_b",
        "CREATE TABLE b (x INT);\nCREATE TABLE c (x INT);\n",
    );
    d.sql("INSERT INTO instar_history (version, name, event, direction, kind, started_at, statements_applied, statements_total, operator, tool_version) VALUES ('0002', 'b', 'start', 'up', 'schema', '2026-01-01T00:00:00Z', 1, 2, 'x', '0.2.0')");
}

/// Two applied migrations, `0001_a` and `0002_b`.
fn two_applied(d: &Ctx) {
    applied(d);
    m(d, "0002_b", "CREATE TABLE b (x INT);\n");
    d.instar().args(["up", "--no-backup"]).assert().success();
}
