//! The handlers. Every answer is JSON; every error is
//! `{"error": {"code", "message"}}` with the status that fits (400 naming
//! the field, 401/403 for tokens, 404 naming the version or run, 409 for a
//! run in progress, 413 for a body over the limit, 422 for a refused plan).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::Stream;
use instar_core::plan::{Standing, Target};
use instar_service::{RunEvents, RunRequest};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::runs::Runs;
use crate::App;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    run_id: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            run_id: None,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401: no token, or a wrong one.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: the server does not allow it.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404: no such thing.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409: a run is in progress.
    pub fn conflict(message: impl Into<String>, run_id: &str) -> ApiError {
        ApiError {
            run_id: Some(run_id.to_string()),
            ..ApiError::new(StatusCode::CONFLICT, "run_in_progress", message)
        }
    }

    /// 409: another process holds a lock this needs.
    pub fn busy(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "locked", message)
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// An error of the service: 422 for what the project or database refuses.
    pub(crate) fn service(e: instar_service::Error) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "refused", e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(id) = self.run_id {
            error["run_id"] = json!(id);
        }
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}

pub(crate) type Answer = Result<Json<Value>, ApiError>;

/// A JSON body of type `T`: 400 naming the field that is wrong, 413 over the limit.
pub(crate) fn body<T: DeserializeOwned>(raw: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let raw = raw.map_err(|r| {
        let status = r.status();
        ApiError::new(
            status,
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                "too_large"
            } else {
                "bad_request"
            },
            r.body_text(),
        )
    })?;
    let raw: &[u8] = if raw.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &raw
    };
    let de = &mut serde_json::Deserializer::from_slice(raw);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let at = e.path().to_string();
        let inner = e.into_inner();
        if at == "." || at.is_empty() {
            ApiError::bad_request(format!("the body: {inner}"))
        } else {
            ApiError::bad_request(format!("field `{at}`: {inner}"))
        }
    })
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Answer {
    serde_json::to_value(v)
        .map(Json)
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// `GET /`: the web console, served from the binary.
pub async fn console() -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                axum::http::header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
            ),
        ],
        include_str!("console.html"),
    )
        .into_response()
}

/// `GET /health`.
pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /status`.
pub async fn status(State(app): State<Arc<App>>) -> Answer {
    to_json(&app.service.status().await.map_err(ApiError::service)?)
}

/// `GET /migrations/pending`.
pub async fn pending(State(app): State<Arc<App>>) -> Answer {
    let view = app.service.status().await.map_err(ApiError::service)?;
    let pending: Vec<&instar_core::plan::StatusEntry> = view
        .status
        .migrations
        .iter()
        .filter(|m| m.standing == Standing::Pending)
        .collect();
    to_json(&json!({ "pending": pending }))
}

/// `GET /migrations/history`.
pub async fn history(State(app): State<Arc<App>>) -> Answer {
    to_json(&json!({ "history": app.service.history().await.map_err(ApiError::service)? }))
}

/// 404 unless `version` is a migration of the project.
fn known_version(app: &App, version: &str) -> Result<(), ApiError> {
    let source = app.service.load().map_err(ApiError::service)?;
    if source.find(version).is_none() {
        return Err(ApiError::not_found(format!(
            "no migration {version} in the project"
        )));
    }
    Ok(())
}

fn started(run: &crate::runs::Run) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({
            "run_id": run.id,
            "events": format!("/runs/{}/events", run.id),
            "progress": format!("/migrations/progress/{}", run.id),
        })),
    )
        .into_response()
}

/// `POST /migrations/execute/{version}`: pending migrations up to it.
pub async fn execute(
    State(app): State<Arc<App>>,
    Path(version): Path<String>,
) -> Result<Response, ApiError> {
    known_version(&app, &version)?;
    let run = Runs::start(
        &app,
        RunRequest::new(Target::Up { to: Some(version) }),
        "up",
    )?;
    Ok(started(&run))
}

/// `POST /migrations/execute-all`.
pub async fn execute_all(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let run = Runs::start(&app, RunRequest::up(), "up")?;
    Ok(started(&run))
}

/// `POST /migrations/rollback/{version}`: reverts it and everything applied after it.
pub async fn rollback(
    State(app): State<Arc<App>>,
    Path(version): Path<String>,
) -> Result<Response, ApiError> {
    known_version(&app, &version)?;
    let view = app.service.status().await.map_err(ApiError::service)?;
    let order: Vec<&instar_core::plan::StatusEntry> = view.status.migrations.iter().collect();
    let Some(i) = order.iter().position(|m| m.version == version) else {
        return Err(ApiError::not_found(format!("no migration {version}")));
    };
    if !matches!(order[i].standing, Standing::Applied | Standing::Diverged) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_applied",
            format!("migration {version} is not applied; nothing to roll back"),
        ));
    }
    // Down to the migration before it (it stays applied); none: everything.
    let to = if i == 0 {
        "0".to_string()
    } else {
        order[i - 1].version.clone()
    };
    let run = Runs::start(
        &app,
        RunRequest::new(Target::Down {
            to: Some(to),
            steps: None,
        }),
        "down",
    )?;
    Ok(started(&run))
}

/// `GET /migrations/progress/{run_id}` and `GET /runs/{id}`.
pub async fn progress(State(app): State<Arc<App>>, Path(id): Path<String>) -> Answer {
    let run = app
        .runs
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("no run {id} on this server")))?;
    Ok(Json(run.view()))
}

/// `GET /migrations/running`.
pub async fn running(State(app): State<Arc<App>>) -> Answer {
    let runs: Vec<Value> = app.runs.running().iter().map(|r| r.view()).collect();
    Ok(Json(json!({ "running": runs })))
}

/// `POST /migrations/validate/{version}`: the problems found for it.
pub async fn validate(State(app): State<Arc<App>>, Path(version): Path<String>) -> Answer {
    known_version(&app, &version)?;
    let (_, problems) = app.service.validate().await.map_err(ApiError::service)?;
    let mine: Vec<String> = problems
        .iter()
        .map(ToString::to_string)
        .filter(|p| p.contains(&format!(" {version} ")) || p.contains(&format!(" {version}:")))
        .collect();
    Ok(Json(
        json!({"version": version, "valid": mine.is_empty(), "problems": mine}),
    ))
}

/// The query of `GET /plan`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanQuery {
    to: Option<String>,
    direction: Option<String>,
    steps: Option<usize>,
}

/// `GET /plan?to=V[&direction=down&steps=N]`.
pub async fn plan(State(app): State<Arc<App>>, Query(q): Query<PlanQuery>) -> Answer {
    let target = match q.direction.as_deref() {
        None | Some("up") => Target::Up { to: q.to },
        Some("down") => Target::Down {
            to: q.to,
            steps: q.steps,
        },
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "field `direction`: {other:?} is neither up nor down"
            )))
        }
    };
    let steps = app
        .service
        .plan(&RunRequest::new(target))
        .await
        .map_err(ApiError::service)?;
    to_json(&json!({ "steps": steps }))
}

/// The body of `POST /runs`: the CLI's `up`/`down` options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// `up` (default) or `down`.
    #[serde(default)]
    direction: Option<String>,
    /// Up: the last version to apply; down: the version that stays applied.
    to: Option<String>,
    /// Down: how many to revert.
    steps: Option<usize>,
    /// Print the plan with its SQL; change nothing.
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    single_transaction: bool,
    #[serde(default)]
    allow_out_of_order: bool,
    #[serde(default)]
    ignore_missing: bool,
    #[serde(default)]
    no_backup: bool,
    /// E.g. `10m`.
    max_duration: Option<String>,
    parallel: Option<usize>,
}

/// `POST /runs`.
pub async fn start_run(
    State(app): State<Arc<App>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let b: RunBody = body(raw)?;
    let (target, action) = match b.direction.as_deref() {
        None | Some("up") => (Target::Up { to: b.to }, "up"),
        Some("down") => (
            Target::Down {
                to: b.to,
                steps: b.steps,
            },
            "down",
        ),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "field `direction`: {other:?} is neither up nor down"
            )))
        }
    };
    let max_duration = b
        .max_duration
        .as_deref()
        .map(|d| {
            instar_core::duration::parse(d)
                .map_err(|e| ApiError::bad_request(format!("field `max_duration`: {e}")))
        })
        .transpose()?;
    let req = RunRequest {
        single_transaction: b.single_transaction,
        allow_out_of_order: b.allow_out_of_order,
        ignore_missing: b.ignore_missing,
        backup: b.no_backup.then_some(false),
        max_duration,
        parallel: b.parallel.unwrap_or(1).max(1),
        ..RunRequest::new(target)
    };
    if b.dry_run {
        let steps = app.service.plan(&req).await.map_err(ApiError::service)?;
        return Ok(Json(json!({"dry_run": true, "steps": steps})).into_response());
    }
    let run = Runs::start(&app, req, action)?;
    Ok(started(&run))
}

/// `POST /runs/{id}/cancel`.
pub async fn cancel(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let run = app
        .runs
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("no run {id} on this server")))?;
    run.cancel();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"run_id": id, "cancelling": run.running()})),
    )
        .into_response())
}

/// The query of `GET /runs/{id}/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Replay from after this sequence number (as `Last-Event-ID`).
    after: Option<u64>,
}

/// `GET /runs/{id}/events`: Server-Sent Events, each with the event's
/// sequence number as its id; `Last-Event-ID` (or `?after=N`) replays
/// everything after N, so a client that reconnects misses nothing.
pub async fn events(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let run = app
        .runs
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("no run {id} on this server")))?;
    sse(run.events(), &q, &headers)
}

/// A run's (or a rollout's) events as Server-Sent Events, from after the
/// `Last-Event-ID` header or `?after=N`.
pub(crate) fn sse<E>(
    events: &RunEvents<E>,
    q: &EventsQuery,
    headers: &HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>> + use<E>>, ApiError>
where
    E: Serialize + Clone + Send + Sync + 'static,
{
    let header = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request("header `Last-Event-ID`: not a sequence number"))
        })
        .transpose()?;
    let after = header.or(q.after).unwrap_or(0);
    let stream = futures_util::stream::unfold(events.subscribe(), move |mut s| async move {
        loop {
            let e = s.next().await?;
            if e.seq <= after {
                continue;
            }
            let data = serde_json::to_string(&e).unwrap_or_default();
            let kind = serde_json::to_value(&e.event)
                .ok()
                .and_then(|v| v.get("event").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| "event".into());
            let sse = SseEvent::default()
                .id(e.seq.to_string())
                .event(kind)
                .data(data);
            return Some((Ok(sse), s));
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// `GET /backups`.
pub async fn backups(State(app): State<Arc<App>>) -> Answer {
    to_json(&json!({ "backups": app.service.backups().map_err(ApiError::service)? }))
}

/// `POST /backups`: takes one now.
pub async fn take_backup(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let taken = app.service.backup().await.map_err(ApiError::service)?;
    Ok((StatusCode::CREATED, Json(json!({ "backup": taken }))).into_response())
}

/// The query of the document endpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AtQuery {
    /// The version to read or write at (default: the current one).
    at: Option<String>,
}

fn documents(app: &App, c: &str) -> Result<instar_service::Documents, ApiError> {
    app.service.documents(c).map_err(|e| {
        if e.to_string().contains("no collection") {
            ApiError::not_found(e.to_string())
        } else {
            ApiError::service(e)
        }
    })
}

/// `GET /collections/{c}/documents/{key}?at=V`.
pub async fn get_document(
    State(app): State<Arc<App>>,
    Path((c, key)): Path<(String, String)>,
    Query(q): Query<AtQuery>,
) -> Answer {
    let docs = documents(&app, &c)?;
    match docs
        .get(&key, q.at.as_deref())
        .await
        .map_err(ApiError::service)?
    {
        Some(doc) => Ok(Json(doc)),
        None => Err(ApiError::not_found(format!(
            "no document {key} in collection {c}"
        ))),
    }
}

/// `PUT /collections/{c}/documents/{key}?at=V`.
pub async fn put_document(
    State(app): State<Arc<App>>,
    Path((c, key)): Path<(String, String)>,
    Query(q): Query<AtQuery>,
    raw: Result<Bytes, BytesRejection>,
) -> Answer {
    let doc: Value = body(raw)?;
    let docs = documents(&app, &c)?;
    docs.put(&key, &doc, q.at.as_deref())
        .await
        .map_err(ApiError::service)?;
    Ok(Json(json!({"stored": key, "at": docs.current()})))
}

/// `GET /metrics`.
pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        app.metrics.render(app.runs.running().len()),
    )
        .into_response()
}

/// `GET /openapi.json`.
pub async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}
