//! What differs between engines, as SQL text: quoting, placeholders, history DDL.
//!
//! Each engine's module implements [`Engine`]; nothing outside those modules
//! writes engine-specific SQL.

use instar_core::Dialect;

/// The SQL an engine needs that differs from the others.
pub(crate) trait Engine: Sync {
    /// Quotes one identifier.
    fn quote(&self, ident: &str) -> String;
    /// The `n`th (1-based) bind placeholder.
    fn placeholder(&self, n: usize) -> String;
    /// Statements that create the history table (and its schema) if missing.
    fn history_ddl(&self, table: &str) -> Vec<String>;
    /// A query returning one row when `table` exists (bind: the unqualified name, then the schema or "").
    fn table_exists_sql(&self) -> &'static str;
    /// Whether `INSERT … RETURNING id` works.
    fn returning_id(&self) -> bool;
    /// Whether DDL can be rolled back (otherwise each migration runs statement by statement).
    fn transactional_ddl(&self) -> bool;
    /// A query returning the whole history as one JSON array of row arrays (columns
    /// in `id, HISTORY_COLUMNS` order), where one row is much cheaper than many.
    fn history_as_json(&self, _table: &str) -> Option<String> {
        None
    }
}

/// The engine for a dialect.
pub(crate) fn engine(d: Dialect) -> &'static dyn Engine {
    match d {
        Dialect::Sqlite => &crate::sqlite::Sqlite,
        Dialect::Postgres => &crate::postgres::Postgres,
        Dialect::MySql => &crate::mysql::MySql,
    }
}

/// Quotes `ident` with `q`, doubling any `q` inside it.
pub(crate) fn quote_with(ident: &str, q: char) -> String {
    let doubled: String = ident
        .chars()
        .flat_map(|c| if c == q { vec![q, q] } else { vec![c] })
        .collect();
    format!("{q}{doubled}{q}")
}

/// `schema.table`, each part quoted.
pub(crate) fn qualified(e: &dyn Engine, schema: Option<&str>, table: &str) -> String {
    match schema {
        Some(s) => format!("{}.{}", e.quote(s), e.quote(table)),
        None => e.quote(table),
    }
}

/// The history columns, in the order [`crate::db::Db`] reads and writes them.
pub(crate) const HISTORY_COLUMNS: &str = "version, name, event, direction, kind, checksum, schema_version, started_at, finished_at, duration_ms, statements_applied, statements_total, statement_hashes, rows_affected, error, failed_statement, operator, tool_version, note";
