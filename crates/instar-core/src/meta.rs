//! Per-migration metadata: `migration.toml`, diesel's `metadata.toml`, and
//! header directives in the script.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;

/// What `migration.toml` may say. Unknown keys are an error, so a typo is caught.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// Free text shown by `status` and `history`.
    pub description: Option<String>,
    /// The semantic version the schema has once this migration is applied.
    pub schema_version: Option<semver::Version>,
    /// Versions this migration depends on (default: the previous migration).
    pub depends_on: Option<Vec<String>>,
    /// `false` runs the script outside a transaction, statement by statement.
    pub transaction: Option<bool>,
    /// The kind of migration: `schema` (default), `data`, `documents` or `online`.
    pub kind: Option<Kind>,
    /// For `kind = "data"`: the table walked in batches and how.
    pub data: Option<DataConfig>,
    /// For `kind = "documents"`: the collection moved and the version it goes to.
    pub documents: Option<DocumentsConfig>,
    /// SQL assertions around the migration.
    #[serde(default)]
    pub checks: Checks,
    /// For a baseline written by `instar squash`: the migrations it replaces
    /// (their files are in the archive). A database that applied them counts
    /// the baseline as applied; a new database runs the baseline instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub squashes: Vec<Squashed>,
    /// For `kind = "online"`: the schema operations, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ops: Vec<crate::online::Op>,
}

/// A migration a squash replaced: its version, name and checksum when squashed.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Squashed {
    /// Version text.
    pub version: String,
    /// Its name.
    pub name: String,
    /// Its checksum.
    pub checksum: String,
}

/// The kind of a migration.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// SQL that changes the schema (and possibly data) in one go.
    #[default]
    Schema,
    /// One statement applied to a table in keyset batches, with a checkpoint per batch.
    Data,
    /// Every document of a collection moved to one version through its lenses,
    /// in keyset batches with a checkpoint per batch.
    Documents,
    /// Declarative schema operations (`[[ops]]`), compiled per engine when the
    /// migration runs; served at two versions at once by `instar start`.
    Online,
}

/// The `[documents]` table of a documents migration.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DocumentsConfig {
    /// The collection (declared under `[collections.<name>]` in `instar.toml`).
    pub collection: String,
    /// The version every document is moved to.
    pub to: String,
    /// The version `instar down` moves them back to (default: the declared
    /// version before `to`).
    pub down_to: Option<String>,
    /// Documents per batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: u64,
    /// Pause between batches, e.g. `"50ms"`.
    pub pause: Option<crate::duration::Dur>,
    /// Adaptive batch size aiming at this time per batch, e.g. `"250ms"`.
    pub target_batch_time: Option<crate::duration::Dur>,
    /// What a document that cannot be translated does: `stop` (default: the
    /// batch is rolled back and the run stops, naming the document) or `skip`
    /// (it stays as it is, recorded in `instar_errors`).
    #[serde(default)]
    pub on_error: OnError,
    /// `false` translates every batch in process even where the engine's JSON
    /// functions could do it (default: pushed down to SQL where possible).
    #[serde(default = "yes")]
    pub pushdown: bool,
}

fn yes() -> bool {
    true
}

impl DocumentsConfig {
    /// The batch walk's settings, over the collection's table and key.
    pub fn walk(&self, table: &str, key: &str) -> DataConfig {
        DataConfig {
            table: table.to_string(),
            key: KeyColumns::One(key.to_string()),
            batch_size: self.batch_size,
            pause: self.pause.clone(),
            target_batch_time: self.target_batch_time.clone(),
            on_error: self.on_error,
            exact_count: false,
        }
    }
}

/// The `[data]` table of a data migration.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// The table walked (optionally `schema.table`).
    pub table: String,
    /// Its unique key: one column or several (`key = "id"` or `key = ["tenant", "id"]`).
    pub key: KeyColumns,
    /// Rows per batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: u64,
    /// Pause between batches, e.g. `"50ms"` (checked when the file is read).
    pub pause: Option<crate::duration::Dur>,
    /// Adaptive mode: grow or shrink the batch (from `batch_size`, at most ×2 or ÷2 a
    /// step) so a batch takes about this long, e.g. `"250ms"` (checked when the file is read).
    pub target_batch_time: Option<crate::duration::Dur>,
    /// What a failing batch does: `stop` (default) or `skip` (retry row by row, record failures).
    #[serde(default)]
    pub on_error: OnError,
    /// Count the rows exactly even on a large table (default: a table the
    /// engine's statistics put at a million rows or more is not counted; its
    /// progress total is the statistics' estimate).
    #[serde(default)]
    pub exact_count: bool,
}

fn default_batch_size() -> u64 {
    1000
}

/// One key column, or several.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum KeyColumns {
    /// A single column.
    One(String),
    /// A composite key, in order.
    Many(Vec<String>),
}

impl KeyColumns {
    /// The columns, in order.
    pub fn columns(&self) -> Vec<String> {
        match self {
            KeyColumns::One(c) => vec![c.clone()],
            KeyColumns::Many(v) => v.clone(),
        }
    }
}

/// A data migration's error policy.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Roll the failing batch back and stop the run.
    #[default]
    Stop,
    /// Retry the failing batch row by row; record the rows that still fail in `instar_errors`.
    Skip,
}

/// The placeholder a data migration's statement must contain.
pub const BATCH_PLACEHOLDER: &str = "{batch}";

/// SQL queries that must each return a true value (a boolean or a non-zero number).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Checks {
    /// Run before the script; a false result stops the run before anything changes.
    #[serde(default)]
    pub before: Vec<String>,
    /// Run after the script, in its transaction where there is one.
    #[serde(default)]
    pub after: Vec<String>,
}

#[derive(Deserialize)]
struct DieselMetadata {
    run_in_transaction: Option<bool>,
}

/// Parses `migration.toml` (`text`, read from `path`).
pub fn parse_meta(path: &Path, text: &str) -> Result<Meta, Error> {
    toml::from_str(text).map_err(|e| Error::BadMetadata {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })
}

/// Parses diesel's `metadata.toml` (`text`, read from `path`); returns its `run_in_transaction`.
pub fn parse_diesel_metadata(path: &Path, text: &str) -> Result<Option<bool>, Error> {
    let m: DieselMetadata = toml::from_str(text).map_err(|e| Error::BadMetadata {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })?;
    Ok(m.run_in_transaction)
}

/// Whether the script's leading comment lines opt it out of a transaction:
/// `-- instar:no-transaction`, or sqlx's `-- no-transaction`.
pub fn header_no_transaction(sql: &str) -> bool {
    sql.lines()
        .map(str::trim)
        .take_while(|l| l.is_empty() || l.starts_with("--"))
        .any(|l| {
            let d = l.trim_start_matches('-').trim();
            d == "instar:no-transaction" || d == "no-transaction"
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_directives() {
        assert!(header_no_transaction(
            "-- instar:no-transaction\nCREATE INDEX CONCURRENTLY i ON t(x);"
        ));
        assert!(header_no_transaction(
            "\n-- a comment\n-- no-transaction\nSELECT 1;"
        ));
        assert!(!header_no_transaction(
            "SELECT 1;\n-- instar:no-transaction"
        ));
    }
}
