//! Instar's service layer: what every front door (the `instar` CLI, the HTTP
//! API, an application's [`Migrator`]) calls, so none of them orchestrates
//! anything itself.
//!
//! - [`Settings`] are resolved once from flags, the environment, `instar.toml`
//!   and defaults ([`settings::resolve`]), or built by hand.
//! - A [`MigrationSource`] says where migrations come from: a folder
//!   ([`FolderSource`]), files in memory ([`MemorySource`]), or files embedded
//!   in the binary at compile time ([`embed_migrations!`]).
//! - [`Service`] holds both and offers every operation: status, plan,
//!   up/down, history, validate, verify, baseline, repair, backups and restore.
//! - A run started with [`Service::start`] is a [`RunHandle`]: an id, a stream
//!   of stamped events ([`EventStream`]) that any number of receivers
//!   subscribe to, a cancel token, and the final report (or a [`RunFailure`]
//!   that still says what was applied).
//! - [`Documents`] reads and writes a collection's JSON documents at any of its
//!   versions, through its lenses ([`Service::documents`]).
#![deny(missing_docs)]
#![allow(clippy::result_large_err)]

mod audit;
mod cloud_spanner;
mod compat;
mod copy;
mod documents;
mod error;
pub mod fleet;
mod keyvalue;
mod lint;
mod migration_tests;
mod migrator;
mod online;
mod run;
mod service;
pub mod settings;
mod source;
mod squash;
mod status;
mod tenants;
mod unlock;

pub use audit::{AuditOptions, AuditReport};
pub use cloud_spanner::SpannerRunOptions;
pub use compat::{CompatCheck, CompatMatrix, CompatRow};
pub use copy::CopyReport;
pub use documents::{Documents, MoveOptions, MoveReport};
pub use error::Error;
pub use instar_macros::embed_migrations;
pub use keyvalue::{KvDocuments, KvPlan, KvRunOptions, KvStatusView, KvVerified};
pub use lint::{LintOptions, LintReport};
pub use migration_tests::{TestOptions, TestReport, TestResult};
pub use migrator::Migrator;
pub use run::{EventStream, RunEvents, RunFailure, RunHandle, RunRequest};
pub use service::Service;
pub use settings::{Overrides, Settings};
pub use source::{EmbeddedMigrations, FolderSource, MemorySource, MigrationSource};
pub use squash::SquashReport;
pub use status::{LockView, StatusView};
pub use tenants::Tenants;
pub use unlock::Unlocked;

/// The crates the service is built on, for callers that need their types.
pub use instar_core as core;
pub use instar_db as db;
pub use instar_kv as kv;
pub use instar_spanner as spanner;
