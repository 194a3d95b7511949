//! [`Migrator`]: the library front door for applications that migrate at start-up.

use std::path::Path;
use std::time::Duration;

use instar_core::event::{EventSink, NullSink};
use instar_core::plan::Status;
use instar_db::runner::Report;
use instar_db::CancelToken;

use crate::run::RunRequest;
use crate::source::{FolderSource, MigrationSource};
use crate::{Error, Service, Settings};

/// Applies a project's migrations from inside an application: a thin wrapper
/// over [`Service`], so it writes the same history as the CLI.
///
/// ```no_run
/// # async fn start() -> Result<(), instar_service::Error> {
/// let migrator = instar_service::Migrator::from_dir("migrations");
/// let report = migrator.run("sqlite:app.db").await?;
/// println!("applied {:?}", report.migrations);
/// # Ok(()) }
/// ```
///
/// With migrations embedded in the binary:
///
/// ```ignore
/// let migrator = instar_service::Migrator::new(instar_service::embed_migrations!("migrations"));
/// ```
///
/// A database whose history is ahead of the migrations (an older build started
/// against a newer database) is refused with a validation error and left
/// untouched, so the application can refuse to start.
pub struct Migrator {
    source: std::sync::Arc<dyn MigrationSource>,
    init_sql: Vec<String>,
    lock_timeout: Duration,
    request: RunRequest,
}

impl Migrator {
    /// Migrations read from folder `dir` (any supported layout) at each run.
    pub fn from_dir(dir: impl AsRef<Path>) -> Migrator {
        Migrator::new(FolderSource {
            dir: dir.as_ref().to_path_buf(),
            layout: None,
            pattern: None,
            cache: None,
        })
    }

    /// Migrations from `source` (a folder, in memory, or embedded).
    pub fn new(source: impl MigrationSource + 'static) -> Migrator {
        Migrator {
            source: std::sync::Arc::new(source),
            init_sql: Vec::new(),
            lock_timeout: Duration::from_secs(60),
            // An application's start-up takes no backups of its own database.
            request: RunRequest {
                backup: Some(false),
                ..RunRequest::up()
            },
        }
    }

    /// Statements to run on the connection first.
    pub fn with_init_sql(mut self, init_sql: Vec<String>) -> Migrator {
        self.init_sql = init_sql;
        self
    }

    /// How long to wait for another instance's lock.
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Migrator {
        self.lock_timeout = timeout;
        self
    }

    /// Replaces the run request (target, single transaction, backups …).
    pub fn with_request(mut self, request: RunRequest) -> Migrator {
        self.request = request;
        self
    }

    fn service(&self, url: &str) -> Service {
        let mut settings = Settings::new(url, Path::new("."));
        settings.db.init_sql = self.init_sql.clone();
        settings.lock_timeout = self.lock_timeout;
        Service::with_source(settings, SharedSource(self.source.clone()))
    }

    /// Runs on `url`, in PostgreSQL schema `schema` if given (its
    /// `search_path`, and the history table in it).
    pub(crate) async fn run_in(
        &self,
        url: &str,
        schema: Option<&str>,
        sink: &mut dyn EventSink,
    ) -> Result<Report, Error> {
        let mut service = self.service(url);
        if let Some(s) = schema {
            let mut settings = service.settings().clone();
            settings.use_schema(s);
            service = service.with_settings(settings);
        }
        let id = instar_db::new_run_id();
        service
            .run(&self.request, &id, CancelToken::new(), sink)
            .await
            .map_err(|f| f.error)
    }

    /// Connects to `url`, applies every pending migration, and closes the connection.
    pub async fn run(&self, url: &str) -> Result<Report, Error> {
        self.run_with_events(url, &mut NullSink).await
    }

    /// [`Migrator::run`], reporting progress to `sink`.
    pub async fn run_with_events(
        &self,
        url: &str,
        sink: &mut dyn EventSink,
    ) -> Result<Report, Error> {
        self.run_in(url, None, sink).await
    }

    /// The status of every migration, without changing anything.
    pub async fn status(&self, url: &str) -> Result<Status, Error> {
        Ok(self.service(url).status().await?.status)
    }
}

/// A source shared between the migrator and the services it makes.
struct SharedSource(std::sync::Arc<dyn MigrationSource>);

impl MigrationSource for SharedSource {
    fn load(&self) -> Result<instar_core::Source, Error> {
        self.0.load()
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
}
