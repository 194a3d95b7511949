//! Instar's database side: SQLite, PostgreSQL and MySQL/MariaDB behind one
//! connection type, and the runner every front door calls.
//!
//! - [`Db`] is one connection: it reads and appends the history table, takes
//!   the run lock (a sidecar `flock` for SQLite, an advisory lock on
//!   PostgreSQL, `GET_LOCK` on MySQL) and runs SQL. What differs between
//!   engines lives in one module per engine behind an internal `Engine` trait.
//! - [`runner`] applies a plan from `instar-core`: one transaction per
//!   migration holding its SQL and its history row, or — where DDL cannot be
//!   rolled back (MySQL, `-- instar:no-transaction` files) — a `start` row
//!   with per-statement progress, so a failure is a dirty mark that names the
//!   statement and a later `up` resumes after it.
//! - [`data`] runs data migrations: one statement over a table in keyset
//!   batches, each committed with its checkpoint, resumable.
//! - [`backup`] takes, lists, prunes and restores backups.
//! - The service layer (`instar-service`) and its front doors sit on top.
#![deny(missing_docs)]
// Errors carry the file, line, statement and aftermath of a failure; they happen
// at most once per run, so their size costs nothing worth boxing them for.
#![allow(clippy::result_large_err)]

mod adhoc;
pub mod adopt;
pub mod audit;
pub mod backup;
mod cancel;
mod conn;
pub mod copy;
pub mod data;
mod db;
mod ddl_lock;
pub mod docs;
mod dump;
mod engine;
mod error;
mod fingerprint;
mod json_sql;
pub mod lease;
mod lock;
mod mysql;
mod mysql_backup;
mod mysql_json;
pub mod online;
mod postgres;
mod postgres_backup;
mod postgres_json;
pub mod profile;
mod retry;
pub mod runner;
pub mod scratch;
mod sqlite;
mod sqlite_backup;
mod sqlite_conn;
mod sqlite_json;
pub mod url;

pub use cancel::CancelToken;
pub use db::{new_run_id, Db, Settings};
pub use error::{Aftermath, Error};

#[cfg(test)]
mod send {
    //! Runs must be `Send`, to be spawned on a multi-threaded runtime.
    fn assert_send<T: Send>(_: &T) {}

    #[allow(dead_code)]
    fn run_futures_are_send(
        db: &mut crate::Db,
        source: &instar_core::Source,
        opts: &crate::runner::RunOptions,
        sink: &mut dyn instar_core::event::EventSink,
    ) {
        let f = crate::runner::run(
            db,
            source,
            instar_core::plan::Target::Up { to: None },
            opts,
            sink,
        );
        assert_send(&f);
    }
}
