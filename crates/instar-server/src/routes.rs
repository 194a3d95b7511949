//! The route table: every endpoint once, with its access and summary. The
//! router ([`router`]) and the OpenAPI document ([`crate::openapi`]) are both
//! made from it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{self, MethodRouter};
use axum::Router;

use crate::api::{self, ApiError};
use crate::{auth, fleet, App};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone who reaches the server (health, the OpenAPI document, the console).
    Open,
    /// Anyone, or token holders with `--require-token-for-reads`.
    Read,
    /// Token holders only: it changes something.
    Write,
}

/// One endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// `GET`, `POST`, `PUT`.
    pub method: &'static str,
    /// The path, `{name}` for a parameter.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// What it does.
    pub summary: &'static str,
}

const fn r(
    method: &'static str,
    path: &'static str,
    access: Access,
    summary: &'static str,
) -> Route {
    Route {
        method,
        path,
        access,
        summary,
    }
}

/// Every endpoint.
pub const ROUTES: &[Route] = &[
    r("GET", "/", Access::Open, "The web console (HTML): status, timeline, pending SQL, run with the token, live progress, backups."),
    r("GET", "/health", Access::Open, "The server answers."),
    r("GET", "/openapi.json", Access::Open, "This API, as OpenAPI 3.1 (made from the route table)."),
    r("GET", "/status", Access::Read, "What `instar status` shows: every migration's standing, the schema version, problems, checkpoints."),
    r("GET", "/plan", Access::Read, "What a run would do, with the exact SQL: `?to=V`, `?direction=down&steps=N`."),
    r("GET", "/migrations/pending", Access::Read, "The pending migrations."),
    r("GET", "/migrations/history", Access::Read, "The history table, oldest first."),
    r("POST", "/migrations/execute/{version}", Access::Write, "Applies the pending migrations up to and including {version} (202 with the run id; 409 while a run is in progress)."),
    r("POST", "/migrations/execute-all", Access::Write, "Applies every pending migration (202 with the run id; 409 while a run is in progress)."),
    r("POST", "/migrations/rollback/{version}", Access::Write, "Reverts {version} and every migration applied after it (202 with the run id)."),
    r("GET", "/migrations/progress/{run_id}", Access::Read, "A run's state and, per migration, rows done, rate and ETA."),
    r("GET", "/migrations/running", Access::Read, "The runs under way."),
    r("POST", "/migrations/validate/{version}", Access::Read, "The problems `instar validate` finds with {version}."),
    r("POST", "/runs", Access::Write, "Starts `up` or `down` with the CLI's options (`dry_run`: the plan only)."),
    r("GET", "/runs/{run_id}", Access::Read, "A run's state and progress."),
    r("POST", "/runs/{run_id}/cancel", Access::Write, "Stops a run at its next safe point (a statement boundary or a batch checkpoint)."),
    r("GET", "/runs/{run_id}/events", Access::Read, "A run's events as Server-Sent Events; `Last-Event-ID` or `?after=N` replays what came after N."),
    r("GET", "/backups", Access::Read, "The backups taken."),
    r("POST", "/backups", Access::Write, "Takes a backup now."),
    r("GET", "/collections/{collection}/documents/{key}", Access::Read, "A document read at `?at=V` (default: the current version)."),
    r("PUT", "/collections/{collection}/documents/{key}", Access::Write, "Stores a document written at `?at=V`."),
    r("GET", "/fleet", Access::Read, "The fleet's state ([fleet] of instar.toml): tenants per state and last migration, the failed ones with their errors, the slowest; `?target=T` one tenant's record."),
    r("GET", "/fleet/targets", Access::Read, "Every target the fleet lists (its list resolved now) with its state in this release: pending, running, done, failed, stopped."),
    r("POST", "/fleet/runs", Access::Write, "Starts `fleet up` (`parallel`, `max_failures`, `continue_on_error`; `dry_run`: the plan only, each tenant read): 202 with the rollout's id; 409 while a rollout holds the fleet's lock (here or an `instar fleet up` elsewhere)."),
    r("GET", "/fleet/runs/{run_id}", Access::Read, "A rollout's state and every tenant's: wave, state, the migration it is at, rows, error."),
    r("POST", "/fleet/runs/{run_id}/cancel", Access::Write, "Stops a rollout: no tenant starts after it; the running ones stop at their next safe point."),
    r("GET", "/fleet/runs/{run_id}/events", Access::Read, "A rollout's events as Server-Sent Events (planned, wave_started, target_started, migration, target_finished, stopped, cancelled); `Last-Event-ID` or `?after=N` replays."),
    r("GET", "/metrics", Access::Read, "Prometheus metrics."),
];

/// The handler of a route of the table.
fn handler(route: &Route) -> MethodRouter<Arc<App>> {
    use routing::{get, post, put};
    match (route.method, route.path) {
        ("GET", "/") => get(api::console),
        ("GET", "/health") => get(api::health),
        ("GET", "/openapi.json") => get(api::openapi),
        ("GET", "/status") => get(api::status),
        ("GET", "/plan") => get(api::plan),
        ("GET", "/migrations/pending") => get(api::pending),
        ("GET", "/migrations/history") => get(api::history),
        ("POST", "/migrations/execute/{version}") => post(api::execute),
        ("POST", "/migrations/execute-all") => post(api::execute_all),
        ("POST", "/migrations/rollback/{version}") => post(api::rollback),
        ("GET", "/migrations/progress/{run_id}") => get(api::progress),
        ("GET", "/migrations/running") => get(api::running),
        ("POST", "/migrations/validate/{version}") => post(api::validate),
        ("POST", "/runs") => post(api::start_run),
        ("GET", "/runs/{run_id}") => get(api::progress),
        ("POST", "/runs/{run_id}/cancel") => post(api::cancel),
        ("GET", "/runs/{run_id}/events") => get(api::events),
        ("GET", "/backups") => get(api::backups),
        ("POST", "/backups") => post(api::take_backup),
        ("GET", "/collections/{collection}/documents/{key}") => get(api::get_document),
        ("PUT", "/collections/{collection}/documents/{key}") => put(api::put_document),
        ("GET", "/fleet") => get(fleet::fleet),
        ("GET", "/fleet/targets") => get(fleet::targets),
        ("POST", "/fleet/runs") => post(fleet::start),
        ("GET", "/fleet/runs/{run_id}") => get(fleet::progress),
        ("POST", "/fleet/runs/{run_id}/cancel") => post(fleet::cancel),
        ("GET", "/fleet/runs/{run_id}/events") => get(fleet::events),
        ("GET", "/metrics") => get(api::metrics),
        (m, p) => unreachable!("route {m} {p} is in the table without a handler"),
    }
}

/// The router: every route of the table behind its access check, a body
/// limit, a timeout (not for event streams), JSON answers for unknown routes
/// and methods.
pub fn router(app: Arc<App>) -> Router {
    let mut paths: BTreeMap<&str, MethodRouter<Arc<App>>> = BTreeMap::new();
    for route in ROUTES {
        let h = handler(route);
        let h = match route.access {
            Access::Open => h,
            Access::Read => h.route_layer(from_fn_with_state(app.clone(), auth::read)),
            Access::Write => h.route_layer(from_fn_with_state(app.clone(), auth::write)),
        };
        let merged = match paths.remove(route.path) {
            Some(existing) => existing.merge(h),
            None => h,
        };
        paths.insert(route.path, merged.fallback(method_not_allowed));
    }
    let mut router = Router::new();
    for (path, mr) in paths {
        router = router.route(path, mr);
    }
    router
        .fallback(not_found)
        .layer(from_fn_with_state(app.clone(), timeout))
        .layer(axum::middleware::from_fn(log))
        .layer(DefaultBodyLimit::max(app.config.body_limit))
        .with_state(app)
}

async fn not_found(req: Request) -> Response {
    ApiError::not_found(format!(
        "no route {} {} (see /openapi.json)",
        req.method(),
        req.uri().path()
    ))
    .into_response()
}

async fn method_not_allowed(req: Request) -> Response {
    let mut r = ApiError::bad_request(format!(
        "{} is not a method of {} (see /openapi.json)",
        req.method(),
        req.uri().path()
    ))
    .into_response();
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}

/// One structured log line per request (`tracing`, target `instar::http`):
/// method, path (no query: it may hold a key), status, milliseconds.
async fn log(req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let t = std::time::Instant::now();
    let r = next.run(req).await;
    tracing::info!(
        target: "instar::http",
        method,
        path,
        status = r.status().as_u16(),
        ms = t.elapsed().as_millis() as u64,
        "request"
    );
    r
}

/// Every request but an event stream ends within the configured time.
async fn timeout(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if req.uri().path().ends_with("/events") {
        return next.run(req).await;
    }
    match tokio::time::timeout(app.config.request_timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            let mut r = ApiError::internal(format!(
                "the request took longer than {:?}; a run it started goes on (see /migrations/running)",
                app.config.request_timeout
            ))
            .into_response();
            *r.status_mut() = StatusCode::GATEWAY_TIMEOUT;
            r
        }
    }
}
