//! Key-value collections of Instar: versioned records under key prefixes in
//! a key-value store, read and written at any version through lenses, moved
//! eagerly in checkpointed batches, or migrated by Rust code
//! ([`RecordMigration`], [`Registry`], [`Migrator`]); history, lock,
//! checkpoints and the store's version are kept in the store itself under a
//! reserved prefix ([`keys`]).
//!
//! The store is behind [`KvStore`]: [`MemStore`] here, RocksDB in
//! `instar-rocksdb` (the only crate that links RocksDB).

pub mod backup;
pub mod codec;
pub mod collection;
pub mod history;
pub mod keys;
pub mod migrator;
pub mod registry;
pub mod run;
pub mod steps;
pub mod store;
pub mod testing;
pub mod walk;

pub use codec::Encoding;
pub use collection::{KvCollection, Record};
pub use history::HistoryEntry;
pub use instar_core::event::{Event, EventSink, NullSink};
pub use migrator::{KvStatus, Migrator};
pub use registry::{FnMigration, RecordMigration, Registry};
pub use run::{RunOptions, RunReport, Step, StepKind};
pub use store::{Batch, KvStore, MemStore, StoreError, StoreErrorKind, Write};
pub use walk::WalkOptions;

/// What can go wrong with a store's records or a run over them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed (locked by another process, not a store, read-only, full …).
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A configuration or plan error.
    #[error("{0}")]
    Config(String),
    /// One record cannot be read or rewritten.
    #[error("{collection}: record {key}: {why}")]
    Record {
        /// The collection or migration.
        collection: String,
        /// The record's key.
        key: String,
        /// What is wrong.
        why: String,
    },
    /// The store or a record is newer than this release knows.
    #[error("{0}")]
    Newer(String),
    /// The record migrations do not chain.
    #[error("{0}")]
    Gap(String),
    /// Another run holds the lock.
    #[error("{0}")]
    Locked(String),
    /// A backup cannot be taken, found or restored.
    #[error("{0}")]
    Backup(String),
    /// A step failed; the store's state is said.
    #[error("{step} (version {version}) failed: {cause}; {state}")]
    Failed {
        /// The step.
        step: String,
        /// Its version.
        version: String,
        /// Why.
        cause: Box<Error>,
        /// The state the store is left in, and what to do.
        state: String,
    },
}
