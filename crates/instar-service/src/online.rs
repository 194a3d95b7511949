//! Online migrations served at two versions at once: `start` expands,
//! `complete` contracts, `rollback` removes the new version.

use instar_core::event::EventSink;
use instar_db::online::expand::Expansion;
use instar_db::online::served::{self, Completed, InFlight, Started};
use instar_db::Db;

use crate::{Error, RunRequest, Service};

impl Service {
    /// Expands the next pending migration (an online one), or goes on with the
    /// one in flight: its backfill walks `batch` rows at a time with `req`'s
    /// `parallel` and `max_duration`. Both versions are served once it returns
    /// `expanded`.
    pub async fn online_start(
        &self,
        req: &RunRequest,
        batch: u64,
        sink: &mut dyn EventSink,
    ) -> Result<Started, Error> {
        let source = self.load()?;
        let mut opts = self.run_options(req);
        opts.collections = self.doc_collections(&source)?;
        self.refuse_pooled("start").await?;
        let db = self.connect().await?;
        self.on(db, async |db: &mut Db| {
            Ok(served::start(db, &source, batch, &opts, sink).await?)
        })
        .await
    }

    /// Contracts the migration in flight to its new version and records it
    /// applied; refused while old-version clients are connected unless `force`.
    pub async fn online_complete(
        &self,
        force: bool,
        sink: &mut dyn EventSink,
    ) -> Result<Completed, Error> {
        let source = self.load()?;
        let opts = self.run_options(&RunRequest::up());
        self.refuse_pooled("complete").await?;
        let db = self.connect().await?;
        self.on(db, async |db: &mut Db| {
            Ok(served::complete(db, &source, force, &opts, sink).await?)
        })
        .await
    }

    /// Removes the new version of the migration in flight.
    pub async fn online_rollback(&self, sink: &mut dyn EventSink) -> Result<InFlight, Error> {
        let opts = self.run_options(&RunRequest::up());
        self.refuse_pooled("rollback").await?;
        let db = self.connect().await?;
        self.on(db, async |db: &mut Db| {
            Ok(served::rollback(db, &opts, sink).await?)
        })
        .await
    }

    /// What `start` would run, then `complete` and `rollback`; changes nothing.
    pub async fn online_preview(&self) -> Result<Expansion, Error> {
        let source = self.load()?;
        let collections = self.doc_collections(&source)?;
        self.reading(async |db: &mut Db| Ok(served::preview(db, &source, &collections).await?))
            .await
    }

    /// What a connection runs to read and write at `version` (PostgreSQL: its
    /// search_path; SQLite: TEMP views and triggers for the new version of the
    /// migration in flight; nothing where the base tables have that shape).
    pub async fn connect_sql(&self, version: &str) -> Result<Vec<String>, Error> {
        self.reading(async |db: &mut Db| Ok(served::connect_sql(db, version).await?))
            .await
    }

    /// Whether connections to the database keep their session between
    /// transactions: `Some(what was seen)` behind a transaction pooler, where
    /// a version chosen with a session setting would be lost.
    pub async fn session_dropped(&self) -> Result<Option<String>, Error> {
        Ok(served::session_dropped(&self.settings().db.url).await?)
    }

    /// Refuses `command` through a pooler that does not keep sessions:
    /// Instar's run lock and the version it serves need one.
    async fn refuse_pooled(&self, command: &str) -> Result<(), Error> {
        match self.session_dropped().await? {
            None => Ok(()),
            Some(seen) => Err(Error::Db(instar_db::Error::Unsupported(format!(
                "`instar {command}` needs a connection that keeps its session (its run lock and the versions it serves are per session), but {seen}. Point instar at the database server itself, or at a pool in session mode"
            )))),
        }
    }
}
