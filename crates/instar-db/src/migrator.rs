//! [`Migrator`]: the library front door for applications that migrate at start-up.

use std::path::Path;
use std::time::Duration;

use instar_core::event::{EventSink, NullSink};
use instar_core::plan::{Status, Target};
use instar_core::Source;

use crate::runner::{self, Report, RunOptions};
use crate::{Db, Error, Settings};

/// Applies a project's migrations from inside an application.
///
/// ```no_run
/// # async fn start() -> Result<(), instar_db::Error> {
/// let migrator = instar_db::Migrator::from_dir("migrations")?;
/// let report = migrator.run_url("sqlite:app.db").await?;
/// println!("applied {:?}", report.migrations);
/// # Ok(()) }
/// ```
///
/// A database whose history is ahead of the files (an older build started
/// against a newer database) is refused with a validation error and left
/// untouched, so the application can refuse to start.
#[derive(Debug, Clone)]
pub struct Migrator {
    source: Source,
    options: RunOptions,
    init_sql: Vec<String>,
}

impl Migrator {
    /// Reads the migrations in `dir` (any supported layout).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Migrator, Error> {
        Ok(Migrator::new(instar_core::source::read_dir(
            dir.as_ref(),
            None,
        )?))
    }

    /// Uses migrations already read.
    pub fn new(source: Source) -> Migrator {
        Migrator {
            source,
            options: RunOptions::default(),
            init_sql: Vec::new(),
        }
    }

    /// Replaces the run options (lock timeout, backups, single transaction …).
    pub fn with_options(mut self, options: RunOptions) -> Migrator {
        self.options = options;
        self
    }

    /// Statements to run on the connection first.
    pub fn with_init_sql(mut self, init_sql: Vec<String>) -> Migrator {
        self.init_sql = init_sql;
        self
    }

    /// How long to wait for another instance's lock.
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Migrator {
        self.options.lock_timeout = timeout;
        self
    }

    /// The migrations this migrator applies.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Applies every pending migration on `db`.
    pub async fn run(&self, db: &mut Db) -> Result<Report, Error> {
        self.run_with_events(db, &mut NullSink).await
    }

    /// Applies every pending migration on `db`, reporting progress to `sink`.
    pub async fn run_with_events(
        &self,
        db: &mut Db,
        sink: &mut dyn EventSink,
    ) -> Result<Report, Error> {
        runner::run(
            db,
            &self.source,
            Target::Up { to: None },
            &self.options,
            sink,
        )
        .await
    }

    /// Connects to `url`, applies every pending migration, and closes the connection.
    pub async fn run_url(&self, url: &str) -> Result<Report, Error> {
        let mut settings = Settings::new(url);
        settings.init_sql = self.init_sql.clone();
        let mut db = Db::connect(&settings).await?;
        let result = self.run(&mut db).await;
        let closed = db.close().await;
        let report = result?;
        closed?;
        Ok(report)
    }

    /// The status of every migration on `db`, without changing anything.
    pub async fn status(&self, db: &mut Db) -> Result<Status, Error> {
        Ok(runner::status(db, &self.source).await?.0)
    }
}
