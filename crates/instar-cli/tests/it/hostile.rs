//! Hostile inputs, one table row each: a project set up wrong, a command, the
//! exit code and the words the message must hold, and proof that nothing was
//! written (the SQLite file byte for byte as before, or still absent).
//!
//! The engine-specific faults (kills, concurrent runners, servers) are in
//! `faults.rs`, `kills.rs` and the instar-db conformance suite.

use std::path::Path;

use crate::harness::{Backend, TestDb};

/// The engines a case runs on.
#[derive(Clone, Copy, PartialEq)]
enum On {
    /// The embedded default only: files, config, flags, SQLite's own faults.
    Sqlite,
    /// SQLite, PostgreSQL and MySQL.
    Every,
    /// The engines whose DDL rolls back (SQLite, PostgreSQL): MySQL commits
    /// DDL by itself, and its failures end dirty instead (`faults.rs`).
    Transactional,
}

impl On {
    fn includes(self, b: Backend) -> bool {
        match self {
            On::Sqlite => b == Backend::Sqlite,
            On::Every => true,
            On::Transactional => b != Backend::MySql,
        }
    }
}

/// Where a case runs: its folder, and the server database it is pointed at
/// (through `INSTAR_DATABASE_URL`; `None` for the project's own SQLite file).
struct Ctx<'a> {
    dir: &'a Path,
    url: Option<&'a str>,
}

impl std::ops::Deref for Ctx<'_> {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.dir
    }
}

impl Ctx<'_> {
    fn instar(&self) -> assert_cmd::Command {
        let mut c = crate::instar_in(self.dir);
        if let Some(url) = self.url {
            c.env("INSTAR_DATABASE_URL", url);
        }
        c
    }
}

/// One case.
struct Case {
    name: &'static str,
    on: On,
    /// Writes the project (migrations, config, database) into the folder.
    setup: fn(&Ctx),
    args: &'static [&'static str],
    code: i32,
    /// Each must appear in stdout or stderr (case-insensitive).
    words: &'static [&'static str],
}

fn write(dir: &Path, path: &str, text: impl AsRef<[u8]>) {
    let p = dir.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

use crate::instar_in as instar;

/// A project with one applied migration (`0001_a`), whose database then exists.
fn applied(c: &Ctx) {
    write(c, "migrations/0001_a/up.sql", "CREATE TABLE a (x INT);\n");
    c.instar().args(["up", "--no-backup"]).assert().success();
}

fn m(dir: &Path, name: &str, sql: &str) {
    write(dir, &format!("migrations/{name}/up.sql"), sql);
}

fn empty(c: &Ctx) {
    std::fs::create_dir_all(c.join("migrations")).unwrap();
}

const CASES: &[Case] = &[
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
        name: "data migration with a bad duration",
        on: On::Every,
        setup: |d| {
            applied(d);
            m(d, "0002_d", "UPDATE a SET x = 1 WHERE {batch}\n");
            write(
                d,
                "migrations/0002_d/migration.toml",
                "kind = \"data\"\n[data]\ntable = \"a\"\nkey = \"x\"\npause = \"5 parsecs\"\n",
            );
        },
        args: &["plan"],
        code: 2,
        words: &["0002_d/migration.toml", "pause"],
    },
    Case {
        name: "unknown key in migration.toml",
        on: On::Every,
        setup: |d| {
            applied(d);
            m(d, "0002_b", "SELECT 1;\n");
            write(
                d,
                "migrations/0002_b/migration.toml",
                "transactionn = false\n",
            );
        },
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
        name: "a version with a 70-digit number",
        on: On::Every,
        setup: |d| {
            m(
                d,
                "1234567890123456789012345678901234567890123456789012345678901234567890_x",
                "SELECT 1;\n",
            )
        },
        args: &["plan"],
        code: 2,
        words: &["too long", "at most 38 digits"],
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
            applied(d);
            m(d, "0002_b", "CREATE TABLE b (x INT);\n");
            write(
                d,
                "migrations/0002_b/migration.toml",
                "[checks]\nbefore = [\"SELECT count(*) = 1 FROM a\"]\n",
            );
        },
        args: &["up"],
        code: 2,
        words: &["0002", "check"],
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
        name: "a data migration on a table that does not exist",
        on: On::Every,
        setup: |d| {
            applied(d);
            m(d, "0002_d", "UPDATE nosuch SET x = 1 WHERE {batch}\n");
            write(
                d,
                "migrations/0002_d/migration.toml",
                "kind = \"data\"\n[data]\ntable = \"nosuch\"\nkey = \"id\"\n",
            );
        },
        args: &["up", "--no-backup"],
        code: 2,
        words: &["0002", "refused before any batch", "nosuch"],
    },
    Case {
        name: "a data migration whose key column does not exist",
        on: On::Every,
        setup: |d| {
            applied(d);
            m(d, "0002_d", "UPDATE a SET x = 1 WHERE {batch}\n");
            write(
                d,
                "migrations/0002_d/migration.toml",
                "kind = \"data\"\n[data]\ntable = \"a\"\nkey = \"nokey\"\n",
            );
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
        name: "a SQLite history schema that is not attached",
        on: On::Sqlite,
        setup: |d| {
            applied(d);
            write(
                d,
                "instar.toml",
                "[database]\nhistory_schema = \"nosuch\"\n",
            );
        },
        args: &["status"],
        code: 2,
        words: &["history_schema", "nosuch", "ATTACH"],
    },
];

/// Commands with nothing to do on a project without a database create none.
#[test]
fn commands_with_nothing_to_do_create_no_database() {
    for args in [
        &["status"][..],
        &["plan"],
        &["validate"],
        &["history"],
        &["verify"],
        &["repair"],
        &["repair", "--accept-checksums", "--reason", "x"],
    ] {
        let d = tempfile::tempdir().unwrap();
        m(d.path(), "0001_a", "CREATE TABLE a (x INT);\n");
        let out = instar(d.path()).args(args).output().unwrap();
        assert!(
            out.status.code().is_some_and(|c| c <= 1),
            "{args:?}: {out:?}"
        );
        assert!(
            !d.path().join("instar.db").exists(),
            "{args:?} created the database"
        );
    }
}

/// What the database holds, or `None` when its file does not exist: every
/// object's SQL and every row of every table, as text (a dump). The `fail`
/// rows a failed run appends to the history are Instar's record of the
/// failure and are left out; a file SQLite cannot read is compared byte for byte.
fn snapshot(dir: &Path) -> Option<Vec<String>> {
    let path = dir.join("instar.db");
    let bytes = std::fs::read(&path).ok()?;
    let dump = || -> rusqlite::Result<Vec<String>> {
        let c = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        let mut out = Vec::new();
        let mut objects = c.prepare("SELECT type, name, sql FROM sqlite_master ORDER BY name")?;
        let rows: Vec<(String, String, Option<String>)> = objects
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        for (kind, name, sql) in rows {
            out.push(format!("{kind} {name}: {}", sql.unwrap_or_default()));
            if kind != "table" {
                continue;
            }
            let filter = if name == "instar_history" {
                " WHERE event <> 'fail'"
            } else {
                ""
            };
            let mut q = c.prepare(&format!("SELECT * FROM \"{name}\"{filter} ORDER BY rowid"))?;
            let width = q.column_count();
            let mut rs = q.query([])?;
            while let Some(r) = rs.next()? {
                let cells: Vec<String> = (0..width)
                    .map(|i| format!("{:?}", r.get_ref(i).map(rusqlite::types::Value::from)))
                    .collect();
                out.push(format!("{name}: {}", cells.join(" | ")));
            }
        }
        Ok(out)
    };
    Some(dump().unwrap_or_else(|_| vec![format!("{bytes:?}")]))
}

/// What a server database holds: every table's columns and rows and every
/// index, as text (a dump), the history's `fail` rows left out as above.
async fn server_snapshot(t: &TestDb) -> Vec<String> {
    let mut c = t.raw().await;
    let pg = t.backend == Backend::Postgres;
    let (columns, indexes) = if pg {
        (
            "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns WHERE table_schema = current_schema() ORDER BY 1, ordinal_position",
            "SELECT indexdef::text FROM pg_indexes WHERE schemaname = current_schema() ORDER BY 1",
        )
    } else {
        (
            "SELECT CONVERT(table_name USING utf8mb4), CONVERT(column_name USING utf8mb4), CONVERT(column_type USING utf8mb4) FROM information_schema.columns WHERE table_schema = DATABASE() ORDER BY 1, ordinal_position",
            "SELECT CONVERT(CONCAT_WS(' ', table_name, index_name, seq_in_index, column_name) USING utf8mb4) FROM information_schema.statistics WHERE table_schema = DATABASE() ORDER BY 1",
        )
    };
    let mut out = Vec::new();
    let mut tables: Vec<(String, Vec<String>)> = Vec::new();
    for r in sqlx::query(columns).fetch_all(&mut c).await.expect(columns) {
        let (table, column, kind) = (text(&r, 0), text(&r, 1), text(&r, 2));
        out.push(format!("column {table}.{column} {kind}"));
        match tables.last_mut() {
            Some((name, cols)) if *name == table => cols.push(column),
            _ => tables.push((table, vec![column])),
        }
    }
    for r in sqlx::query(indexes).fetch_all(&mut c).await.expect(indexes) {
        out.push(format!("index {}", text(&r, 0)));
    }
    for (table, cols) in tables {
        let q = if pg { '"' } else { '`' };
        let cells: Vec<String> = cols
            .iter()
            .map(|col| {
                if pg {
                    format!("COALESCE(CAST({q}{col}{q} AS TEXT), 'NULL')")
                } else {
                    format!("COALESCE(CONVERT({q}{col}{q} USING utf8mb4), 'NULL')")
                }
            })
            .collect();
        let row = if pg {
            format!("concat_ws(' | ', {})", cells.join(", "))
        } else {
            format!("CONVERT(CONCAT_WS(' | ', {}) USING utf8mb4)", cells.join(", "))
        };
        let filter = if table == "instar_history" { " WHERE event <> 'fail'" } else { "" };
        let sql = format!("SELECT {row} FROM {q}{table}{q}{filter} ORDER BY 1");
        for r in sqlx::query(&sql).fetch_all(&mut c).await.expect(&sql) {
            out.push(format!("{table}: {}", text(&r, 0)));
        }
    }
    let _ = sqlx::Connection::close(c).await;
    out
}

/// Column `i` as text: MySQL's long text comes to the Any driver as a BLOB.
fn text(r: &sqlx::any::AnyRow, i: usize) -> String {
    use sqlx::Row;
    r.try_get::<String, _>(i)
        .or_else(|_| r.try_get::<Vec<u8>, _>(i).map(|b| String::from_utf8_lossy(&b).into_owned()))
        .expect("a text column")
}

/// Runs every case of `b`'s on a fresh database each.
async fn every_case_on(b: Backend) {
    let mut failures = Vec::new();
    let cases: Vec<&Case> = CASES.iter().filter(|c| c.on.includes(b)).collect();
    for case in &cases {
        let server = match b {
            Backend::Sqlite => None,
            _ => match TestDb::new(b, "hostile").await {
                Some(t) => Some(t),
                None => return,
            },
        };
        let d = tempfile::tempdir().unwrap();
        let ctx = Ctx {
            dir: d.path(),
            url: server.as_ref().map(|t| t.url.as_str()),
        };
        (case.setup)(&ctx);
        let dump = async || match &server {
            Some(t) => Some(server_snapshot(t).await),
            None => snapshot(d.path()),
        };
        let before = dump().await;
        let out = ctx.instar().args(case.args).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let lower = text.to_lowercase();
        let mut wrong = Vec::new();
        if out.status.code() != Some(case.code) {
            wrong.push(format!(
                "exit {:?}, expected {}",
                out.status.code(),
                case.code
            ));
        }
        for w in case.words {
            if !lower.contains(&w.to_lowercase()) {
                wrong.push(format!("no {w:?} in the message"));
            }
        }
        if text.contains("hunter2") {
            wrong.push("the password is shown".into());
        }
        if server.is_some() && d.path().join("instar.db").exists() {
            wrong.push("a SQLite file was created beside a server database".into());
        }
        let after = dump().await;
        if after != before {
            let gone: Vec<_> = before.iter().flatten().filter(|l| !after.iter().flatten().any(|x| x == *l)).collect();
            let new: Vec<_> = after.iter().flatten().filter(|l| !before.iter().flatten().any(|x| x == *l)).collect();
            wrong.push(format!("the database changed (gone: {gone:?}; new: {new:?})"));
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{}: {}\n    output: {}",
                case.name,
                wrong.join("; "),
                text.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} hostile inputs misbehave on {b:?}:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

mod every_hostile_input_is_a_clear_error_and_writes_nothing {
    use super::{every_case_on, Backend};

    #[tokio::test]
    async fn sqlite() {
        every_case_on(Backend::Sqlite).await
    }
    #[tokio::test]
    async fn postgres() {
        every_case_on(Backend::Postgres).await
    }
    #[tokio::test]
    async fn mysql() {
        every_case_on(Backend::MySql).await
    }
}

/// `2_b` renamed `02_b` after it was applied is the same migration (versions
/// compare by number everywhere): not pending, not re-run, still revertible.
#[test]
fn a_renamed_applied_folder_is_still_applied() {
    let d = tempfile::tempdir().unwrap();
    m(d.path(), "1_a", "CREATE TABLE a (x INT);\n");
    m(d.path(), "2_b", "CREATE TABLE b (x INT);\n");
    write(d.path(), "migrations/2_b/down.sql", "DROP TABLE b;\n");
    instar(d.path()).args(["up"]).assert().success();
    std::fs::rename(
        d.path().join("migrations/2_b"),
        d.path().join("migrations/02_b"),
    )
    .unwrap();
    let status = instar(d.path()).args(["status"]).output().unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("2 applied, 0 pending"), "{text}");
    instar(d.path()).args(["validate"]).assert().code(0);
    let up = instar(d.path()).args(["up"]).output().unwrap();
    assert_eq!(up.status.code(), Some(0), "{up:?}");
    assert!(String::from_utf8_lossy(&up.stdout).contains("nothing to do"));
    instar(d.path()).args(["down"]).assert().success();
    let text = String::from_utf8_lossy(&instar(d.path()).args(["status"]).output().unwrap().stdout)
        .into_owned();
    assert!(text.contains("1 applied, 1 pending"), "{text}");
}
