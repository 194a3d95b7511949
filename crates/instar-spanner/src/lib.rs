//! Cloud Spanner as an Instar engine, over Spanner's REST API (the emulator's
//! gateway or `spanner.googleapis.com`). Nothing else in Instar compiles it
//! but the service layer.
//!
//! - Scripts are GoogleSQL. A script's consecutive DDL statements are sent as
//!   one `UpdateDatabaseDdl` batch: a long-running operation whose id Instar
//!   chooses and records in the history *before* submitting it, so a killed
//!   `instar` finds the operation on restart (and how many of its statements
//!   took effect) instead of sending it again. Consecutive DML statements run
//!   as one read-write transaction together with their history update.
//! - A batch that applies partly (Spanner checks statements up front but can
//!   fail one while it runs, after committing those before it) leaves the
//!   migration dirty with exactly the statements that took effect counted.
//! - The lock is a lease row (`instar_lock`) on Spanner's clock, renewed by a
//!   heartbeat; every history write renews it in the same transaction.
//! - Data migrations run their one DML statement in keyset batches, each
//!   committed with its checkpoint, sized within Spanner's mutation limit.

#![deny(missing_docs)]

pub mod admin;
pub mod client;
pub mod data;
pub mod lease;
pub mod ops;
pub mod run;
mod run_ddl;
pub mod script;
pub mod tables;
pub mod url;

pub use client::{Client, Param, Session};
pub use url::SpannerUrl;

/// What can go wrong talking to Spanner or running on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database URL is wrong.
    #[error("{0}")]
    Url(String),
    /// Spanner could not be reached.
    #[error("cannot reach Spanner at {endpoint}: {why} (is the emulator or the endpoint up? check the URL's host and port)")]
    Connect {
        /// `host:port`.
        endpoint: String,
        /// The transport error.
        why: String,
    },
    /// Spanner answered with an error.
    #[error("Spanner: {message} ({})", code_name(*code))]
    Api {
        /// The gRPC status code.
        code: i32,
        /// Spanner's message.
        message: String,
    },
    /// The run lock is held by another runner.
    #[error("{0}")]
    Locked(String),
    /// This runner's lease was taken over: it stopped before writing.
    #[error("the run lock's lease was lost ({0}): another runner may have taken over; nothing more was written by this run. Run `instar status` to see where the migrations stand")]
    LostLease(String),
    /// The plan was refused or a migration failed.
    #[error("{0}")]
    Run(String),
    /// A planning error from the core.
    #[error(transparent)]
    Core(#[from] instar_core::Error),
}

impl Error {
    /// Spanner aborted the transaction: run it again.
    pub fn is_aborted(&self) -> bool {
        matches!(self, Error::Api { code: 10, .. })
    }

    /// Spanner said the thing asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Api { code: 5, .. })
    }
}

/// The name of a gRPC status code.
pub fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        16 => "UNAUTHENTICATED",
        _ => "error",
    }
}

/// The code of a status name (Google's JSON errors carry names).
pub fn code_of(name: &str) -> i32 {
    (0..=16).find(|c| code_name(*c) == name).unwrap_or(2)
}
