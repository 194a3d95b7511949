//! Cloud Spanner databases (`spanner://HOST:PORT/projects/P/instances/I/databases/D`):
//! the folder's GoogleSQL migrations, run by [`instar_spanner`] under a lease,
//! with the same history as every engine.

use std::time::Duration;

use instar_core::history::HistoryRow;
use instar_core::plan::{Step, Target};
use instar_core::source::Migration;
use instar_spanner::lease::LockView;
use instar_spanner::ops::StatusView;
use instar_spanner::run::{Event, Options, Report};
use instar_spanner::{Client, SpannerUrl};

use crate::{Error, Service};

impl From<instar_spanner::Error> for Error {
    fn from(e: instar_spanner::Error) -> Self {
        Error::Spanner(e)
    }
}

/// The flags of `up`/`down` that apply on Spanner.
#[derive(Debug, Clone, Default)]
pub struct SpannerRunOptions {
    /// Apply pending migrations older than the newest applied one.
    pub allow_out_of_order: bool,
    /// Do not refuse when applied migrations have no file.
    pub ignore_missing: bool,
    /// Data migrations stop at a checkpoint once this is spent.
    pub max_duration: Option<Duration>,
}

impl Service {
    /// Whether the database is Cloud Spanner.
    pub fn is_spanner(&self) -> bool {
        self.settings().db.url.starts_with("spanner:")
    }

    fn spanner_client(&self) -> Result<Client, Error> {
        Ok(Client::new(&SpannerUrl::parse(&self.settings().db.url)?))
    }

    fn spanner_migrations(&self) -> Result<Vec<Migration>, Error> {
        Ok(self.source.load()?.migrations)
    }

    fn spanner_options(&self, target: Target, run: &SpannerRunOptions) -> Options {
        let s = self.settings();
        Options {
            target,
            lock: s.db.lock,
            lease: s.db.lease,
            lock_timeout: s.lock_timeout,
            allow_out_of_order: run.allow_out_of_order,
            ignore_missing: run.ignore_missing,
            max_duration: run.max_duration,
        }
    }

    /// Where a Spanner database stands.
    pub fn spanner_status(&self) -> Result<StatusView, Error> {
        let migrations = self.spanner_migrations()?;
        Ok(instar_spanner::ops::status(
            &self.spanner_client()?,
            &migrations,
        )?)
    }

    /// The steps `up`/`down` would take, with each migration (nothing written).
    pub fn spanner_plan(&self, target: Target) -> Result<Vec<(Step, Migration)>, Error> {
        let migrations = self.spanner_migrations()?;
        let client = self.spanner_client()?;
        let session = client.session()?;
        let opts = self.spanner_options(target, &SpannerRunOptions::default());
        let steps = instar_spanner::run::plan_steps(&session, &migrations, &opts)?;
        Ok(steps
            .into_iter()
            .map(|s| {
                let m = migrations[s.index].clone();
                (s, m)
            })
            .collect())
    }

    /// Applies (or reverts) migrations on Spanner, reporting each event.
    pub fn spanner_run(
        &self,
        target: Target,
        run: &SpannerRunOptions,
        on_event: &mut dyn FnMut(Event),
    ) -> Result<Report, Error> {
        let migrations = self.spanner_migrations()?;
        let opts = self.spanner_options(target, run);
        Ok(instar_spanner::run::run(
            &self.spanner_client()?,
            &migrations,
            &opts,
            on_event,
        )?)
    }

    /// The history of a Spanner database.
    pub fn spanner_history(&self) -> Result<Vec<HistoryRow>, Error> {
        Ok(instar_spanner::ops::history(&self.spanner_client()?)?)
    }

    /// Clears dirty marks (and checkpoints of edited data migrations).
    pub fn spanner_repair(&self, reason: Option<&str>) -> Result<Vec<String>, Error> {
        let migrations = self.spanner_migrations()?;
        let opts = self.spanner_options(Target::Up { to: None }, &SpannerRunOptions::default());
        Ok(instar_spanner::ops::repair(
            &self.spanner_client()?,
            &migrations,
            &opts,
            reason,
        )?)
    }

    /// Breaks the run lock's lease (expired, or any with `force`).
    pub fn spanner_unlock(&self, force: bool) -> Result<Option<LockView>, Error> {
        Ok(instar_spanner::ops::unlock(&self.spanner_client()?, force)?)
    }
}
