//! A fresh database per test: a temp-dir SQLite file, or a new PostgreSQL /
//! MySQL database created from the URL in INSTAR_TEST_POSTGRES_URL /
//! INSTAR_TEST_MYSQL_URL and dropped when the test ends (even on panic).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use instar_core::event::NullSink;
use instar_core::plan::Target;
use instar_core::Source;
use instar_db::runner::{self, Report, RunOptions};
use instar_db::{Db, Error, Settings};
use sqlx::{AnyConnection, Connection};

/// Instantiates each named `async fn(Backend)` as a test per engine
/// (`sqlite::name`, `postgres::name`, `mysql::name`). The invoking module must
/// have `Backend` in scope.
#[allow(unused_macros)]
macro_rules! on_every_engine {
    ($($t:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test] async fn $t() { super::$t(super::Backend::Sqlite).await } )* }
        mod postgres { $( #[tokio::test] async fn $t() { super::$t(super::Backend::Postgres).await } )* }
        mod mysql { $( #[tokio::test] async fn $t() { super::$t(super::Backend::MySql).await } )* }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
    pub backend: Backend,
    admin: Option<(String, String)>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "instar_t_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst),
        nanos % 1_000_000
    )
}

fn with_db(base: &str, name: &str) -> String {
    let mut u = url::Url::parse(base).expect("test database URL");
    u.set_path(&format!("/{name}"));
    u.to_string()
}

async fn admin_exec(admin_url: &str, sql: &str) {
    sqlx::any::install_default_drivers();
    let mut c = AnyConnection::connect(admin_url)
        .await
        .expect("connect to the test server");
    sqlx::raw_sql(sql)
        .execute(&mut c)
        .await
        .expect("admin statement");
    let _ = c.close().await;
}

impl TestDb {
    /// A fresh database, or `None` (with a visible skip line) when the engine's URL is unset.
    pub async fn new(backend: Backend, test: &str) -> Option<TestDb> {
        let dir = tempfile::tempdir().expect("temp dir");
        let var = match backend {
            Backend::Sqlite => {
                let url = format!("sqlite:{}", dir.path().join("test.db").display());
                return Some(TestDb {
                    url,
                    dir,
                    backend,
                    admin: None,
                });
            }
            Backend::Postgres => "INSTAR_TEST_POSTGRES_URL",
            Backend::MySql => "INSTAR_TEST_MYSQL_URL",
        };
        let Some(base) = std::env::var(var).ok().filter(|v| !v.is_empty()) else {
            // In CI every suite must run: a missing server fails instead of skipping.
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{test} on {backend:?}: {var} is not set, and CI=true"
            );
            // Written to stderr directly: libtest captures eprintln!, and a skip must be seen.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test} on {backend:?}: {var} is not set"
            );
            return None;
        };
        let name = unique_name();
        admin_exec(&base, &format!("CREATE DATABASE {name}")).await;
        Some(TestDb {
            url: with_db(&base, &name),
            dir,
            backend,
            admin: Some((base, name)),
        })
    }

    /// A fresh SQLite database: it always runs.
    pub async fn sqlite(test: &str) -> TestDb {
        TestDb::new(Backend::Sqlite, test)
            .await
            .expect("SQLite always runs")
    }

    pub fn migrations(&self) -> PathBuf {
        self.dir.path().join("migrations")
    }

    pub fn backups(&self) -> PathBuf {
        self.dir.path().join("backups")
    }

    pub async fn db(&self) -> Db {
        Db::connect(&Settings::new(&self.url))
            .await
            .expect("connect")
    }

    pub fn source(&self) -> Source {
        instar_core::source::read_dir(&self.migrations(), None).expect("read migrations")
    }

    pub fn options(&self) -> RunOptions {
        RunOptions {
            backup_dir: Some(self.backups()),
            ..RunOptions::default()
        }
    }

    pub async fn run_with(&self, target: Target, opts: &RunOptions) -> Result<Report, Error> {
        let mut db = self.db().await;
        let r = runner::run(&mut db, &self.source(), target, opts, &mut NullSink).await;
        db.close().await.expect("close");
        r
    }

    /// `up` with the default options on a connection the test holds, reporting to `sink`.
    pub async fn up_on(
        &self,
        db: &mut Db,
        sink: &mut dyn instar_core::event::EventSink,
    ) -> Result<Report, Error> {
        runner::run(
            db,
            &self.source(),
            Target::Up { to: None },
            &self.options(),
            sink,
        )
        .await
    }

    pub async fn up(&self) -> Result<Report, Error> {
        self.run_with(Target::Up { to: None }, &self.options())
            .await
    }

    pub async fn down(&self, steps: usize) -> Result<Report, Error> {
        self.run_with(
            Target::Down {
                to: None,
                steps: Some(steps),
            },
            &self.options(),
        )
        .await
    }

    /// A raw connection for assertions.
    pub async fn raw(&self) -> AnyConnection {
        sqlx::any::install_default_drivers();
        let url = instar_db::url::DbUrl::parse(&self.url)
            .expect("url")
            .driver_url;
        AnyConnection::connect(&url).await.expect("raw connect")
    }

    pub async fn table_exists(&self, table: &str) -> bool {
        let mut c = self.raw().await;
        let ok = sqlx::raw_sql(&format!("SELECT count(*) FROM {table}"))
            .execute(&mut c)
            .await
            .is_ok();
        let _ = c.close().await;
        ok
    }

    pub async fn count(&self, sql: &str) -> i64 {
        let mut c = self.raw().await;
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut c).await.expect(sql);
        let _ = c.close().await;
        n
    }

    pub async fn events(&self, event: &str) -> i64 {
        self.count(&format!(
            "SELECT count(*) FROM instar_history WHERE event = '{event}'"
        ))
        .await
    }

    /// A SQL statement that takes about `secs` seconds on this engine.
    pub fn sleep_sql(&self, secs: u32) -> String {
        match self.backend {
            Backend::Postgres => format!("SELECT pg_sleep({secs})"),
            Backend::MySql => format!("SELECT SLEEP({secs})"),
            // A recursive count that takes roughly `secs` seconds in SQLite.
            Backend::Sqlite => format!(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {}) SELECT count(*) FROM c",
                secs as u64 * 4_000_000
            ),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((base, name)) = self.admin.take() else {
            return;
        };
        let force = if self.backend == Backend::Postgres {
            " WITH (FORCE)"
        } else {
            ""
        };
        // Drop runs outside the test's runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(admin_exec(
                &base,
                &format!("DROP DATABASE IF EXISTS {name}{force}"),
            ));
        })
        .join();
    }
}

/// Writes an Instar-layout migration folder.
pub fn migration(dir: &Path, folder: &str, up: &str, down: Option<&str>) {
    let f = dir.join(folder);
    std::fs::create_dir_all(&f).expect("mkdir");
    std::fs::write(f.join("up.sql"), up).expect("write up");
    if let Some(d) = down {
        std::fs::write(f.join("down.sql"), d).expect("write down");
    }
}

pub fn file(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// Whether the engine's backup tool (pg_dump, mysqldump) is missing: a visible
/// skip locally; with `CI=true` a failure, since CI installs it.
pub fn backup_tool_missing(b: Backend, test: &str) -> bool {
    let tool = match b {
        Backend::Sqlite => return false,
        Backend::Postgres => "pg_dump",
        Backend::MySql => "mysqldump",
    };
    tool_or_skip(tool, &format!("{test} on {b:?}")).is_none()
}

/// The outside tool `name` when it is installed; otherwise a visible skip
/// locally, and with `CI=true` a failure, since CI installs it.
pub fn tool(name: &str, test: &str) -> Option<String> {
    tool_or_skip(name, test)
}

fn tool_or_skip(name: &str, test: &str) -> Option<String> {
    if std::process::Command::new(name)
        .arg("--version")
        .output()
        .is_ok()
    {
        return Some(name.to_string());
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: {name} is not installed, and CI=true"
    );
    eprintln!("SKIPPED {test}: {name} is not installed");
    None
}
