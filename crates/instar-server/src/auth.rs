//! Bearer tokens: every request that changes anything carries
//! `Authorization: Bearer <token>`; reads too when the server says so. The
//! token is compared in constant time (SHA-256 of both sides, then every byte).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::api::ApiError;
use crate::routes::Access;
use crate::App;

/// Whether `given` is `expected`, in time that does not depend on where they differ.
pub fn same_token(given: &str, expected: &str) -> bool {
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Whether `req` may go on to a route of `access`.
pub fn allowed(app: &App, access: Access, req: &Request) -> Result<(), ApiError> {
    let needed = match access {
        Access::Open => false,
        Access::Read => app.config.require_token_for_reads,
        Access::Write => true,
    };
    if !needed {
        return Ok(());
    }
    let Some(expected) = app.config.token.as_deref() else {
        return Err(ApiError::forbidden(
            "this server was started without a token, so it changes nothing: start `instar serve` with --token-file FILE (or INSTAR_SERVE_TOKEN)",
        ));
    };
    match bearer(req) {
        None => Err(ApiError::unauthorized(
            "this request needs `Authorization: Bearer <token>`",
        )),
        Some(given) if same_token(given, expected) => Ok(()),
        Some(_) => Err(ApiError::unauthorized("the bearer token is wrong")),
    }
}

async fn guard(access: Access, app: Arc<App>, req: Request, next: Next) -> Response {
    match allowed(&app, access, &req) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            app.metrics.refused();
            e.into_response()
        }
    }
}

/// The middleware for read routes.
pub async fn read(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    guard(Access::Read, app, req, next).await
}

/// The middleware for write routes.
pub async fn write(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    guard(Access::Write, app, req, next).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_compare_whole() {
        assert!(super::same_token("s3cret", "s3cret"));
        assert!(!super::same_token("s3cre", "s3cret"));
        assert!(!super::same_token("", "s3cret"));
        assert!(!super::same_token("s3cret ", "s3cret"));
    }
}
