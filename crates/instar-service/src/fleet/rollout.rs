//! `fleet up`: the rollout itself — waves of plain `up` runs, `parallel` at
//! once, each recorded in the state file before it starts and when it ends,
//! each forwarding its migrations' progress as fleet events. Started from
//! the CLI ([`Service::fleet_up`]) or as a task with a handle
//! ([`Service::start_fleet`], what the HTTP API uses).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::StreamExt as _;
use instar_core::event::{Event, EventSink};
use instar_db::CancelToken;

use super::state::Ended;
use super::{
    not_done, release, waves, FleetConfig, FleetEvent, FleetOptions, FleetReport, FleetWatch,
    State, Target,
};
use crate::run::Hub;
use crate::{Error, RunEvents, RunFailure, RunRequest, Service};

/// The rollout's event callback, shared by a wave's concurrent runs.
type Emit<'f> = Mutex<&'f mut (dyn FnMut(FleetEvent) + Send)>;

fn emit(on: &Emit<'_>, e: FleetEvent) {
    // A callback that panicked once still gets the events after it.
    (on.lock().unwrap_or_else(|p| p.into_inner()))(e);
}

/// One target's run events, forwarded as [`FleetEvent::Migration`].
struct TargetSink<'a, 'f> {
    target: &'a str,
    on: &'a Emit<'f>,
}

impl EventSink for TargetSink<'_, '_> {
    fn event(&mut self, e: &Event) {
        let (version, state, rows_done, rows_total) = match e {
            Event::MigrationStarted { version, .. } => (version, "started", None, None),
            Event::BatchFinished {
                version,
                rows_done,
                rows_total,
                ..
            } => (version, "batch", Some(*rows_done), Some(*rows_total)),
            Event::MigrationFinished { version, .. } => (version, "finished", None, None),
            Event::MigrationFailed { version, .. } => (version, "failed", None, None),
            _ => return,
        };
        emit(
            self.on,
            FleetEvent::Migration {
                target: self.target.to_string(),
                version: version.clone(),
                state,
                rows_done,
                rows_total,
            },
        );
    }
}

/// What every wave of one rollout shares.
struct Roll<'a, 'f> {
    state: &'a State,
    release: &'a str,
    parallel: usize,
    req: &'a RunRequest,
    cancel: &'a CancelToken,
    on: &'a Emit<'f>,
    /// Schema targets whose schema is missing, with their error.
    missing: &'a HashMap<String, String>,
}

/// How one target's turn ended: not started (cancelled), or run.
struct Turn<'t> {
    target: &'t Target,
    run_id: String,
    took: std::time::Duration,
    result: Result<instar_db::runner::Report, RunFailure>,
}

impl Turn<'_> {
    /// `done`, `failed` or `stopped`, migrations applied, why (failed or
    /// stopped), the last migration applied.
    fn outcome(&self) -> (&'static str, usize, Option<String>, Option<String>) {
        match &self.result {
            Ok(rep) if rep.paused.is_some() || rep.cancelled => (
                "stopped",
                rep.migrations.len(),
                Some(if rep.cancelled {
                    "cancelled before its end: not done (`fleet up` runs it again)"
                } else {
                    "a data migration's --max-duration budget was spent at a checkpoint: not done (`fleet up` runs it again)"
                }.to_string()),
                rep.migrations.last().cloned(),
            ),
            Ok(rep) => ("done", rep.migrations.len(), None, rep.migrations.last().cloned()),
            Err(f) => (
                "failed",
                f.report.migrations.len(),
                Some(f.error.to_string()),
                f.report.migrations.last().cloned(),
            ),
        }
    }
}

/// A fleet rollout started as a task: its id, its events (kept, so a late
/// subscriber misses nothing), a cancel token, and its report.
pub struct FleetHandle {
    id: String,
    hub: Arc<Hub<FleetEvent>>,
    watch: FleetWatch,
    cancel: CancelToken,
    task: tokio::task::JoinHandle<Result<FleetReport, Error>>,
}

impl FleetHandle {
    /// The rollout's id (in its events).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its events, from the first one, for any number of subscribers.
    pub fn events(&self) -> RunEvents<FleetEvent> {
        RunEvents(Arc::clone(&self.hub))
    }

    /// Every tenant's progress and, once it ended, the outcome (set before
    /// the event stream closes).
    pub fn watch(&self) -> FleetWatch {
        self.watch.clone()
    }

    /// A clone of its cancel token.
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// Waits for the rollout to end.
    pub async fn wait(self) -> Result<FleetReport, Error> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(Error::Config(format!(
                "the fleet rollout's task ended abnormally: {e}"
            ))),
        }
    }
}

/// Resolves once `cancel` is cancelled (checked every 50 ms).
async fn cancelled(cancel: &CancelToken) {
    while !cancel.is_cancelled() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The schema targets whose schema does not exist on their server, each
/// with the error it gets (a run would create the schema and migrate a stray
/// copy). One connection per server, not one per tenant.
pub(super) async fn missing_schemas(
    service: &Service,
    targets: &[Target],
) -> HashMap<String, String> {
    let mut by_server: BTreeMap<&str, Vec<&Target>> = BTreeMap::new();
    for t in targets.iter().filter(|t| t.schema.is_some()) {
        by_server.entry(t.url.as_str()).or_default().push(t);
    }
    let mut out = HashMap::new();
    for tenants in by_server.into_values() {
        let on_server = service.with_settings(service.target_settings(tenants[0]));
        let existing: Result<HashSet<String>, String> = async {
            let mut db = on_server.connect().await?;
            let rows = db
                .rows(
                    "SELECT nspname::text FROM pg_namespace",
                    "listing the server's schemas",
                )
                .await;
            let _ = db.close().await;
            Ok::<_, Error>(
                rows?
                    .into_iter()
                    .filter_map(|r| r.first().and_then(|v| v.as_str()).map(str::to_string))
                    .collect(),
            )
        }
        .await
        .map_err(|e| e.to_string());
        for t in tenants {
            let schema = t.schema.as_deref().unwrap_or_default();
            match &existing {
                Err(e) => {
                    out.insert(t.name.clone(), e.clone());
                }
                Ok(set) if !set.contains(schema) => {
                    out.insert(t.name.clone(), format!(
                        "schema {schema} does not exist on the server: create it (or fix the name the fleet lists); nothing was run"
                    ));
                }
                Ok(_) => {}
            }
        }
    }
    out
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
        let state = State::open(&self.fleet_config()?.state)?;
        let _lock = state.lock()?;
        self.pinned()?.roll_out(&state, opts, on_event).await
    }

    /// Starts a rollout as a task on the current runtime. The rollout lock
    /// is taken before it returns: a second rollout (this process's or
    /// another's) is refused here, with the error naming the holder.
    pub fn start_fleet(&self, opts: FleetOptions) -> Result<FleetHandle, Error> {
        let state = State::open(&self.fleet_config()?.state)?;
        let lock = state.lock()?;
        let id = instar_db::new_run_id();
        let hub: Arc<Hub<FleetEvent>> = Hub::new(id.clone());
        let watch = FleetWatch::default();
        let cancel = opts.cancel.clone();
        let (service, task_hub, task_watch) = (self.pinned()?, Arc::clone(&hub), watch.clone());
        let task = tokio::spawn(async move {
            // Subscribers' streams end when the rollout does, even if it panics.
            let closing = task_hub.closer();
            let mut on = |e: FleetEvent| {
                task_watch.apply(&e);
                task_hub.publish(&e);
            };
            let r = service.roll_out(&state, &opts, &mut on).await;
            // The outcome is there before the lock is free and the stream ends.
            task_watch.ended(r.as_ref().map(Clone::clone).map_err(ToString::to_string));
            drop(lock);
            drop(closing);
            r
        });
        Ok(FleetHandle {
            id,
            hub,
            watch,
            cancel,
            task,
        })
    }

    /// The rollout, on a service whose migrations are pinned.
    async fn roll_out(
        &self,
        state: &State,
        opts: &FleetOptions,
        on_event: &mut (dyn FnMut(FleetEvent) + Send),
    ) -> Result<FleetReport, Error> {
        let cfg = self.fleet_config()?.clone();
        // A list command or query that hangs does not outlast a cancel.
        let targets = tokio::select! {
            t = self.fleet_listed() => t?,
            () = cancelled(&opts.cancel) => {
                on_event(FleetEvent::Cancelled);
                return Ok(FleetReport { cancelled: true, ..FleetReport::default() });
            }
        };
        let release = release(self)?;
        let todo = not_done(&targets, &state.all()?, &release);
        let plan = waves(&cfg, &targets, &todo)?;
        let mut report = FleetReport {
            targets: targets.len(),
            skipped: targets.len() - todo.len(),
            ..FleetReport::default()
        };
        let on = Mutex::new(on_event);
        emit(
            &on,
            FleetEvent::Planned {
                waves: plan
                    .iter()
                    .map(|w| w.iter().map(|t| t.name.clone()).collect())
                    .collect(),
                skipped: report.skipped,
            },
        );
        let max_failures = opts.max_failures.unwrap_or(cfg.max_failures);
        let req = opts.request.clone().unwrap_or_else(RunRequest::up);
        let missing = missing_schemas(self, &todo).await;
        let roll = Roll {
            state,
            release: &release,
            parallel: opts.parallel.unwrap_or(cfg.parallel).max(1),
            req: &req,
            cancel: &opts.cancel,
            on: &on,
            missing: &missing,
        };
        for (wave, group) in plan.iter().enumerate() {
            if opts.cancel.is_cancelled()
                && !report.cancelled
                && report.stopped_after_wave.is_none()
            {
                report.cancelled = true;
                emit(&on, FleetEvent::Cancelled);
            }
            if report.stopped_after_wave.is_some() || report.cancelled {
                report.not_run += group.len();
                continue;
            }
            let failures = self.fleet_wave(&roll, wave, group, &mut report).await?;
            if opts.cancel.is_cancelled() && !report.cancelled {
                report.cancelled = true;
                emit(&on, FleetEvent::Cancelled);
            } else if failures > max_failures && !opts.continue_on_error {
                report.stopped_after_wave = Some(wave);
                emit(&on, FleetEvent::Stopped { wave, failures });
            }
        }
        Ok(report)
    }

    /// One target's turn: recorded as started, run, timed. `None` when the
    /// rollout was cancelled before it started.
    async fn fleet_turn<'t>(
        &self,
        roll: &Roll<'_, '_>,
        wave: usize,
        t: &'t Target,
    ) -> Option<Turn<'t>> {
        if roll.cancel.is_cancelled() {
            return None;
        }
        let service = self.with_settings(self.target_settings(t));
        let run_id = instar_db::new_run_id();
        let t0 = Instant::now();
        let fail = |error| {
            Err(RunFailure {
                error,
                report: Default::default(),
            })
        };
        let result = if let Err(e) = roll
            .state
            .begin(&t.name, roll.release, wave as i64, &run_id)
        {
            fail(e)
        } else {
            emit(
                roll.on,
                FleetEvent::TargetStarted {
                    target: t.name.clone(),
                    wave,
                },
            );
            match roll.missing.get(&t.name) {
                Some(error) => fail(Error::Config(error.clone())),
                None => {
                    let mut sink = TargetSink {
                        target: &t.name,
                        on: roll.on,
                    };
                    service
                        .run(roll.req, &run_id, roll.cancel.clone(), &mut sink)
                        .await
                }
            }
        };
        Some(Turn {
            target: t,
            run_id,
            took: t0.elapsed(),
            result,
        })
    }

    async fn fleet_wave(
        &self,
        roll: &Roll<'_, '_>,
        wave: usize,
        group: &[Target],
        report: &mut FleetReport,
    ) -> Result<usize, Error> {
        // A target is `running` in the state file from its turn's start: a
        // rollout killed then runs it again (its `up` resumes or finds nothing
        // to do); one whose turn never came keeps its row as it was.
        if !group.is_empty() {
            emit(
                roll.on,
                FleetEvent::WaveStarted {
                    wave,
                    targets: group.len(),
                },
            );
        }
        // Made up front (futures do nothing until polled): a closure inside the
        // stream would make the rollout's task not `Send` (its lifetimes).
        let turns: Vec<_> = group
            .iter()
            .map(|t| self.fleet_turn(roll, wave, t))
            .collect();
        let mut turns = futures_util::stream::iter(turns).buffer_unordered(roll.parallel);
        let mut failures = 0;
        // A state-file error does not drop the runs in flight: they finish,
        // and the error is returned after the wave.
        let mut state_error = None;
        while let Some(turn) = turns.next().await {
            let Some(turn) = turn else {
                report.not_run += 1;
                continue;
            };
            let (outcome, applied, error, version) = turn.outcome();
            let name = &turn.target.name;
            let recorded = roll.state.finish(
                name,
                &Ended {
                    outcome,
                    error: error.as_deref(),
                    duration_ms: turn.took.as_millis() as i64,
                    applied: applied as i64,
                    version: version.as_deref(),
                    run_id: &turn.run_id,
                },
            );
            if let Err(e) = recorded {
                state_error.get_or_insert(e);
            }
            let entry = (name.clone(), error.clone().unwrap_or_default());
            match outcome {
                "failed" => {
                    failures += 1;
                    report.failed.push(entry);
                }
                "stopped" => report.stopped.push(entry),
                _ => report.done += 1,
            }
            emit(
                roll.on,
                FleetEvent::TargetFinished {
                    target: name.clone(),
                    wave,
                    outcome,
                    applied,
                    duration_ms: turn.took.as_millis() as u64,
                    error,
                },
            );
        }
        match state_error {
            Some(e) => Err(e),
            None => Ok(failures),
        }
    }
}
