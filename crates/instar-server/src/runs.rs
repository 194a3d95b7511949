//! Runs started over HTTP, by id. One runs at a time per server (a second
//! gets `409` with the running one's id); a run started by the CLI meanwhile
//! meets the same database lock as always. Each run's events are kept (by
//! the service) so that a client reconnecting with `Last-Event-ID` misses
//! nothing; its progress is computed from them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use instar_core::event::{Event, Stamped};
use instar_db::runner::Report;
use instar_db::CancelToken;
use instar_service::{RunEvents, RunRequest};
use serde::Serialize;
use serde_json::{json, Value};

use crate::api::ApiError;
use crate::App;

/// How a run ended, or that it has not.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Outcome {
    /// Under way.
    Running,
    /// Finished (possibly cancelled or paused at a checkpoint: see the report).
    Finished {
        /// What it did.
        report: Report,
    },
    /// Stopped by an error.
    Failed {
        /// The error, as the CLI prints it.
        error: String,
        /// What it had done before.
        report: Report,
    },
}

/// One run started over HTTP.
pub struct Run {
    /// Its id (as in its events and history rows).
    pub id: String,
    /// What was asked: `up`, `down`.
    pub action: String,
    /// When it was started (RFC 3339).
    pub started_at: String,
    events: RunEvents,
    cancel: CancelToken,
    outcome: Mutex<Outcome>,
}

impl Run {
    /// Its events from the first kept one.
    pub fn events(&self) -> &RunEvents {
        &self.events
    }

    /// Asks it to stop at its next safe point.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Whether it is still under way.
    pub fn running(&self) -> bool {
        self.outcome
            .lock()
            .map(|o| matches!(*o, Outcome::Running))
            .unwrap_or(false)
    }

    /// Its state, with progress per batched migration from its events.
    pub fn view(&self) -> Value {
        let outcome = self
            .outcome
            .lock()
            .map(|o| o.clone())
            .unwrap_or(Outcome::Running);
        let events = self.events.so_far();
        json!({
            "run_id": self.id,
            "action": self.action,
            "started_at": self.started_at,
            "outcome": outcome,
            "events": events.last().map_or(0, |e| e.seq),
            "migrations": progress(&events),
        })
    }
}

/// The entry of migration `v`, made when first seen (in the order seen).
fn entry<'a>(out: &'a mut Vec<Value>, v: &str) -> &'a mut Value {
    let i = match out.iter().position(|m| m["version"] == v) {
        Some(i) => i,
        None => {
            out.push(json!({"version": v, "state": "running"}));
            out.len() - 1
        }
    };
    &mut out[i]
}

/// Per migration: started, finished, and for batched ones rows, rate and ETA.
fn progress(events: &[Stamped]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for e in events {
        match &e.event {
            Event::MigrationStarted { version, .. } => {
                entry(&mut out, version);
            }
            Event::DataStarted {
                version,
                rows_total,
                rows_done,
            } => {
                let m = entry(&mut out, version);
                m["rows_total"] = json!(rows_total);
                m["rows_done"] = json!(rows_done);
            }
            Event::BatchFinished {
                version,
                rows_done,
                rows_total,
                rows_per_sec,
                eta_ms,
                ..
            } => {
                let m = entry(&mut out, version);
                m["rows_done"] = json!(rows_done);
                m["rows_total"] = json!(rows_total);
                m["rows_per_sec"] = json!(rows_per_sec);
                m["eta_ms"] = json!(eta_ms);
            }
            Event::DataPaused { version, .. } => {
                entry(&mut out, version)["state"] = json!("paused");
            }
            Event::MigrationFinished {
                version,
                duration_ms,
                ..
            } => {
                let m = entry(&mut out, version);
                m["state"] = json!("finished");
                m["duration_ms"] = json!(duration_ms);
            }
            Event::MigrationFailed { version, .. } => {
                entry(&mut out, version)["state"] = json!("failed");
            }
            _ => {}
        }
    }
    out
}

/// The runs this server started.
#[derive(Default)]
pub struct Runs {
    all: Mutex<BTreeMap<String, Arc<Run>>>,
}

impl Runs {
    /// The run `id`.
    pub fn get(&self, id: &str) -> Option<Arc<Run>> {
        self.all.lock().ok()?.get(id).cloned()
    }

    /// The runs under way.
    pub fn running(&self) -> Vec<Arc<Run>> {
        self.all
            .lock()
            .map(|all| all.values().filter(|r| r.running()).cloned().collect())
            .unwrap_or_default()
    }

    /// Starts `req` unless a run is under way (`409` naming it).
    pub fn start(app: &Arc<App>, req: RunRequest, action: &str) -> Result<Arc<Run>, ApiError> {
        let mut all = app
            .runs
            .all
            .lock()
            .map_err(|_| ApiError::internal("the run registry is poisoned"))?;
        if let Some(r) = all.values().find(|r| r.running()) {
            return Err(ApiError::conflict(
                format!(
                    "run {} is in progress; follow it at /runs/{}/events, or wait for it",
                    r.id, r.id
                ),
                &r.id,
            ));
        }
        let handle = app.service.start(req);
        let run = Arc::new(Run {
            id: handle.id().to_string(),
            action: action.to_string(),
            started_at: instar_core::time::now_rfc3339(),
            events: handle.events(),
            cancel: handle.cancel_token(),
            outcome: Mutex::new(Outcome::Running),
        });
        all.insert(run.id.clone(), run.clone());
        app.metrics.started();
        let (watched, app2) = (run.clone(), app.clone());
        tokio::spawn(async move {
            let t = Instant::now();
            let mut events = watched.events.subscribe();
            let count = tokio::spawn({
                let app = app2.clone();
                async move {
                    while let Some(e) = events.next().await {
                        match e.event {
                            Event::BatchFinished { rows, .. } => app.metrics.rows(rows),
                            Event::LockWaiting { .. } => app.metrics.lock_wait(),
                            _ => {}
                        }
                    }
                }
            });
            let result = handle.wait().await;
            let _ = count.await;
            let outcome = match result {
                Ok(report) => {
                    app2.metrics
                        .ended(t.elapsed().as_secs_f64(), false, report.cancelled);
                    Outcome::Finished { report }
                }
                Err(f) => {
                    app2.metrics.ended(t.elapsed().as_secs_f64(), true, false);
                    Outcome::Failed {
                        error: f.error.to_string(),
                        report: f.report,
                    }
                }
            };
            if let Ok(mut o) = watched.outcome.lock() {
                *o = outcome;
            }
        });
        Ok(run)
    }
}
