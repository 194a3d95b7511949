//! A run as a handle: its id, a stream of stamped events that any number of
//! receivers subscribe to (from the first event, whenever they subscribe), a
//! cancel token, and the final report.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use instar_core::event::{Event, EventSink, Stamped};
use instar_core::plan::Target;
use instar_db::runner::Report;
use instar_db::CancelToken;
use tokio::sync::broadcast;

/// What a run should do and how.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// Up to a version, or down by steps or to a version.
    pub target: Target,
    /// Apply the whole run in one transaction (SQLite, PostgreSQL).
    pub single_transaction: bool,
    /// Apply pending migrations older than the newest applied one.
    pub allow_out_of_order: bool,
    /// Do not refuse when applied migrations have no file.
    pub ignore_missing: bool,
    /// Take the automatic backup (default: the settings' `backup`).
    pub backup: Option<bool>,
    /// Restore the automatic backup after a failed non-transactional run
    /// (default: the settings'). See the warning on `Settings::restore_on_failure`.
    pub restore_on_failure: Option<bool>,
    /// Stop data migrations at a checkpoint after this long.
    pub max_duration: Option<Duration>,
    /// Data migrations: walk the key range in this many slices at once.
    pub parallel: usize,
    /// Data migrations: split a new run's key range into this many slices (at
    /// least `parallel`) for workers in other processes to claim.
    pub slices: Option<usize>,
    /// Run even though another tool's history has rows and Instar's has none.
    pub ignore_other_history: bool,
    /// Report every statement as it is sent, not only each migration's first.
    pub every_statement: bool,
}

impl RunRequest {
    /// Apply everything pending, with every default.
    pub fn up() -> Self {
        Self::new(Target::Up { to: None })
    }

    /// A run towards `target`, with every default.
    pub fn new(target: Target) -> Self {
        RunRequest {
            target,
            single_transaction: false,
            allow_out_of_order: false,
            ignore_missing: false,
            backup: None,
            restore_on_failure: None,
            max_duration: None,
            parallel: 1,
            slices: None,
            ignore_other_history: false,
            every_statement: false,
        }
    }
}

/// A failed run: the error, and what the run had done before it (applied
/// migrations, the backup it took).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct RunFailure {
    /// What went wrong.
    #[source]
    pub error: crate::Error,
    /// What was done before it.
    pub report: Report,
}

/// How many events a run keeps for subscribers that arrive late; past it the
/// oldest are dropped (a late subscriber then starts later in the stream).
const BACKLOG: usize = 10_000;

/// The events of one run (a migration run's [`Event`]s, or a fleet
/// rollout's): numbered, timestamped, kept, and broadcast.
pub(crate) struct Hub<E = Event> {
    run_id: String,
    inner: Mutex<HubState<E>>,
    /// `None` marks the end of the run's stream.
    live: broadcast::Sender<Option<Stamped<E>>>,
}

struct HubState<E> {
    seq: u64,
    backlog: VecDeque<Stamped<E>>,
    closed: bool,
}

impl<E: Clone + Send + Sync + 'static> Hub<E> {
    pub(crate) fn new(run_id: String) -> Arc<Hub<E>> {
        let (live, _) = broadcast::channel(4096);
        Arc::new(Hub {
            run_id,
            inner: Mutex::new(HubState {
                seq: 0,
                backlog: VecDeque::new(),
                closed: false,
            }),
            live,
        })
    }

    pub(crate) fn publish(&self, event: &E) {
        let Ok(mut st) = self.inner.lock() else {
            return;
        };
        st.seq += 1;
        let stamped = Stamped {
            run_id: self.run_id.clone(),
            seq: st.seq,
            at: instar_core::time::now_rfc3339(),
            event: event.clone(),
        };
        if st.backlog.len() == BACKLOG {
            st.backlog.pop_front();
        }
        st.backlog.push_back(stamped.clone());
        // No receiver is not an error: nobody is listening yet.
        let _ = self.live.send(Some(stamped));
    }

    /// Marks the stream finished: subscribers end after the last event.
    pub(crate) fn close(&self) {
        // Under the lock, so a subscriber either sees `closed` or gets the marker.
        if let Ok(mut st) = self.inner.lock() {
            st.closed = true;
            let _ = self.live.send(None);
        }
    }

    pub(crate) fn subscribe(&self) -> EventStream<E> {
        // Holding the lock while subscribing: no event is both in the copy and
        // received live, and none falls between the two.
        let Ok(st) = self.inner.lock() else {
            return EventStream {
                backlog: VecDeque::new(),
                live: None,
                last: 0,
            };
        };
        EventStream {
            backlog: st.backlog.clone(),
            live: (!st.closed).then(|| self.live.subscribe()),
            last: 0,
        }
    }

    /// A guard that closes the stream when it is dropped.
    pub(crate) fn closer(self: &Arc<Self>) -> Closer<E> {
        Closer(Arc::clone(self))
    }
}

impl Hub<Event> {
    pub(crate) fn sink(self: &Arc<Self>) -> HubSink {
        HubSink(Arc::clone(self))
    }
}

/// Closes the hub's stream when dropped (the run ended, or its task unwound).
pub(crate) struct Closer<E: Clone + Send + Sync + 'static = Event>(Arc<Hub<E>>);

impl<E: Clone + Send + Sync + 'static> Drop for Closer<E> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The sink a run writes to: every event goes through the hub.
pub(crate) struct HubSink(Arc<Hub>);

impl EventSink for HubSink {
    fn event(&mut self, event: &Event) {
        self.0.publish(event);
    }
}

/// One subscriber's view of a run's events, in order, from the first kept one.
pub struct EventStream<E = Event> {
    backlog: VecDeque<Stamped<E>>,
    live: Option<broadcast::Receiver<Option<Stamped<E>>>>,
    last: u64,
}

impl<E: Clone> EventStream<E> {
    /// The next event, or `None` once the run has finished and every event was seen.
    /// A subscriber too slow for the live channel skips what it missed (the
    /// sequence numbers show the gap).
    pub async fn next(&mut self) -> Option<Stamped<E>> {
        if let Some(e) = self.backlog.pop_front() {
            self.last = e.seq;
            return Some(e);
        }
        let live = self.live.as_mut()?;
        loop {
            match live.recv().await {
                Ok(None) => {
                    self.live = None;
                    return None;
                }
                // Already delivered from the backlog.
                Ok(Some(e)) if e.seq <= self.last => continue,
                Ok(Some(e)) => {
                    self.last = e.seq;
                    return Some(e);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => {
                    self.live = None;
                    return None;
                }
            }
        }
    }
}

/// Subscribes to one run's events, from its first kept one.
pub struct RunEvents<E = Event>(pub(crate) Arc<Hub<E>>);

impl<E> Clone for RunEvents<E> {
    fn clone(&self) -> Self {
        RunEvents(Arc::clone(&self.0))
    }
}

impl<E: Clone + Send + Sync + 'static> RunEvents<E> {
    /// A stream of the run's events from its first kept one.
    pub fn subscribe(&self) -> EventStream<E> {
        self.0.subscribe()
    }

    /// The sequence number of the last event so far (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.0.inner.lock().map(|st| st.seq).unwrap_or(0)
    }

    /// The events kept so far (no waiting).
    pub fn so_far(&self) -> Vec<Stamped<E>> {
        self.0
            .inner
            .lock()
            .map(|st| st.backlog.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl<E> std::fmt::Debug for RunEvents<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RunEvents").field(&self.0.run_id).finish()
    }
}

/// A run that was started: spawned on the runtime, under way or finished.
pub struct RunHandle {
    pub(crate) id: String,
    pub(crate) hub: Arc<Hub>,
    pub(crate) cancel: CancelToken,
    pub(crate) task: tokio::task::JoinHandle<Result<Report, RunFailure>>,
}

impl RunHandle {
    /// The run's id (also in every event and every history row it writes).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A stream of the run's events from its first one, however late this is called.
    pub fn subscribe(&self) -> EventStream {
        self.hub.subscribe()
    }

    /// Asks the run to stop at its next safe point; [`RunHandle::wait`] then
    /// returns a report with `cancelled` set.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Something that subscribes to the run's events later, from anywhere
    /// (cheap to clone; it outlives the handle).
    pub fn events(&self) -> RunEvents {
        RunEvents(Arc::clone(&self.hub))
    }

    /// A clone of the run's cancel token, to cancel it from elsewhere.
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// Waits for the run to end and returns its report.
    pub async fn wait(self) -> Result<Report, RunFailure> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(RunFailure {
                error: crate::Error::Config(format!("the run's task ended abnormally: {e}")),
                report: Report::default(),
            }),
        }
    }
}
