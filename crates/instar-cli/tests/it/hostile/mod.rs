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
    /// PostgreSQL and MySQL: faults only a server has.
    Servers,
    /// MySQL only (PostgreSQL here trusts every password).
    MySql,
    /// PostgreSQL only (its dollar quotes).
    Postgres,
}

impl On {
    fn includes(self, b: Backend) -> bool {
        match self {
            On::Sqlite => b == Backend::Sqlite,
            On::Every => true,
            On::Transactional => b != Backend::MySql,
            On::Servers => b != Backend::Sqlite,
            On::MySql => b == Backend::MySql,
            On::Postgres => b == Backend::Postgres,
        }
    }
}

/// Where a case runs: its folder, and the server database it is pointed at
/// (through `INSTAR_DATABASE_URL`; `None` for the project's own SQLite file).
struct Ctx<'a> {
    dir: &'a Path,
    url: Option<&'a str>,
    /// Where the command is pointed instead, when the setup says so.
    point_at: std::cell::RefCell<Option<String>>,
}

impl std::ops::Deref for Ctx<'_> {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.dir
    }
}

impl Ctx<'_> {
    /// Runs `sql` on the case's database outside Instar (to damage it on
    /// purpose): the project's SQLite file, or the server database.
    fn sql(&self, sql: &str) {
        let Some(url) = self.url else {
            let c = rusqlite::Connection::open(self.dir.join("instar.db")).unwrap();
            return c.execute_batch(sql).expect(sql);
        };
        let driver_url = instar_db::url::DbUrl::parse(url).unwrap().driver_url;
        // The case runs inside the test's runtime: a thread of its own has its own.
        std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    sqlx::any::install_default_drivers();
                    let mut c = <sqlx::AnyConnection as sqlx::Connection>::connect(&driver_url)
                        .await
                        .unwrap();
                    sqlx::raw_sql(sql).execute(&mut c).await.expect(sql);
                    let _ = sqlx::Connection::close(c).await;
                })
            })
            .join()
            .unwrap()
        })
    }

    fn instar(&self) -> assert_cmd::Command {
        let mut c = crate::instar_in(self.dir);
        if let Some(url) = self.point_at.borrow().as_deref().or(self.url) {
            c.env("INSTAR_DATABASE_URL", url);
        }
        c
    }

    /// Points the case's command at the same server's database `name` (one
    /// that does not exist: the case's own database stays the one that must
    /// not change), or with `password`.
    fn point_at_other(&self, name: Option<&str>, password: Option<&str>) {
        let mut u = url::Url::parse(self.url.expect("a server case")).unwrap();
        if let Some(name) = name {
            u.set_path(name);
        }
        if password.is_some() {
            u.set_password(password).unwrap();
        }
        *self.point_at.borrow_mut() = Some(u.to_string());
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

/// `applied`, with a down script whose second statement is bad SQL.
fn applied_down(c: &Ctx) {
    applied(c);
    write(c, "migrations/0001_a/down.sql", "DROP TABLE a;\nSELEC 1;\n");
}

/// `applied`, then migration `0002_b` with `sql` and its `migration.toml`.
fn meta(c: &Ctx, sql: &str, toml: &str) {
    applied(c);
    m(c, "0002_b", sql);
    write(c, "migrations/0002_b/migration.toml", toml);
}

/// `applied`, then `instar.toml` holding `toml`.
fn config(c: &Ctx, toml: &str) {
    applied(c);
    write(c, "instar.toml", toml);
}

fn m(dir: &Path, name: &str, sql: &str) {
    write(dir, &format!("migrations/{name}/up.sql"), sql);
}

fn empty(c: &Ctx) {
    std::fs::create_dir_all(c.join("migrations")).unwrap();
}

mod connect;
mod dump;
mod history;
mod project;
mod scripts;

/// The cases whose migration began (and failed or was refused by its own
/// check): a backup taken before it is right. Every other case is refused
/// before anything runs, and takes none.
const RAN: &[&str] = &[
    "bad SQL mid-file rolls back",
    "a check that is false before",
];

/// Every case, each group in its own file.
fn cases() -> impl Iterator<Item = &'static Case> {
    scripts::CASES
        .iter()
        .chain(history::CASES)
        .chain(project::CASES)
        .chain(connect::CASES)
}

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

/// Runs every case of `b`'s on a fresh database each.
async fn every_case_on(b: Backend) {
    let mut failures = Vec::new();
    let cases: Vec<&Case> = cases().filter(|c| c.on.includes(b)).collect();
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
            point_at: Default::default(),
        };
        (case.setup)(&ctx);
        let dump = async || match &server {
            Some(t) => Some(dump::server_snapshot(t).await),
            None => dump::snapshot(d.path()),
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
        if d.path().join(".instar/backups").exists() && !RAN.contains(&case.name) {
            wrong.push("a backup was taken for a run refused before it began".into());
        }
        let after = dump().await;
        if after != before {
            let gone: Vec<_> = before
                .iter()
                .flatten()
                .filter(|l| !after.iter().flatten().any(|x| x == *l))
                .collect();
            let new: Vec<_> = after
                .iter()
                .flatten()
                .filter(|l| !before.iter().flatten().any(|x| x == *l))
                .collect();
            wrong.push(format!(
                "the database changed (gone: {gone:?}; new: {new:?})"
            ));
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
