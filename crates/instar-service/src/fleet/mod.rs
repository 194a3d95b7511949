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
pub mod state;
mod summary;
mod targets;

use std::time::Instant;

use futures_util::StreamExt as _;
use instar_core::event::EventSink;
use serde::Serialize;
use sha2::Digest as _;

pub use check::{FleetCheck, TargetCheck};
pub use config::{Amount, FleetConfig, FleetFile};
pub use state::{State, TargetState};
pub use summary::FleetStatus;
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
    /// A wave began: its targets are `running` until each finishes.
    WaveStarted {
        /// The wave (0 is the canary).
        wave: usize,
        /// Its targets.
        targets: usize,
    },
    /// A target's run ended.
    TargetFinished {
        /// The target.
        target: String,
        /// Its wave.
        wave: usize,
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
    /// Not run: the rollout stopped before their wave.
    pub not_run: usize,
    /// The wave after which the rollout stopped.
    pub stopped_after_wave: Option<usize>,
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

/// A schema target whose schema does not exist: the error that says so (a
/// run would create the schema and migrate a stray copy).
async fn missing_schema(service: &Service, t: &Target) -> Option<Error> {
    let schema = t.schema.as_deref()?;
    let mut db = match service.connect().await {
        Ok(db) => db,
        Err(e) => return Some(e),
    };
    let lit = schema.replace('\'', "''");
    let rows = db
        .rows(
            &format!("SELECT count(*) FROM pg_namespace WHERE nspname = '{lit}'"),
            "looking for the tenant's schema",
        )
        .await;
    let _ = db.close().await;
    match rows {
        Err(e) => Some(e.into()),
        Ok(r) if r.first().and_then(|r| r.first()).and_then(serde_json::Value::as_i64) == Some(1) => None,
        Ok(_) => Some(Error::Config(format!(
            "schema {schema} does not exist on the server: create it (or fix the name the fleet lists); nothing was run"
        ))),
    }
}

impl Service {
    /// `[fleet]`, or an error saying it is missing.
    pub fn fleet_config(&self) -> Result<&FleetConfig, Error> {
        self.settings().fleet.as_ref().ok_or_else(|| {
            Error::Config("no [fleet] in instar.toml: declare the fleet's targets there (see the README's \"Fleets\")".into())
        })
    }

    /// Rolls the migrations out over the fleet (see the module's docs).
    pub async fn fleet_up(
        &self,
        opts: &FleetOptions,
        on_event: &mut (dyn FnMut(FleetEvent) + Send),
    ) -> Result<FleetReport, Error> {
        let cfg = self.fleet_config()?.clone();
        let targets = self.fleet_targets().await?;
        if targets.is_empty() {
            return Err(Error::Config(
                "the fleet is empty: [fleet] targets, glob, command and query gave no target"
                    .into(),
            ));
        }
        let release = release(self)?;
        let state = State::open(&cfg.state)?;
        let _rollout = state.lock()?;
        let known = state.all()?;
        let done_before = |t: &Target| {
            known
                .iter()
                .any(|k| k.target == t.name && k.release == release && k.state == "done")
        };
        let todo: Vec<Target> = targets
            .iter()
            .filter(|t| !done_before(t))
            .cloned()
            .collect();
        let plan = waves(&cfg, &targets, &todo)?;
        let mut report = FleetReport {
            targets: targets.len(),
            skipped: targets.len() - todo.len(),
            ..FleetReport::default()
        };
        on_event(FleetEvent::Planned {
            waves: plan
                .iter()
                .map(|w| w.iter().map(|t| t.name.clone()).collect())
                .collect(),
            skipped: report.skipped,
        });
        let parallel = opts.parallel.unwrap_or(cfg.parallel).max(1);
        let max_failures = opts.max_failures.unwrap_or(cfg.max_failures);
        let req = opts.request.clone().unwrap_or_else(RunRequest::up);
        for (wave, group) in plan.iter().enumerate() {
            if report.stopped_after_wave.is_some() {
                report.not_run += group.len();
                continue;
            }
            let failures = self
                .fleet_wave(
                    &state,
                    &release,
                    wave,
                    group,
                    parallel,
                    &req,
                    &mut report,
                    on_event,
                )
                .await?;
            if failures > max_failures && !opts.continue_on_error {
                report.stopped_after_wave = Some(wave);
                on_event(FleetEvent::Stopped { wave, failures });
            }
        }
        Ok(report)
    }

    #[allow(clippy::too_many_arguments)]
    async fn fleet_wave(
        &self,
        state: &State,
        release: &str,
        wave: usize,
        group: &[Target],
        parallel: usize,
        req: &RunRequest,
        report: &mut FleetReport,
        on_event: &mut (dyn FnMut(FleetEvent) + Send),
    ) -> Result<usize, Error> {
        let mut failures = 0;
        let mut runs = futures_util::stream::iter(group.iter().map(|t| {
            let service = self.with_settings(self.target_settings(t));
            let req = req.clone();
            async move {
                let run_id = instar_db::new_run_id();
                let t0 = Instant::now();
                let mut sink = instar_core::event::NullSink;
                let r = match missing_schema(&service, t).await {
                    Some(error) => Err(crate::RunFailure {
                        error,
                        report: Default::default(),
                    }),
                    None => {
                        let cancel = instar_db::CancelToken::new();
                        service
                            .run(&req, &run_id, cancel, &mut sink as &mut dyn EventSink)
                            .await
                    }
                };
                (t, run_id, t0.elapsed(), r)
            }
        }))
        .buffer_unordered(parallel);
        // The wave's targets are `running` until each finishes: a rollout
        // killed now runs them again (each `up` resumes or finds nothing to do).
        for t in group {
            state.start(&t.name, release, wave as i64, "")?;
        }
        if !group.is_empty() {
            on_event(FleetEvent::WaveStarted {
                wave,
                targets: group.len(),
            });
        }
        // A state-file error does not drop the runs in flight: they finish,
        // and the error is returned after the wave.
        let mut state_error = None;
        while let Some((t, run_id, took, r)) = runs.next().await {
            let (applied, error, version) = match &r {
                Ok(rep) if rep.paused.is_some() || rep.cancelled => (
                    rep.migrations.len(),
                    Some("stopped at a checkpoint before its end (a data migration's time budget, or cancelled): not done".to_string()),
                    rep.migrations.last().cloned(),
                ),
                Ok(rep) => (rep.migrations.len(), None, rep.migrations.last().cloned()),
                Err(f) => (
                    f.report.migrations.len(),
                    Some(f.error.to_string()),
                    f.report.migrations.last().cloned(),
                ),
            };
            let took_ms = took.as_millis() as i64;
            let recorded = state.finish(
                &t.name,
                error.as_deref(),
                took_ms,
                applied as i64,
                version.as_deref(),
                &run_id,
            );
            if let Err(e) = recorded {
                state_error.get_or_insert(e);
            }
            match &error {
                Some(e) => {
                    failures += 1;
                    report.failed.push((t.name.clone(), e.clone()));
                }
                None => report.done += 1,
            }
            on_event(FleetEvent::TargetFinished {
                target: t.name.clone(),
                wave,
                applied,
                duration_ms: took.as_millis() as u64,
                error,
            });
        }
        match state_error {
            Some(e) => Err(e),
            None => Ok(failures),
        }
    }
}
