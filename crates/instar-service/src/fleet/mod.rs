//! Fleets: one migration set over many tenant databases (SQLite files,
//! PostgreSQL schemas, MySQL databases), rolled out in waves — a canary
//! group first, then shares of the fleet — with `parallel` targets at once,
//! stopping when a wave has more than `max_failures` failures (unless told
//! to go on), and a durable per-target state so that a killed or stopped
//! rollout resumes with exactly the targets not done. Every target's run is
//! a plain `up` through [`Service::run`]: its own lock, history table (in
//! its schema or database), transactions, backups and checks.

mod check;
pub mod config;
mod plan;
mod progress;
mod rollout;
pub mod state;
mod summary;
mod targets;

use instar_db::CancelToken;
use serde::Serialize;
use sha2::Digest as _;

pub use check::{FleetCheck, TargetCheck, TargetNow};
pub use config::{Amount, FleetConfig, FleetFile};
pub use plan::{FleetPlan, PlannedSql, PlannedTarget};
pub use progress::{FleetEnd, FleetProgress, FleetWatch, TenantProgress};
pub use rollout::FleetHandle;
pub use state::{State, TargetState};
pub use summary::{FleetGrid, FleetStatus, GridCell};
pub use targets::Target;

use crate::{Error, RunRequest, Service};

/// How `instar fleet up` goes, beyond `[fleet]`.
#[derive(Debug, Clone, Default)]
pub struct FleetOptions {
    /// Targets at once (default: `[fleet] parallel`).
    pub parallel: Option<usize>,
    /// Failures a wave may have (default: `[fleet] max_failures`).
    pub max_failures: Option<usize>,
    /// Go on past failed targets whatever their number.
    pub continue_on_error: bool,
    /// What each target's run does (`up`, its flags).
    pub request: Option<RunRequest>,
    /// Stops the rollout: no target starts after it, the running ones stop
    /// at their next safe point (and are not `done`).
    pub cancel: CancelToken,
}

/// What happened to a fleet, as it happens.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum FleetEvent {
    /// The rollout's plan: waves of target names (wave 0 is the canary).
    Planned {
        /// The waves.
        waves: Vec<Vec<String>>,
        /// Targets done in this release already (skipped).
        skipped: usize,
    },
    /// A wave began: its targets wait for their turn (`queued` in a
    /// rollout's view) until each starts.
    WaveStarted {
        /// The wave (0 is the canary).
        wave: usize,
        /// Its targets.
        targets: usize,
    },
    /// A target's run started.
    TargetStarted {
        /// The target.
        target: String,
        /// Its wave.
        wave: usize,
    },
    /// Progress of one migration on one target.
    Migration {
        /// The target.
        target: String,
        /// The migration.
        version: String,
        /// `started`, `batch` (a data migration's batch committed),
        /// `finished` or `failed`.
        state: &'static str,
        /// A data migration's rows done so far.
        #[serde(skip_serializing_if = "Option::is_none")]
        rows_done: Option<u64>,
        /// A data migration's rows in all.
        #[serde(skip_serializing_if = "Option::is_none")]
        rows_total: Option<u64>,
    },
    /// A target's run ended.
    TargetFinished {
        /// The target.
        target: String,
        /// Its wave.
        wave: usize,
        /// `done`, `failed`, or `stopped` (cancelled, or a data migration's
        /// time budget spent: not done, not a failure).
        outcome: &'static str,
        /// Migrations applied.
        applied: usize,
        /// How long it took.
        duration_ms: u64,
        /// Why it failed.
        error: Option<String>,
    },
    /// The rollout stopped after a wave with too many failures.
    Stopped {
        /// The wave.
        wave: usize,
        /// Its failures.
        failures: usize,
    },
    /// The rollout was cancelled: no target starts any more.
    Cancelled,
}

/// What `fleet up` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FleetReport {
    /// Targets in the fleet.
    pub targets: usize,
    /// Done in this release before this rollout (skipped).
    pub skipped: usize,
    /// Run now and done.
    pub done: usize,
    /// Run now and failed: `(target, error)`.
    pub failed: Vec<(String, String)>,
    /// Run now and stopped before their end (cancelled, or a data
    /// migration's time budget spent): `(target, why)`.
    pub stopped: Vec<(String, String)>,
    /// Not run: the rollout stopped before their wave.
    pub not_run: usize,
    /// The wave after which the rollout stopped.
    pub stopped_after_wave: Option<usize>,
    /// Cancelled before its end.
    pub cancelled: bool,
}

/// The release a rollout is for: the migration set's fingerprint (every
/// migration's version and checksum).
pub fn release(service: &Service) -> Result<String, Error> {
    let source = service.load()?;
    let mut h = sha2::Sha256::new();
    for m in &source.migrations {
        h.update(m.version.as_str().as_bytes());
        h.update(b" ");
        h.update(m.checksum.as_bytes());
        h.update(b"\n");
    }
    Ok(format!("{:x}", h.finalize())[..16].to_string())
}

/// The targets of `targets` not `done` in `release` by the state rows `known`.
pub(crate) fn not_done(targets: &[Target], known: &[TargetState], release: &str) -> Vec<Target> {
    targets
        .iter()
        .filter(|t| {
            !known
                .iter()
                .any(|k| k.target == t.name && k.release == release && k.state == "done")
        })
        .cloned()
        .collect()
}

impl Service {
    /// The fleet's targets, or an error when there are none.
    pub(crate) async fn fleet_listed(&self) -> Result<Vec<Target>, Error> {
        let targets = self.fleet_targets().await?;
        if targets.is_empty() {
            return Err(Error::Config(
                "the fleet is empty: [fleet] targets, glob, command and query gave no target"
                    .into(),
            ));
        }
        Ok(targets)
    }
}

/// Splits `targets` (in fleet order) into waves: the canary, then each
/// wave up to its cumulative share of the whole fleet.
pub(crate) fn waves(
    cfg: &FleetConfig,
    all: &[Target],
    todo: &[Target],
) -> Result<Vec<Vec<Target>>, Error> {
    let total = all.len();
    let mut rest: Vec<Target> = todo.to_vec();
    let mut out = Vec::new();
    let canary: Vec<Target> = match &cfg.canary {
        None => Vec::new(),
        Some(Amount::Names(names)) => {
            for n in names {
                if !all.iter().any(|t| &t.name == n) {
                    return Err(Error::Config(format!(
                        "instar.toml [fleet] canary: {n:?} is not a target of the fleet"
                    )));
                }
            }
            let (c, r): (Vec<Target>, Vec<Target>) =
                rest.into_iter().partition(|t| names.contains(&t.name));
            rest = r;
            c
        }
        Some(a) => {
            let n = config::share(a, total)
                .map_err(Error::Config)?
                .min(rest.len());
            rest.drain(..n).collect()
        }
    };
    out.push(canary);
    let mut reached = total - todo.len() + out[0].len();
    for w in &cfg.waves {
        let upto = config::share(w, total).map_err(Error::Config)?;
        let n = upto.saturating_sub(reached).min(rest.len());
        reached += n;
        out.push(rest.drain(..n).collect());
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    Ok(out)
}
