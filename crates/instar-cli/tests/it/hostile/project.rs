//! Hostile projects: malformed config and metadata, odd layouts, bad flags.

use super::*;

pub(super) const CASES: &[Case] = &[
    Case {
        name: "lock timeout out of range",
        on: On::Every,
        setup: applied,
        args: &["up", "--lock-timeout", "99999999999999999999s"],
        code: 2,
        words: &["lock-timeout"],
    },
    Case {
        name: "negative duration",
        on: On::Every,
        setup: applied,
        args: &["up", "--lock-timeout=-5s"],
        code: 2,
        words: &["lock-timeout"],
    },
    Case {
        name: "unknown key in migration.toml",
        on: On::Every,
        setup: |d| meta(d, "SELECT 1;\n", "transactionn = false\n"),
        args: &["up"],
        code: 2,
        words: &["0002_b/migration.toml", "transactionn"],
    },
    Case {
        name: "malformed instar.toml",
        on: On::Sqlite,
        setup: |d| {
            empty(d);
            write(d, "instar.toml", "[database\nurl = \"sqlite:x.db\"\n");
        },
        args: &["status"],
        code: 2,
        words: &["instar.toml"],
    },
    Case {
        name: "password in a malformed instar.toml is masked",
        on: On::Sqlite,
        setup: |d| {
            empty(d);
            write(
                d,
                "instar.toml",
                "[database]\nurl = \"postgres://u:hunter2@h/db\n",
            );
        },
        args: &["status"],
        code: 2,
        words: &["instar.toml"],
    },
    Case {
        name: "init --example over a project",
        on: On::Sqlite,
        setup: applied,
        args: &["init", ".", "--example"],
        code: 2,
        words: &["already"],
    },
    Case {
        name: "plan --steps without --down",
        on: On::Every,
        setup: applied,
        args: &["plan", "--steps", "1"],
        code: 2,
        words: &["--steps", "--down"],
    },
    Case {
        name: "migrations path is a file",
        on: On::Sqlite,
        setup: |d| write(d, "migrations", "not a folder"),
        args: &["status"],
        code: 2,
        words: &["is a file", "--migrations"],
    },
    Case {
        name: "no migrations folder",
        on: On::Sqlite,
        setup: |_| {},
        args: &["status"],
        code: 2,
        words: &["not found", "instar init"],
    },
    Case {
        name: "config path is a folder",
        on: On::Sqlite,
        setup: empty,
        args: &["-c", "migrations", "status"],
        code: 2,
        words: &["migrations"],
    },
    Case {
        name: "duplicate versions",
        on: On::Every,
        setup: |d| {
            m(d, "0001_a", "SELECT 1;\n");
            m(d, "0001_b", "SELECT 2;\n");
        },
        args: &["plan"],
        code: 2,
        words: &["0001"],
    },
    Case {
        name: "a version with a 70-digit number is read exactly",
        on: On::Every,
        setup: |d| {
            m(
                d,
                "1234567890123456789012345678901234567890123456789012345678901234567890_x",
                "SELECT 1;\n",
            )
        },
        args: &["plan"],
        code: 0,
        words: &["1234567890123456789012345678901234567890123456789012345678901234567890"],
    },
    Case {
        name: "a folder with only a down.sql",
        on: On::Every,
        setup: |d| {
            applied(d);
            write(d, "migrations/0002_b/down.sql", "DROP TABLE b;\n");
        },
        args: &["up"],
        code: 2,
        words: &["0002_b", "no up.sql"],
    },
    Case {
        name: "a folder named with a letter O for a zero",
        on: On::Every,
        setup: |d| {
            applied(d);
            m(d, "O002_b", "CREATE TABLE b (x INT);\n");
        },
        args: &["status"],
        code: 2,
        words: &["O002_b", "version number"],
    },
    Case {
        name: "folder and sqlx layouts mixed",
        on: On::Every,
        setup: |d| {
            applied(d);
            write(d, "migrations/0002_b.sql", "CREATE TABLE b (x INT);\n");
        },
        args: &["status"],
        code: 2,
        words: &["0002_b.sql", "0001_a", "one layout"],
    },
    Case {
        name: "depends_on a version that does not exist",
        on: On::Every,
        setup: |d| meta(d, "CREATE TABLE b (x INT);\n", "depends_on = [\"0009\"]\n"),
        args: &["up"],
        code: 2,
        words: &["0002", "depends on 0009", "no migration file"],
    },
    Case {
        name: "depends_on that is not a list",
        on: On::Every,
        setup: |d| meta(d, "CREATE TABLE b (x INT);\n", "depends_on = \"0001\"\n"),
        args: &["up"],
        code: 2,
        words: &["0002_b/migration.toml", "line 1", "expected a sequence"],
    },
    Case {
        name: "an unknown migration kind",
        on: On::Every,
        setup: |d| meta(d, "CREATE TABLE b (x INT);\n", "kind = \"nosuch\"\n"),
        args: &["up"],
        code: 2,
        words: &[
            "0002_b/migration.toml",
            "nosuch",
            "expected one of `schema`, `data`, `documents`",
        ],
    },
    Case {
        name: "transaction that is not a boolean",
        on: On::Every,
        setup: |d| meta(d, "CREATE TABLE b (x INT);\n", "transaction = \"yes\"\n"),
        args: &["up"],
        code: 2,
        words: &["0002_b/migration.toml", "expected a boolean"],
    },
    Case {
        name: "a migration.toml cut short",
        on: On::Every,
        setup: |d| meta(d, "CREATE TABLE b (x INT);\n", "transaction = \n"),
        args: &["up"],
        code: 2,
        words: &["0002_b/migration.toml", "line 1"],
    },
    Case {
        name: "a misspelt config table",
        on: On::Sqlite,
        setup: |d| config(d, "[databse]\nurl = \"sqlite:other.db\"\n"),
        args: &["up"],
        code: 2,
        words: &["instar.toml", "unknown field `databse`", "expected one of"],
    },
    Case {
        name: "a lock timeout that is not a duration",
        on: On::Sqlite,
        setup: |d| config(d, "[run]\nlock_timeout = \"forever\"\n"),
        args: &["up"],
        code: 2,
        words: &["lock_timeout", "forever", "e.g. 500ms"],
    },
    Case {
        name: "a migrations dir that does not exist",
        on: On::Sqlite,
        setup: |d| config(d, "[migrations]\ndir = \"nowhere\"\n"),
        args: &["up"],
        code: 2,
        words: &["nowhere", "not found", "instar init"],
    },
    Case {
        name: "a database URL that is a number",
        on: On::Sqlite,
        setup: |d| config(d, "[database]\nurl = 5\n"),
        args: &["up"],
        code: 2,
        words: &["instar.toml", "line 2", "expected a string"],
    },
    Case {
        name: "a config file that is not UTF-8",
        on: On::Sqlite,
        setup: |d| {
            applied(d);
            write(d, "instar.toml", b"[database]\nurl = \"\xff\xfe\"\n");
        },
        args: &["up"],
        code: 2,
        words: &["instar.toml", "UTF-8"],
    },
    Case {
        name: "an unknown output format",
        on: On::Sqlite,
        setup: applied,
        args: &["--format", "yaml", "status"],
        code: 2,
        words: &["invalid value 'yaml'", "human, json"],
    },
    Case {
        name: "an error in JSON output",
        on: On::Every,
        setup: applied,
        args: &["--format", "json", "up", "--to", "0099"],
        code: 2,
        words: &["{\"error\":\"no migration has version 0099\"}"],
    },
    Case {
        name: "up --to version 0",
        on: On::Every,
        setup: applied,
        args: &["up", "--to", "0"],
        code: 2,
        words: &["no migration has version 0"],
    },
    Case {
        name: "an up.sql that is a dangling link",
        on: On::Sqlite,
        setup: |d| {
            applied(d);
            std::fs::create_dir_all(d.join("migrations/0002_b")).unwrap();
            std::os::unix::fs::symlink(d.join("nowhere.sql"), d.join("migrations/0002_b/up.sql"))
                .unwrap();
        },
        args: &["up"],
        code: 2,
        words: &["0002_b/up.sql", "No such file"],
    },
    Case {
        name: "an up script named in capitals",
        on: On::Sqlite,
        setup: |d| {
            applied(d);
            write(d, "migrations/0002_b/UP.SQL", "CREATE TABLE b (x INT);\n");
        },
        args: &["up"],
        code: 2,
        words: &["0002_b", "holds UP.SQL but no up.sql"],
    },
    Case {
        name: "a connect timeout of 0",
        on: On::Every,
        setup: applied,
        args: &["--connect-timeout", "0s", "up"],
        code: 2,
        words: &["connect timeout is 0", "at least 1s"],
    },
    Case {
        name: "a lock timeout in scientific notation",
        on: On::Sqlite,
        setup: |d| config(d, "[run]\nlock_timeout = \"1e3s\"\n"),
        args: &["up"],
        code: 2,
        words: &["lock_timeout", "1e3s", "e.g. 500ms"],
    },
    Case {
        name: "an unknown [run] setting",
        on: On::Sqlite,
        setup: |d| config(d, "[run]\nnosuch = 1\n"),
        args: &["up"],
        code: 2,
        words: &["instar.toml", "unknown field `nosuch`"],
    },
    Case {
        name: "a negative connect timeout",
        on: On::Sqlite,
        setup: |d| config(d, "[database]\nconnect_timeout = \"-1s\"\n"),
        args: &["up"],
        code: 2,
        words: &["connect_timeout", "negative"],
    },
    Case {
        name: "an unknown layout",
        on: On::Sqlite,
        setup: |d| config(d, "[migrations]\nlayout = \"nosuch\"\n"),
        args: &["up"],
        code: 2,
        words: &["unknown layout \"nosuch\"", "diesel"],
    },
    Case {
        name: "init_sql that is not a list",
        on: On::Sqlite,
        setup: |d| config(d, "[database]\ninit_sql = \"PRAGMA x\"\n"),
        args: &["up"],
        code: 2,
        words: &["instar.toml", "line 2"],
    },
    Case {
        name: "a migrations flag pointing nowhere",
        on: On::Sqlite,
        setup: applied,
        args: &["--migrations", "nowhere", "up"],
        code: 2,
        words: &["nowhere", "not found"],
    },
    Case {
        name: "a config flag naming a missing file",
        on: On::Sqlite,
        setup: applied,
        args: &["-c", "nosuch.toml", "up"],
        code: 2,
        words: &["config file", "nosuch.toml", "not found"],
    },
    Case {
        name: "an unknown flag with JSON output",
        on: On::Sqlite,
        setup: applied,
        args: &["--format", "json", "up", "--nosuch"],
        code: 2,
        words: &["{\"error\":", "unexpected argument '--nosuch'"],
    },
    Case {
        name: "a migration name with a space",
        on: On::Sqlite,
        setup: applied,
        args: &["new", "a b"],
        code: 2,
        words: &["\"a b\"", "use letters, digits"],
    },
    Case {
        name: "up --to a version that is not a number",
        on: On::Every,
        setup: applied,
        args: &["up", "--to", "abc"],
        code: 2,
        words: &["no migration has version abc"],
    },
    Case {
        name: "a step count that is not a number",
        on: On::Sqlite,
        setup: applied,
        args: &["plan", "--down", "--steps", "abc"],
        code: 2,
        words: &["invalid value 'abc'", "--steps"],
    },
    Case {
        name: "restore without a backup id",
        on: On::Sqlite,
        setup: applied,
        args: &["restore"],
        code: 2,
        words: &["required arguments", "<ID>"],
    },
    Case {
        name: "down --to a version that does not exist",
        on: On::Every,
        setup: applied,
        args: &["down", "--to", "0099"],
        code: 2,
        words: &["no migration has version 0099"],
    },
    Case {
        name: "baseline at a version that does not exist",
        on: On::Every,
        setup: |d| {
            m(d, "0001_a", "CREATE TABLE a (x INT);\n");
        },
        args: &["baseline", "0099"],
        code: 2,
        words: &["no migration has version 0099"],
    },
    Case {
        name: "an up.sql that is a folder",
        on: On::Sqlite,
        setup: |d| {
            applied(d);
            std::fs::create_dir_all(d.join("migrations/0002_b/up.sql")).unwrap();
        },
        args: &["up"],
        code: 2,
        words: &["0002_b/up.sql", "Is a directory"],
    },
    Case {
        name: "[checks] before that is not a list",
        on: On::Every,
        setup: |d| {
            meta(
                d,
                "CREATE TABLE b (x INT);\n",
                "[checks]\nbefore = \"SELECT 1\"\n",
            )
        },
        args: &["up"],
        code: 2,
        words: &["0002_b/migration.toml", "line 2", "expected a sequence"],
    },
];
