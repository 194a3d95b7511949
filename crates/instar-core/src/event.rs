//! Typed events a run emits, and the sink that receives them.
//!
//! Libraries never print: the runner reports through an [`EventSink`], and each
//! front door renders events its own way (text, progress bars, JSON lines).

use serde::Serialize;

use crate::history::Direction;

/// Something that happened during a run.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The run holds the lock and has planned its steps under it.
    RunStarted {
        /// The steps it will take, in order.
        plan: Vec<PlanItem>,
    },
    /// The lock was requested and is being waited for.
    LockWaiting {
        /// The lock's name.
        lock: String,
    },
    /// The lock is held.
    LockAcquired {
        /// Milliseconds spent waiting.
        waited_ms: u64,
    },
    /// A backup was written before the run.
    BackupTaken {
        /// The backup's id.
        id: String,
        /// Where it is.
        path: String,
    },
    /// A backup was restored after a failure.
    BackupRestored {
        /// The backup's id.
        id: String,
    },
    /// A migration starts.
    MigrationStarted {
        /// Version text.
        version: String,
        /// Name.
        name: String,
        /// Direction.
        direction: Direction,
        /// Statements in its script.
        statements: usize,
        /// Statements skipped because a previous run already applied them.
        resumed_from: usize,
    },
    /// A statement starts.
    StatementStarted {
        /// Version text.
        version: String,
        /// 0-based index in the script.
        index: usize,
        /// 1-based line in the script.
        line: usize,
        /// Its first line, for display.
        summary: String,
    },
    /// A data migration starts (or resumes) walking its table.
    DataStarted {
        /// Version text.
        version: String,
        /// Rows in the key range fixed when the run began.
        rows_total: u64,
        /// Rows already done by earlier runs (resuming from a checkpoint).
        rows_done: u64,
    },
    /// A batch of a data migration committed with its checkpoint.
    BatchFinished {
        /// Version text.
        version: String,
        /// Batches done so far.
        batch: u64,
        /// Rows the batch's statement reported.
        rows: u64,
        /// Rows done so far (all runs).
        rows_done: u64,
        /// Rows in the key range.
        rows_total: u64,
        /// Throughput of this run so far.
        rows_per_sec: f64,
        /// Estimated time left, from this run's throughput.
        eta_ms: u64,
        /// The last key done, as JSON.
        last_key: String,
    },
    /// The run's owner waits for slices other processes (workers) are walking.
    SlicesWaiting {
        /// Version text.
        version: String,
        /// Rows done so far, by every process.
        rows_done: u64,
        /// Rows in the key range.
        rows_total: u64,
        /// `slice N: holder` of each slice held elsewhere.
        held_by: Vec<String>,
    },
    /// A data migration stopped at a checkpoint because the time budget was spent.
    DataPaused {
        /// Version text.
        version: String,
        /// Rows done so far.
        rows_done: u64,
        /// Rows in the key range.
        rows_total: u64,
    },
    /// What an op of an online migration will do, decided from the catalog
    /// when it was compiled (`add_column`: added N, skipped M).
    OpCompiled {
        /// Version text.
        version: String,
        /// 1-based op number.
        op: usize,
        /// Its line in `migration.toml`.
        line: usize,
        /// What it does.
        summary: String,
    },
    /// One of Instar's own transactions (a data migration's batch) was rolled
    /// back by a serialization failure or a deadlock and runs again.
    Retry {
        /// What is retried (`batch after key 1200 of 0004`).
        what: String,
        /// The engine's error code.
        code: String,
        /// 1-based attempt that failed.
        attempt: u32,
        /// Milliseconds before the next attempt.
        backoff_ms: u64,
    },
    /// A DDL statement of Instar's gave up waiting for a table lock (the
    /// short lock timeout of online work) and will be tried again.
    LockRetry {
        /// What was running (`expanding`, a migration's version …).
        what: String,
        /// 1-based attempt that failed.
        attempt: u32,
        /// Attempts allowed.
        of: u32,
        /// Milliseconds before the next attempt.
        backoff_ms: u64,
        /// The sessions holding locks on the tables, as far as the engine tells.
        holders: String,
    },
    /// A migration finished.
    MigrationFinished {
        /// Version text.
        version: String,
        /// Direction.
        direction: Direction,
        /// Milliseconds it took.
        duration_ms: u64,
        /// Rows its statements reported.
        rows_affected: u64,
    },
    /// A migration failed.
    MigrationFailed {
        /// Version text.
        version: String,
        /// The message.
        error: String,
    },
    /// The run finished.
    RunFinished {
        /// Migrations applied or reverted.
        migrations: usize,
        /// Milliseconds the whole run took.
        duration_ms: u64,
        /// Whether it stopped early because it was cancelled (at a safe point).
        cancelled: bool,
    },
}

/// One step of a run's plan, as announced by [`Event::RunStarted`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanItem {
    /// Version text.
    pub version: String,
    /// Name.
    pub name: String,
    /// Which script.
    pub direction: Direction,
    /// `schema`, `data` or `repeatable`.
    pub kind: String,
}

/// An event as delivered to subscribers: the run it belongs to, its place in
/// that run's stream (from 1, without gaps), and when it happened. `E` is a
/// run's [`Event`], or another stream's (a fleet rollout's).
#[derive(Debug, Clone, Serialize)]
pub struct Stamped<E = Event> {
    /// The run's id.
    pub run_id: String,
    /// 1 for the run's first event, then +1 per event.
    pub seq: u64,
    /// When it happened (RFC 3339 UTC).
    pub at: String,
    /// What happened.
    #[serde(flatten)]
    pub event: E,
}

/// Receives the events of a run. Sinks are `Send` so that a run can move
/// between the threads of a multi-threaded runtime.
pub trait EventSink: Send {
    /// Called for every event, in order.
    fn event(&mut self, event: &Event);
}

/// A sink that drops every event.
#[derive(Debug, Default)]
pub struct NullSink;

impl EventSink for NullSink {
    fn event(&mut self, _: &Event) {}
}

impl EventSink for Vec<Event> {
    fn event(&mut self, event: &Event) {
        self.push(event.clone());
    }
}
