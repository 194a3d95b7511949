//! A rollout's progress per tenant, folded from its events as they happen
//! (not from a kept backlog: a fleet of thousands outgrows any), and its end.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::{FleetEvent, FleetReport};

/// One tenant in a rollout.
#[derive(Debug, Clone, Serialize)]
pub struct TenantProgress {
    /// The target.
    pub target: String,
    /// Its wave (0 is the canary).
    pub wave: usize,
    /// `pending` (its wave has not begun, or never will), `queued`,
    /// `running`, `done`, `failed`, `stopped` (cancelled or out of time).
    pub state: &'static str,
    /// The migration it is at (or ended with).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migration: Option<String>,
    /// A data migration's rows done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_done: Option<u64>,
    /// A data migration's rows in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_total: Option<u64>,
    /// Migrations applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<usize>,
    /// How long its run took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Why it failed or stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every tenant of a rollout, in plan order.
#[derive(Debug, Default)]
pub struct FleetProgress {
    tenants: Vec<TenantProgress>,
    index: HashMap<String, usize>,
}

impl FleetProgress {
    fn tenant(&mut self, target: &str) -> Option<&mut TenantProgress> {
        let i = *self.index.get(target)?;
        self.tenants.get_mut(i)
    }

    fn waiting_to(&mut self, from: &str, to: &'static str, wave: Option<usize>) {
        for t in &mut self.tenants {
            if t.state == from && wave.is_none_or(|w| t.wave == w) {
                t.state = to;
            }
        }
    }

    /// Takes one event into account.
    pub fn apply(&mut self, e: &FleetEvent) {
        match e {
            FleetEvent::Planned { waves, .. } => {
                self.tenants.clear();
                self.index.clear();
                for (wave, names) in waves.iter().enumerate() {
                    for n in names {
                        self.index.insert(n.clone(), self.tenants.len());
                        self.tenants.push(TenantProgress {
                            target: n.clone(),
                            wave,
                            state: "pending",
                            migration: None,
                            rows_done: None,
                            rows_total: None,
                            applied: None,
                            duration_ms: None,
                            error: None,
                        });
                    }
                }
            }
            FleetEvent::WaveStarted { wave, .. } => {
                self.waiting_to("pending", "queued", Some(*wave))
            }
            FleetEvent::TargetStarted { target, .. } => {
                if let Some(t) = self.tenant(target) {
                    t.state = "running";
                }
            }
            FleetEvent::Migration {
                target,
                version,
                rows_done,
                rows_total,
                ..
            } => {
                if let Some(t) = self.tenant(target) {
                    t.migration = Some(version.clone());
                    t.rows_done = *rows_done;
                    t.rows_total = *rows_total;
                }
            }
            FleetEvent::TargetFinished {
                target,
                outcome,
                applied,
                duration_ms,
                error,
                ..
            } => {
                if let Some(t) = self.tenant(target) {
                    t.state = outcome;
                    t.applied = Some(*applied);
                    t.duration_ms = Some(*duration_ms);
                    t.error.clone_from(error);
                }
            }
            // Tenants that were queued and never started are not run.
            FleetEvent::Cancelled => self.waiting_to("queued", "pending", None),
            FleetEvent::Stopped { .. } => {}
        }
    }

    /// Tenants per state.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for t in &self.tenants {
            *out.entry(t.state).or_insert(0) += 1;
        }
        out
    }

    /// Every tenant, in plan order.
    pub fn tenants(&self) -> &[TenantProgress] {
        &self.tenants
    }
}

/// How a rollout ended: its report, or the error that stopped it.
pub type FleetEnd = Result<FleetReport, String>;

/// A rollout's live view, shared with whoever watches it: every tenant's
/// progress, and how it ended (set before its event stream closes and
/// before its rollout lock is released).
#[derive(Debug, Clone, Default)]
pub struct FleetWatch {
    pub(crate) progress: Arc<Mutex<FleetProgress>>,
    pub(crate) end: Arc<Mutex<Option<FleetEnd>>>,
}

impl FleetWatch {
    /// Tenants per state, and every tenant, now.
    pub fn progress(&self) -> (BTreeMap<&'static str, usize>, Vec<TenantProgress>) {
        let p = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        (p.counts(), p.tenants().to_vec())
    }

    /// How it ended; `None` while it runs.
    pub fn end(&self) -> Option<FleetEnd> {
        self.end.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn apply(&self, e: &FleetEvent) {
        self.progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .apply(e);
    }

    pub(crate) fn ended(&self, end: FleetEnd) {
        *self.end.lock().unwrap_or_else(|e| e.into_inner()) = Some(end);
    }
}
