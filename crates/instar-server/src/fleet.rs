//! The fleet over HTTP: its state (`GET /fleet`, `GET /fleet/targets`) and
//! rollouts started by id (`POST /fleet/runs`), each with its events as
//! Server-Sent Events and a view of every tenant's progress computed from
//! them. A rollout takes the fleet's rollout lock before the answer: a
//! second one — this server's or an `instar fleet up` anywhere on the same
//! state file — gets `409`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::Stream;
use instar_core::event::Stamped;
use instar_db::CancelToken;
use instar_service::fleet::{FleetEvent, FleetOptions, FleetReport};
use instar_service::RunEvents;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::api::{body, sse, to_json, Answer, ApiError, EventsQuery};
use crate::App;

/// How a rollout ended, or that it has not.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Outcome {
    /// Under way.
    Running,
    /// Ended (possibly stopped after a wave, or cancelled: see the report).
    Finished {
        /// What it did.
        report: FleetReport,
    },
    /// Stopped by an error (the fleet's list, its state file).
    Failed {
        /// The error.
        error: String,
    },
}

/// One rollout started over HTTP.
pub struct FleetRun {
    id: String,
    started_at: String,
    events: RunEvents<FleetEvent>,
    cancel: CancelToken,
    outcome: Mutex<Outcome>,
}

impl FleetRun {
    fn running(&self) -> bool {
        self.outcome
            .lock()
            .map(|o| matches!(*o, Outcome::Running))
            .unwrap_or(false)
    }

    /// Its state, and every tenant's from its events.
    fn view(&self) -> Value {
        let outcome = self
            .outcome
            .lock()
            .map(|o| o.clone())
            .unwrap_or(Outcome::Running);
        let events = self.events.so_far();
        let (counts, targets) = tenants(&events);
        json!({
            "run_id": self.id,
            "started_at": self.started_at,
            "outcome": outcome,
            "events": events.last().map_or(0, |e| e.seq),
            "counts": counts,
            "targets": targets,
        })
    }
}

/// Per tenant of the rollout: its wave, state (`pending` until its wave,
/// `queued`, `running`, `done`, `failed`), the migration it is at, its error.
fn tenants(events: &[Stamped<FleetEvent>]) -> (BTreeMap<&'static str, usize>, Vec<Value>) {
    let mut order: Vec<String> = Vec::new();
    let mut by: HashMap<String, Value> = HashMap::new();
    for e in events {
        match &e.event {
            FleetEvent::Planned { waves, .. } => {
                for (w, names) in waves.iter().enumerate() {
                    for n in names {
                        order.push(n.clone());
                        by.insert(
                            n.clone(),
                            json!({"target": n, "wave": w, "state": "pending"}),
                        );
                    }
                }
            }
            FleetEvent::WaveStarted { wave, .. } => {
                for v in by.values_mut() {
                    if v["wave"] == *wave && v["state"] == "pending" {
                        v["state"] = json!("queued");
                    }
                }
            }
            FleetEvent::TargetStarted { target, .. } => {
                if let Some(v) = by.get_mut(target) {
                    v["state"] = json!("running");
                }
            }
            FleetEvent::Migration {
                target,
                version,
                rows_done,
                rows_total,
                ..
            } => {
                if let Some(v) = by.get_mut(target) {
                    v["migration"] = json!(version);
                    if let (Some(d), Some(t)) = (rows_done, rows_total) {
                        v["rows_done"] = json!(d);
                        v["rows_total"] = json!(t);
                    }
                }
            }
            FleetEvent::TargetFinished {
                target,
                applied,
                duration_ms,
                error,
                ..
            } => {
                if let Some(v) = by.get_mut(target) {
                    v["state"] = json!(if error.is_some() { "failed" } else { "done" });
                    v["applied"] = json!(applied);
                    v["duration_ms"] = json!(duration_ms);
                    if let Some(e) = error {
                        v["error"] = json!(e);
                    }
                }
            }
            FleetEvent::Stopped { .. } | FleetEvent::Cancelled => {}
        }
    }
    let mut counts = BTreeMap::new();
    let targets: Vec<Value> = order
        .iter()
        .filter_map(|n| by.remove(n))
        .inspect(|v| {
            let state = match v["state"].as_str() {
                Some("queued") => "queued",
                Some("running") => "running",
                Some("done") => "done",
                Some("failed") => "failed",
                _ => "pending",
            };
            *counts.entry(state).or_insert(0) += 1;
        })
        .collect();
    (counts, targets)
}

/// The rollouts this server started.
#[derive(Default)]
pub struct FleetRuns {
    all: Mutex<BTreeMap<String, Arc<FleetRun>>>,
}

impl FleetRuns {
    fn get(&self, id: &str) -> Result<Arc<FleetRun>, ApiError> {
        self.all
            .lock()
            .ok()
            .and_then(|all| all.get(id).cloned())
            .ok_or_else(|| ApiError::not_found(format!("no fleet rollout {id} on this server")))
    }

    /// The rollouts under way.
    pub fn running(&self) -> usize {
        self.all
            .lock()
            .map(|all| all.values().filter(|r| r.running()).count())
            .unwrap_or(0)
    }
}

/// `GET /fleet`: the fleet's state; `?target=T` one tenant's record (404 when none).
pub async fn fleet(
    State(app): State<Arc<App>>,
    Query(q): Query<HashMap<String, String>>,
) -> Answer {
    match q.get("target") {
        Some(t) => match app.service.fleet_target(t).map_err(ApiError::service)? {
            Some(row) => to_json(&row),
            None => Err(ApiError::not_found(format!(
                "{t} has no record in the fleet's state"
            ))),
        },
        None => to_json(&app.service.fleet_status().map_err(ApiError::service)?),
    }
}

/// `GET /fleet/targets`: every target of the fleet with its recorded state.
pub async fn targets(State(app): State<Arc<App>>) -> Answer {
    let grid = app.service.fleet_grid().await.map_err(ApiError::service)?;
    to_json(&grid)
}

/// The body of `POST /fleet/runs`: `fleet up`'s options.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RolloutBody {
    parallel: Option<usize>,
    max_failures: Option<usize>,
    #[serde(default)]
    continue_on_error: bool,
}

/// `POST /fleet/runs`: starts a rollout (202 with its id; 409 while one is
/// under way here or anywhere on the same state file).
pub async fn start(
    State(app): State<Arc<App>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let b: RolloutBody = body(raw)?;
    if b.parallel == Some(0) {
        return Err(ApiError::bad_request(
            "field `parallel`: must be at least 1",
        ));
    }
    let mut all = app
        .fleet_runs
        .all
        .lock()
        .map_err(|_| ApiError::internal("the rollout registry is poisoned"))?;
    if let Some(r) = all.values().find(|r| r.running()) {
        return Err(ApiError::conflict(
            format!(
                "fleet rollout {} is in progress; follow it at /fleet/runs/{}/events",
                r.id, r.id
            ),
            &r.id,
        ));
    }
    let opts = FleetOptions {
        parallel: b.parallel,
        max_failures: b.max_failures,
        continue_on_error: b.continue_on_error,
        ..FleetOptions::default()
    };
    let handle = app.service.start_fleet(opts).map_err(|e| {
        if e.to_string()
            .starts_with(instar_service::fleet::state::BUSY)
        {
            ApiError::busy(e.to_string())
        } else {
            ApiError::service(e)
        }
    })?;
    let run = Arc::new(FleetRun {
        id: handle.id().to_string(),
        started_at: instar_core::time::now_rfc3339(),
        events: handle.events(),
        cancel: handle.cancel_token(),
        outcome: Mutex::new(Outcome::Running),
    });
    all.insert(run.id.clone(), run.clone());
    let watched = run.clone();
    tokio::spawn(async move {
        let outcome = match handle.wait().await {
            Ok(report) => Outcome::Finished { report },
            Err(e) => Outcome::Failed {
                error: e.to_string(),
            },
        };
        if let Ok(mut o) = watched.outcome.lock() {
            *o = outcome;
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "run_id": run.id,
            "events": format!("/fleet/runs/{}/events", run.id),
            "progress": format!("/fleet/runs/{}", run.id),
        })),
    )
        .into_response())
}

/// `GET /fleet/runs/{id}`: the rollout's state and every tenant's.
pub async fn progress(State(app): State<Arc<App>>, Path(id): Path<String>) -> Answer {
    Ok(Json(app.fleet_runs.get(&id)?.view()))
}

/// `POST /fleet/runs/{id}/cancel`: no tenant starts after it; the running
/// ones stop at their next safe point.
pub async fn cancel(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let run = app.fleet_runs.get(&id)?;
    run.cancel.cancel();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"run_id": id, "cancelling": run.running()})),
    )
        .into_response())
}

/// `GET /fleet/runs/{id}/events`: the rollout's events as Server-Sent
/// Events (`Last-Event-ID` or `?after=N` replays what came after N).
pub async fn events(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, std::convert::Infallible>>>, ApiError> {
    let run = app.fleet_runs.get(&id)?;
    sse(&run.events, &q, &headers)
}
