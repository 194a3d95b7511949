//! A run over a store: under the run lock, a backup, then each step's walks,
//! each step ending with one atomic batch (checkpoints cleared, history
//! entry, store version). A failure restores the backup unless told not to
//! (or unless the application changed records during the run).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use instar_core::event::{Event, EventSink, PlanItem};
use instar_core::history::Direction;

use crate::history::{self, HistoryEntry};
use crate::steps::{LensMove, RecordsMove};
use crate::walk::{self, Rewrite, WalkEnd, WalkOptions};
use crate::{backup, keys, Batch, Error, KvCollection, KvStore, RecordMigration};

/// What one step does.
#[derive(Clone)]
pub enum StepKind {
    /// Rust record migrations (one per prefix).
    Records {
        /// The migrations.
        migrations: Vec<Arc<dyn RecordMigration>>,
        /// The version of a record without a version field.
        default_version: String,
        /// The newest version any migration knows.
        latest: String,
    },
    /// A collection moved by its lenses to a version.
    Lens {
        /// The collection.
        collection: Arc<KvCollection>,
        /// The target version of its records.
        to: String,
    },
}

/// One step of a plan: the store goes from version `from` to `version`.
#[derive(Clone)]
pub struct Step {
    /// The store's version after it.
    pub version: String,
    /// The store's version before it.
    pub from: String,
    /// Its name.
    pub name: String,
    /// What it does.
    pub kind: StepKind,
    /// Recorded in the history (lens fingerprint, migration names).
    pub fingerprint: Option<String>,
    /// Its own batch size and error policy (a documents migration's), over the run's.
    pub walk: Option<(usize, instar_core::meta::OnError)>,
}

impl Step {
    fn rewrites(&self) -> Vec<Box<dyn Rewrite + '_>> {
        match &self.kind {
            StepKind::Records {
                migrations,
                default_version,
                latest,
            } => migrations
                .iter()
                .map(|m| {
                    Box::new(RecordsMove {
                        migration: m.clone(),
                        default_version: default_version.clone(),
                        latest: latest.clone(),
                    }) as Box<dyn Rewrite>
                })
                .collect(),
            StepKind::Lens { collection, to } => vec![Box::new(LensMove {
                collection: collection.clone(),
                to: to.clone(),
                step: format!("lens:{}:{}", self.version, collection.name),
            })],
        }
    }

    fn kind_name(&self) -> &'static str {
        match self.kind {
            StepKind::Records { .. } => "records",
            StepKind::Lens { .. } => "lens",
        }
    }

    fn prefixes(&self) -> Vec<String> {
        self.rewrites()
            .iter()
            .map(|r| keys::show(r.prefix()))
            .collect()
    }
}

/// How a run goes.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Batches, error policy, time budget, cancel.
    pub walk: WalkOptions,
    /// Where the backup before the run goes (`None`: no backup).
    pub backup_dir: Option<PathBuf>,
    /// `false` leaves a failed run as it stopped (each batch whole) instead
    /// of restoring the backup.
    pub no_restore: bool,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RunReport {
    /// The steps completed, by name.
    pub applied: Vec<String>,
    /// The store's version at the end.
    pub version: Option<String>,
    /// The backup taken before it.
    pub backup: Option<String>,
    /// Stopped at a checkpoint (time budget, cancel): run again to go on.
    pub paused: bool,
    /// Records rewritten.
    pub records_changed: u64,
    /// Records skipped (`on_error = "skip"`).
    pub records_skipped: u64,
    /// A run that a killed one left was taken over (its marker: `pid@host since`).
    pub resumed_from: Option<String>,
}

/// Runs `steps` on `store` (the plan computed by the caller under no lock is
/// rechecked by `still_pending` under it).
pub fn run(
    store: &dyn KvStore,
    steps: &[Step],
    o: &RunOptions,
    sink: &mut dyn EventSink,
) -> Result<RunReport, Error> {
    let held = history::Held::take(store)?;
    let r = run_locked(store, steps, o, sink, held.taken_over.clone());
    let unlocked = held.release();
    let report = r?;
    unlocked?;
    Ok(report)
}

/// Walks of one rewrite at most, while the application keeps changing
/// records under them.
const MAX_PASSES: usize = 3;

/// What the failure path needs to know of the run.
struct RunState {
    backup: Option<backup::KvBackup>,
    no_restore: bool,
    /// The application's commits through this handle when the run began.
    foreign_at_start: u64,
    /// The run took over one a killed process left.
    resumed: bool,
}

fn run_locked(
    store: &dyn KvStore,
    steps: &[Step],
    o: &RunOptions,
    sink: &mut dyn EventSink,
    old: Option<history::RunMarker>,
) -> Result<RunReport, Error> {
    let started = Instant::now();
    let foreign_at_start = store.foreign_commits();
    let mut report = RunReport {
        resumed_from: old.map(|m| format!("{}@{} since {}", m.pid, m.host, m.started)),
        ..RunReport::default()
    };
    // Skip the steps already applied (another run may have gone first).
    let done = history::version(store)?.map(|v| v.version);
    let start = match &done {
        Some(v) => steps
            .iter()
            .position(|s| s.from == *v)
            .unwrap_or(steps.len()),
        None => 0,
    };
    let steps = &steps[start.min(steps.len())..];
    sink.event(&Event::RunStarted {
        plan: steps
            .iter()
            .map(|s| PlanItem {
                version: s.version.clone(),
                name: s.name.clone(),
                direction: Direction::Up,
                kind: s.kind_name().into(),
            })
            .collect(),
    });
    report.version = done;
    if steps.is_empty() {
        sink.event(&Event::RunFinished {
            migrations: 0,
            duration_ms: 0,
            cancelled: false,
        });
        return Ok(report);
    }
    let backup = match &o.backup_dir {
        Some(dir) => {
            let b = backup::take(
                store,
                dir,
                "checkpoint",
                &format!("before {}", steps[0].name),
            )?;
            sink.event(&Event::BackupTaken {
                id: b.id.clone(),
                path: b.path.display().to_string(),
            });
            Some(b)
        }
        None => None,
    };
    report.backup = backup.as_ref().map(|b| b.id.clone());
    let state = RunState {
        backup,
        no_restore: o.no_restore,
        foreign_at_start,
        resumed: report.resumed_from.is_some(),
    };
    for step in steps {
        match run_step(store, step, o, sink, report.backup.clone()) {
            Ok(Some(entry)) => {
                report.records_changed += entry.records_changed;
                report.records_skipped += entry.records_skipped;
                report.applied.push(step.name.clone());
                report.version = Some(step.version.clone());
            }
            Ok(None) => {
                report.paused = true;
                break;
            }
            Err((e, conflicts)) => {
                sink.event(&Event::MigrationFailed {
                    version: step.version.clone(),
                    error: e.to_string(),
                });
                return Err(fail(store, step, e, &state, conflicts, sink));
            }
        }
    }
    sink.event(&Event::RunFinished {
        migrations: report.applied.len(),
        duration_ms: started.elapsed().as_millis() as u64,
        cancelled: report.paused,
    });
    Ok(report)
}

/// One step: its walks, then its closing batch. `None`: paused at a checkpoint.
fn run_step(
    store: &dyn KvStore,
    step: &Step,
    o: &RunOptions,
    sink: &mut dyn EventSink,
    backup: Option<String>,
) -> Result<Option<HistoryEntry>, (Error, u64)> {
    let t = Instant::now();
    let started_at = instar_core::time::now_rfc3339();
    sink.event(&Event::MigrationStarted {
        version: step.version.clone(),
        name: step.name.clone(),
        direction: Direction::Up,
        statements: 0,
        resumed_from: 0,
    });
    let rewrites = step.rewrites();
    let (mut changed, mut skipped, mut conflicts) = (0, 0, 0);
    let mut counts = Vec::new();
    let mut wo = o.walk.clone();
    if let Some((batch, on_error)) = step.walk {
        wo.batch_size = batch;
        wo.on_error = on_error;
    }
    for rw in &rewrites {
        // A record the application changed under a batch was left as it
        // wrote it: walk again (from the start; records already at the
        // target are skipped) so that one it wrote at the old version is
        // migrated too, from what it wrote. Bounded: a writer that keeps
        // racing the walk leaves the rest to the next run.
        let mut total = None;
        for pass in 1..=MAX_PASSES {
            let ck = match walk::walk(store, rw.as_ref(), &wo, &step.version, sink) {
                Ok(WalkEnd::Done(ck)) => ck,
                Ok(WalkEnd::Paused(_)) => return Ok(None),
                Err(e) => return Err((e, conflicts)),
            };
            total.get_or_insert(ck.total);
            changed += ck.changed;
            skipped += ck.skipped;
            conflicts += ck.conflicts;
            if ck.conflicts == 0 || pass == MAX_PASSES {
                break;
            }
            let mut b = Batch::instar();
            b.delete(keys::checkpoint(&rw.step()));
            store.commit(b).map_err(|e| (e.into(), conflicts))?;
        }
        let after = walk::count(store, rw.prefix()).map_err(|e| (e, conflicts))?;
        counts.push((keys::show(rw.prefix()), total.unwrap_or(after), after));
    }
    let entry = HistoryEntry {
        seq: history::next_seq(store).map_err(|e| (e, conflicts))?,
        kind: step.kind_name().into(),
        name: step.name.clone(),
        from: step.from.clone(),
        to: step.version.clone(),
        prefixes: step.prefixes(),
        counts,
        records_changed: changed,
        records_skipped: skipped,
        records_left_to_the_application: conflicts,
        started_at,
        duration_ms: t.elapsed().as_millis() as u64,
        by: history::me(),
        fingerprint: step.fingerprint.clone(),
        backup,
        error: None,
    };
    let mut b = Batch::instar();
    for rw in &rewrites {
        b.delete(keys::checkpoint(&rw.step()));
    }
    history::add(&mut b, &entry);
    history::set_version(&mut b, &step.version);
    store.commit(b).map_err(|e| (e.into(), conflicts))?;
    sink.event(&Event::MigrationFinished {
        version: step.version.clone(),
        direction: Direction::Up,
        duration_ms: entry.duration_ms,
        rows_affected: changed,
    });
    Ok(Some(entry))
}

/// After a failed step: the backup restored (unless `--no-restore`, or the
/// application changed records meanwhile, which a restore would lose), the
/// failure recorded in the history, and the error saying what state the
/// store is in and what to do.
fn fail(
    store: &dyn KvStore,
    step: &Step,
    e: Error,
    run: &RunState,
    conflicts: u64,
    sink: &mut dyn EventSink,
) -> Error {
    let backup = run.backup.as_ref();
    // The application's writes during the run: records it changed under a
    // walk, and every commit of its own through this handle.
    let app_commits = store.foreign_commits() - run.foreign_at_start;
    let app_wrote = conflicts > 0 || app_commits > 0;
    let restored = match backup {
        Some(b) if !run.no_restore && !app_wrote => match store.restore(&b.path) {
            Ok(()) => {
                sink.event(&Event::BackupRestored { id: b.id.clone() });
                Ok(b.id.clone())
            }
            Err(err) => Err(format!("restoring backup {} failed too: {err}", b.id)),
        },
        _ => Err(String::new()),
    };
    let state = match (&restored, backup) {
        (Ok(id), _) if run.resumed => format!("the store was restored from backup {id}, as it was when this run began; it resumed a run a killed process left, whose committed batches stay at their new version (each batch whole)"),
        (Ok(id), _) => format!("the store was restored from backup {id}, as it was before the run"),
        (Err(why), Some(b)) if !why.is_empty() => format!("{why}; each batch is whole (records at their old or new version); `instar restore {}` puts the backup back", b.id),
        (Err(_), Some(b)) if app_wrote && !run.no_restore => format!("not restored: the application wrote to the store during the run ({app_commits} commits; {conflicts} records left as it wrote them), which a restore would lose; each batch is whole, and running again resumes from the checkpoint (`instar restore {}` if you choose to)", b.id),
        (Err(_), Some(b)) => format!("left as it stopped (--no-restore): each batch is whole; fix the cause and run again to resume from the checkpoint, or `instar restore {}`", b.id),
        (Err(_), None) => "each batch is whole (records at their old or new version); fix the cause and run again to resume from the checkpoint".into(),
    };
    // Record the failure (after the restore, so that it stays).
    let entry = HistoryEntry {
        seq: history::next_seq(store).unwrap_or(0),
        kind: "failed".into(),
        name: step.name.clone(),
        from: step.from.clone(),
        to: step.version.clone(),
        prefixes: step.prefixes(),
        counts: Vec::new(),
        records_changed: 0,
        records_skipped: 0,
        records_left_to_the_application: conflicts,
        started_at: instar_core::time::now_rfc3339(),
        duration_ms: 0,
        by: history::me(),
        fingerprint: step.fingerprint.clone(),
        backup: backup.map(|b| b.id.clone()),
        error: Some(e.to_string()),
    };
    let mut b = Batch::instar();
    history::add(&mut b, &entry);
    let _ = store.commit(b);
    Error::Failed {
        step: step.name.clone(),
        version: step.version.clone(),
        cause: Box::new(e),
        state,
    }
}
