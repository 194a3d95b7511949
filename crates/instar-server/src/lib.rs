//! `instar serve`: the HTTP front door, over the same [`Service`] as the CLI
//! and the library.
//!
//! - [`routes`] is the route table: every endpoint's method, path, access
//!   (read or write) and summary. The router and the OpenAPI document are
//!   both built from it, so the document cannot drift from what is served.
//! - [`auth`]: bearer tokens, compared in constant time; writes always need
//!   one, reads when the server is told so.
//! - [`runs`]: runs started over HTTP, by id: their events (replayable by
//!   sequence number), progress, cancel and outcome; one at a time.
//! - [`fleet`]: the fleet's state and rollouts started over HTTP, with
//!   every tenant's progress.
//! - [`api`]: the handlers; errors are `{"error": {"code", "message"}}`.
//! - [`metrics`]: Prometheus counters and a run-duration histogram.
#![deny(missing_docs)]

pub mod api;
pub mod auth;
pub mod fleet;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod runs;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use instar_service::Service;

/// Everything that can stop the server from starting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting that would be unsafe or cannot work.
    #[error("{0}")]
    Config(String),
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {message}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        message: String,
    },
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it listens (default `127.0.0.1:7070`).
    pub listen: SocketAddr,
    /// The bearer token requests that change anything must carry.
    pub token: Option<String>,
    /// Reads need the token too.
    pub require_token_for_reads: bool,
    /// The largest request body accepted, in bytes.
    pub body_limit: usize,
    /// How long a request may take (not a stream of run events).
    pub request_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            token: None,
            require_token_for_reads: false,
            body_limit: 1 << 20,
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl Config {
    /// Refuses what is unsafe: a non-loopback address without a token, an
    /// empty token, reads that need a token nobody has.
    pub fn check(&self) -> Result<(), Error> {
        if self.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(Error::Config(
                "the token is empty; put a long random string in the token file".into(),
            ));
        }
        if !self.listen.ip().is_loopback() && self.token.is_none() {
            return Err(Error::Config(format!(
                "refusing to listen on {} without a token: anyone who reaches it could run migrations; give --token-file FILE (or INSTAR_SERVE_TOKEN), or listen on 127.0.0.1",
                self.listen
            )));
        }
        if self.require_token_for_reads && self.token.is_none() {
            return Err(Error::Config(
                "--require-token-for-reads needs a token (--token-file FILE or INSTAR_SERVE_TOKEN)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// What every handler shares.
pub struct App {
    /// The project.
    pub service: Service,
    /// The settings.
    pub config: Config,
    /// Runs started over HTTP.
    pub runs: runs::Runs,
    /// Fleet rollouts started over HTTP.
    pub fleet_runs: fleet::FleetRuns,
    /// Counters for `/metrics`.
    pub metrics: metrics::Metrics,
}

impl App {
    /// The shared state of a server for `service`.
    pub fn new(service: Service, config: Config) -> Arc<App> {
        Arc::new(App {
            service,
            config,
            runs: runs::Runs::default(),
            fleet_runs: fleet::FleetRuns::default(),
            metrics: metrics::Metrics::default(),
        })
    }
}

/// Binds `config.listen` after [`Config::check`].
pub async fn bind(config: &Config) -> Result<tokio::net::TcpListener, Error> {
    config.check()?;
    tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::Bind {
            addr: config.listen,
            message: e.to_string(),
        })
}

/// Serves `app` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, routes::router(app))
        .with_graceful_shutdown(shutdown)
        .await
}
