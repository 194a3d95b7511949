//! The whole status view: migrations, dirty marks, data runs in progress,
//! skipped rows, and the schema version against a requirement.

use instar_core::history::State;
use instar_core::plan::{Standing, Status};
use instar_core::Layout;
use instar_db::data::Checkpoint;
use serde::Serialize;

use crate::Error;

/// Everything `status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    /// The database, password removed.
    pub database: String,
    /// The layout of the migrations.
    pub layout: Option<Layout>,
    /// Every migration's standing, the schema version, and the problems found.
    pub status: Status,
    /// The state derived from the history (applied, dirty, baseline).
    pub state: State,
    /// Checkpoints of data migrations in progress.
    pub checkpoints: Vec<Checkpoint>,
    /// Rows skipped by data migrations (`on_error = "skip"`), per version.
    pub skipped: Vec<(String, i64)>,
    /// Other tools' histories found while Instar's records nothing applied
    /// (`instar adopt` records them).
    pub other_histories: Vec<instar_core::foreign::Reconciled>,
    /// The online migration served at two versions (`instar start`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<instar_db::online::served::InFlight>,
    /// The run lock: its strategy, and who holds its lease if it is one.
    pub lock: LockView,
}

/// The run lock as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LockView {
    /// `advisory`, `lease` or `none`.
    pub strategy: instar_db::lease::LockStrategy,
    /// The lease's holder (the lease strategy), if one is held or left over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<instar_db::lease::LeaseHolder>,
}

impl StatusView {
    /// How many migrations are pending.
    pub fn pending(&self) -> usize {
        self.count(Standing::Pending)
    }

    /// How many migrations are applied.
    pub fn applied(&self) -> usize {
        self.count(Standing::Applied)
    }

    fn count(&self, standing: Standing) -> usize {
        self.status
            .migrations
            .iter()
            .filter(|m| m.standing == standing)
            .count()
    }

    /// `None` when the schema version satisfies the semver requirement `req`
    /// (e.g. `>=1.2, <2`), else the sentence saying it does not.
    pub fn unmet_requirement(&self, req: &str) -> Result<Option<String>, Error> {
        let parsed = semver::VersionReq::parse(req).map_err(|e| {
            Error::Config(format!(
                "--require {req:?} is not a semver requirement: {e}"
            ))
        })?;
        let ok = self
            .status
            .schema_version
            .as_deref()
            .and_then(|v| semver::Version::parse(v).ok())
            .is_some_and(|v| parsed.matches(&v));
        Ok((!ok).then(|| {
            format!(
                "schema version {} does not satisfy {parsed}",
                self.status
                    .schema_version
                    .as_deref()
                    .unwrap_or("(none recorded)")
            )
        }))
    }
}
