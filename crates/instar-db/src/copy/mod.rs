//! `instar copy`: an application's rows from one database into another
//! (SQLite → PostgreSQL, MySQL → PostgreSQL …), table by table in keyset
//! batches. Each batch is written in one transaction of the target together
//! with its checkpoint (`instar_copy`), so a copy killed half way resumes
//! after its last batch and copies nothing twice. The source is only read.
//!
//! - [`value`]: column classes shared by every engine, and conversions.
//! - [`plan`]: which tables, which columns, refusals before anything is written.
//! - [`batch`]: reading a batch from the source and writing it (PostgreSQL
//!   targets through `COPY`, others through multi-row `INSERT`s).
//! - [`verify`]: row counts, and rows compared after the copy.

mod batch;
mod plan;
mod value;
mod verify;

use serde::Serialize;

pub use batch::{clear_checkpoints, copy_table};
pub use plan::{plan, prepare, Column, TablePlan};
pub use value::{canonical, fit, Cell, Class};
pub use verify::verify_table;

/// How rows are compared after the copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// Row counts only.
    Counts,
    /// Row counts, and this many rows per table compared (in windows spread
    /// over an integer key, else the first ones).
    Sample(u64),
    /// Row counts, and every row compared.
    Full,
}

/// Options of a copy.
#[derive(Clone)]
pub struct CopyOptions {
    /// Only these tables (default: every table of the source but Instar's own).
    pub tables: Option<Vec<String>>,
    /// Rows per batch.
    pub batch: usize,
    /// Copy into tables that already hold rows; rows whose key is there are skipped.
    pub append: bool,
    /// How to verify.
    pub verify: VerifyMode,
    /// Tables copied at once.
    pub parallel: usize,
    /// Stop at a batch boundary.
    pub cancel: crate::CancelToken,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            tables: None,
            batch: 20_000,
            append: false,
            verify: VerifyMode::Sample(10_000),
            parallel: 1,
            cancel: crate::CancelToken::new(),
        }
    }
}

/// Progress of one table.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// The table.
    pub table: String,
    /// Rows copied so far (this run and earlier ones).
    pub rows: u64,
    /// The source's rows, when known (its statistics or a count).
    pub total: Option<u64>,
}

/// What the copy did to one table.
#[derive(Debug, Clone, Serialize, Default)]
pub struct TableReport {
    /// The table.
    pub table: String,
    /// Rows written by this run.
    pub copied: u64,
    /// Rows the checkpoint says earlier, interrupted runs wrote.
    pub resumed_after: u64,
    /// With `--append`: rows whose key the target already had (left as they were).
    pub skipped_existing: u64,
    /// Rows in the source now.
    pub source_rows: u64,
    /// Rows in the target now.
    pub target_rows: u64,
    /// Rows compared value by value.
    pub compared: u64,
    /// Rows that differ or are missing (the first ones, with their key).
    pub mismatches: Vec<String>,
    /// Milliseconds this table took.
    pub duration_ms: u64,
}

impl TableReport {
    /// Whether the target holds what the source holds (as far as verified).
    pub fn verified(&self, append: bool) -> bool {
        self.mismatches.is_empty() && (append || self.source_rows == self.target_rows)
    }
}

/// The checkpoint table on the target.
pub(crate) const CHECKPOINTS: &str = "instar_copy";
