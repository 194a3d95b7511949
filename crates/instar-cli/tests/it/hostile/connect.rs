//! Hostile connections: URLs that cannot work, servers that do not answer or
//! refuse, databases that do not exist.

use super::*;

pub(super) const CASES: &[Case] = &[
    Case {
        name: "an empty database URL",
        on: On::Sqlite,
        setup: empty,
        args: &["--database", "", "status"],
        code: 2,
        words: &["invalid database URL", "no SQLite file given"],
    },
    Case {
        name: "a database URL of an engine Instar does not run",
        on: On::Sqlite,
        setup: empty,
        args: &["--database", "oracle://db.example/app", "status"],
        code: 2,
        words: &["unknown scheme", "sqlite:, postgres:// or mysql://"],
    },
    Case {
        name: "a port nothing listens on",
        on: On::Sqlite,
        setup: applied,
        args: &["--database", "postgres://postgres@127.0.0.1:1/app", "up"],
        code: 2,
        words: &["cannot connect", "nothing listens there"],
    },
    Case {
        name: "a host name that does not resolve",
        on: On::Sqlite,
        setup: applied,
        args: &["--database", "mysql://root@no-such-host.invalid/app", "up"],
        code: 2,
        words: &["cannot connect", "host name is unknown"],
    },
    Case {
        name: "a server database that does not exist",
        on: On::Servers,
        setup: |d| {
            applied(d);
            d.point_at_other(Some("instar_no_such_database"), None);
        },
        args: &["up"],
        code: 2,
        words: &["instar_no_such_database", "create the database first"],
    },
    Case {
        name: "a wrong password",
        on: On::MySql,
        setup: |d| {
            applied(d);
            d.point_at_other(None, Some("hunter2"));
        },
        args: &["up"],
        code: 2,
        words: &["access denied", "check the user and password"],
    },
    Case {
        name: "a bare word as the database URL",
        on: On::Sqlite,
        setup: applied,
        args: &["--database", "garbage", "up"],
        code: 2,
        words: &["not a database URL", "sqlite:garbage"],
    },
    Case {
        name: "a server address without its scheme",
        on: On::Sqlite,
        setup: applied,
        args: &["--database", "localhost:5432/app", "up"],
        code: 2,
        words: &["unknown scheme"],
    },
    Case {
        name: "a SQLite URL that names a folder",
        on: On::Sqlite,
        setup: applied,
        args: &["--database", "sqlite:migrations", "up"],
        code: 2,
        words: &["is a folder", "sqlite:"],
    },
    Case {
        name: "a SQLite file in a folder that does not exist",
        on: On::Sqlite,
        setup: applied,
        args: &["--database", "sqlite:nowhere/x.db", "up"],
        code: 2,
        words: &["nowhere/x.db", "check that its folder exists"],
    },
    Case {
        name: "a mistyped URL in the environment",
        on: On::Sqlite,
        setup: |d| {
            applied(d);
            *d.point_at.borrow_mut() = Some("mysql:app".into());
        },
        args: &["up"],
        code: 2,
        words: &["mysql:app", "unknown scheme"],
    },
    Case {
        name: "init_sql that fails",
        on: On::Every,
        setup: |d| config(d, "[database]\ninit_sql = [\"SELEC 1\"]\n"),
        args: &["up"],
        code: 2,
        words: &["init_sql", "SELEC"],
    },
];
