//! Hostile scripts: odd SQL, bad bytes, data migrations and checks that
//! cannot run.

use super::*;

pub(super) const CASES: &[Case] = &[
    Case {
        name: "unterminated block comment",
        on: On::Every,
        setup: |d| {
            applied(d);
            m(d, "0002_b", "CREATE TABLE b (x INT);\n/* never closed\n");
        },
        args: &["up"],
        code: 2,
        words: &["0002_b/up.sql:2", "unterminated"],
    },
    Case {
        name: "unterminated string",
        on: On::Every,
        setup: |d| {
            applied(d);
            m(d, "0002_b", "INSERT INTO a VALUES (1);\nSELECT 'open;\n");
        },
        args: &["up"],
        code: 2,
        words: &["0002_b/up.sql:2", "unterminated"],
    },
    Case {
        name: "own COMMIT in a transactional migration",
        on: On::Transactional,
        setup: |d| {
            applied(d);
            m(
                d,
                "0002_b",
                "CREATE TABLE b (x INT);\nCOMMIT;\nCREATE TABLE c (x INT);\n",
            );
        },
        args: &["up"],
        code: 2,
        words: &["0002_b/up.sql:2", "no-transaction"],
    },
    Case {
        name: "NUL byte in a script",
        on: On::Every,
        setup: |d| {
            applied(d);
            write(d, "migrations/0002_b/up.sql", b"SELECT 1;\nSELECT \0;\n");
        },
        args: &["up"],
        code: 2,
        words: &["0002_b/up.sql:2", "NUL"],
    },
    Case {
        name: "bad SQL mid-file rolls back",
        on: On::Transactional,
        setup: |d| {
            applied(d);
            m(
                d,
                "0002_b",
                "CREATE TABLE b (x INT);\nCREATE TABLE c (x INT,);\n",
            );
        },
        args: &["up"],
        code: 2,
        words: &["0002_b/up.sql:2", "rolled back"],
    },
    Case {
        name: "data migration with a bad duration",
        on: On::Every,
        setup: |d| {
            meta(
                d,
                "UPDATE a SET x = 1 WHERE {batch}\n",
                "kind = \"data\"\n[data]\ntable = \"a\"\nkey = \"x\"\npause = \"5 parsecs\"\n",
            )
        },
        args: &["plan"],
        code: 2,
        words: &["0002_b/migration.toml", "pause"],
    },
    Case {
        name: "not UTF-8",
        on: On::Every,
        setup: |d| {
            applied(d);
            write(
                d,
                "migrations/0002_b/up.sql",
                b"SELECT 1;\nSELECT '\xff\xfe';\n",
            );
        },
        args: &["up"],
        code: 2,
        words: &["0002_b/up.sql:2", "UTF-8", "save the file as UTF-8"],
    },
    Case {
        name: "a check that is false before",
        on: On::Every,
        setup: |d| {
            meta(
                d,
                "CREATE TABLE b (x INT);\n",
                "[checks]\nbefore = [\"SELECT count(*) = 1 FROM a\"]\n",
            )
        },
        args: &["up"],
        code: 2,
        words: &["0002", "check"],
    },
    Case {
        name: "a data migration on a table that does not exist",
        on: On::Every,
        setup: |d| {
            meta(
                d,
                "UPDATE nosuch SET x = 1 WHERE {batch}\n",
                "kind = \"data\"\n[data]\ntable = \"nosuch\"\nkey = \"id\"\n",
            )
        },
        args: &["up", "--no-backup"],
        code: 2,
        words: &["0002", "refused before any batch", "nosuch"],
    },
    Case {
        name: "a data migration whose key column does not exist",
        on: On::Every,
        setup: |d| {
            meta(
                d,
                "UPDATE a SET x = 1 WHERE {batch}\n",
                "kind = \"data\"\n[data]\ntable = \"a\"\nkey = \"nokey\"\n",
            )
        },
        args: &["up", "--no-backup"],
        code: 2,
        words: &["0002", "nokey"],
    },
    Case {
        name: "a check that returns text",
        on: On::Transactional,
        setup: |d| {
            applied(d);
            m(
                d,
                "0002_b",
                "CREATE TABLE b (x TEXT);\nINSERT INTO b VALUES ('abc');\n",
            );
            write(
                d,
                "migrations/0002_b/migration.toml",
                "[checks]\nafter = [\"SELECT x FROM b\"]\n",
            );
        },
        args: &["up", "--no-backup"],
        code: 2,
        words: &["returned 'abc'", "rolled back"],
    },
    Case {
        name: "a data migration without {batch}",
        on: On::Every,
        setup: |d| data(d, "", "UPDATE a SET x = x;\n"),
        args: &["up"],
        code: 2,
        words: &["0002_b/up.sql", "no {batch} placeholder"],
    },
    Case {
        name: "a data migration of two statements",
        on: On::Every,
        setup: |d| {
            data(
                d,
                "",
                "UPDATE a SET x = x WHERE {batch};\nUPDATE a SET x = 1 WHERE {batch};\n",
            )
        },
        args: &["up"],
        code: 2,
        words: &["0002_b/up.sql", "exactly one statement, found 2"],
    },
    Case {
        name: "a data migration with batch_size 0",
        on: On::Every,
        setup: |d| data(d, "batch_size = 0\n", "UPDATE a SET x = x WHERE {batch};\n"),
        args: &["up"],
        code: 2,
        words: &["0002_b/migration.toml", "batch_size must be at least 1"],
    },
    Case {
        name: "a data migration with an unknown error policy",
        on: On::Every,
        setup: |d| {
            data(
                d,
                "on_error = \"explode\"\n",
                "UPDATE a SET x = x WHERE {batch};\n",
            )
        },
        args: &["up"],
        code: 2,
        words: &["0002_b/migration.toml", "line 5", "explode"],
    },
    Case {
        name: "kind = data without a [data] table",
        on: On::Every,
        setup: |d| {
            meta(
                d,
                "UPDATE a SET x = x WHERE {batch};\n",
                "kind = \"data\"\n",
            )
        },
        args: &["up"],
        code: 2,
        words: &["0002_b/migration.toml", "needs a [data] table"],
    },
    Case {
        name: "an unknown [data] setting",
        on: On::Every,
        setup: |d| data(d, "nosuch = 1\n", "UPDATE a SET x = x WHERE {batch};\n"),
        args: &["up"],
        code: 2,
        words: &["0002_b/migration.toml", "line 5", "nosuch"],
    },
    Case {
        name: "a negative batch size",
        on: On::Every,
        setup: |d| {
            data(
                d,
                "batch_size = -1\n",
                "UPDATE a SET x = x WHERE {batch};\n",
            )
        },
        args: &["up"],
        code: 2,
        words: &["0002_b/migration.toml", "line 5", "batch_size"],
    },
    Case {
        name: "a pause that is not a duration",
        on: On::Every,
        setup: |d| {
            data(
                d,
                "pause = \"abc\"\n",
                "UPDATE a SET x = x WHERE {batch};\n",
            )
        },
        args: &["up"],
        code: 2,
        words: &["0002_b/migration.toml", "invalid duration \"abc\""],
    },
    Case {
        name: "a data table name holding SQL",
        on: On::Every,
        setup: |d| {
            meta(
                d,
                "UPDATE a SET x = x WHERE {batch};\n",
                "kind = \"data\"\n[data]\ntable = \"a; DROP TABLE a\"\nkey = \"x\"\n",
            )
        },
        args: &["up", "--no-backup"],
        code: 2,
        words: &["refused before any batch", "a; DROP TABLE a"],
    },
    Case {
        name: "bad SQL on the first line",
        on: On::Transactional,
        setup: |d| {
            applied(d);
            m(d, "0002_b", "SELEC 1;\nCREATE TABLE b (x INT);\n");
        },
        args: &["up", "--no-backup"],
        code: 2,
        words: &["0002_b/up.sql:1", "SELEC", "rolled back"],
    },
    Case {
        name: "bad SQL in a down script rolls back",
        on: On::Transactional,
        setup: applied_down,
        args: &["down", "--no-backup"],
        code: 2,
        words: &["0001_a/down.sql:2", "SELEC", "rolled back"],
    },
    Case {
        name: "an unterminated string in a down script",
        on: On::Every,
        setup: |d| {
            applied(d);
            write(
                d,
                "migrations/0001_a/down.sql",
                "DROP TABLE a;\nSELECT 'open;\n",
            );
        },
        args: &["down"],
        code: 2,
        words: &["0001_a/down.sql:2", "unterminated string"],
    },
    Case {
        name: "a NUL byte in a down script",
        on: On::Every,
        setup: |d| {
            applied(d);
            write(
                d,
                "migrations/0001_a/down.sql",
                "DROP TABLE a;\nSELECT '\0';\n",
            );
        },
        args: &["down"],
        code: 2,
        words: &["0001_a/down.sql:2", "NUL byte"],
    },
    Case {
        name: "a check that is not valid SQL",
        on: On::Every,
        setup: |d| {
            meta(
                d,
                "CREATE TABLE b (x INT);\n",
                "[checks]\nbefore = [\"SELEC 1\"]\n",
            )
        },
        args: &["up", "--no-backup"],
        code: 2,
        words: &["check before failed", "SELEC 1", "returned an error"],
    },
    Case {
        name: "an unterminated dollar quote",
        on: On::Postgres,
        setup: |d| {
            applied(d);
            m(d, "0002_b", "CREATE TABLE b (x INT);\nSELECT $$open;\n");
        },
        args: &["up"],
        code: 2,
        words: &["0002_b/up.sql:2", "unterminated $$ quote"],
    },
];

/// `applied`, then `0002_b`, a data migration over table `a` keyed by `x`,
/// with `extra` lines in its `[data]` table.
fn data(d: &Ctx, extra: &str, sql: &str) {
    meta(
        d,
        sql,
        &format!("kind = \"data\"\n[data]\ntable = \"a\"\nkey = \"x\"\n{extra}"),
    );
}
