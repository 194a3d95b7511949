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
use instar_db::CancelToken;
use instar_service::fleet::{FleetEvent, FleetOptions, FleetWatch};
use instar_service::RunEvents;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{body, sse, to_json, Answer, ApiError, EventsQuery};
use crate::App;

/// One rollout started over HTTP.
pub struct FleetRun {
    id: String,
    started_at: String,
    events: RunEvents<FleetEvent>,
    watch: FleetWatch,
    cancel: CancelToken,
}

impl FleetRun {
    fn running(&self) -> bool {
        self.watch.end().is_none()
    }

    /// Its state, and every tenant's (folded from its events as they came).
    fn view(&self) -> Value {
        let outcome = match self.watch.end() {
            None => json!({"state": "running"}),
            Some(Ok(report)) => json!({"state": "finished", "report": report}),
            Some(Err(error)) => json!({"state": "failed", "error": error}),
        };
        let (counts, targets) = self.watch.progress();
        json!({
            "run_id": self.id,
            "started_at": self.started_at,
            "outcome": outcome,
            "events": self.events.last_seq(),
            "counts": counts,
            "targets": targets,
        })
    }
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

    /// A rollout under way, if any.
    fn running_one(&self) -> Option<Arc<FleetRun>> {
        self.all
            .lock()
            .ok()?
            .values()
            .find(|r| r.running())
            .cloned()
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
    /// The plan only: waves, each tenant's pending migrations, the SQL.
    #[serde(default)]
    dry_run: bool,
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
    if b.dry_run {
        let plan = app
            .service
            .fleet_plan(
                b.parallel
                    .unwrap_or(app.service.fleet_config().map_or(1, |c| c.parallel)),
            )
            .await
            .map_err(ApiError::service)?;
        return Ok(Json(json!({"dry_run": true, "plan": plan})).into_response());
    }
    if let Some(r) = app.fleet_runs.running_one() {
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
    // The rollout lock decides between two requests that both got here.
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
        watch: handle.watch(),
        cancel: handle.cancel_token(),
    });
    app.fleet_runs
        .all
        .lock()
        .map_err(|_| ApiError::internal("the rollout registry is poisoned"))?
        .insert(run.id.clone(), run.clone());
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
