//! What differs between engines, as SQL text: quoting, placeholders, history DDL.
//!
//! Each engine's module implements [`Engine`]; nothing outside those modules
//! writes engine-specific SQL.

use std::path::{Path, PathBuf};

use instar_core::effect::Effect;

use crate::{Db, Error};

/// The future of an engine operation on a connection.
pub(crate) type DbFuture<'a, T> = futures_util::future::BoxFuture<'a, Result<T, Error>>;
use instar_core::Dialect;

/// The SQL an engine needs that differs from the others.
pub(crate) trait Engine: Sync {
    /// Quotes one identifier.
    fn quote(&self, ident: &str) -> String;
    /// A query of `(table name, approximate rows)` from the engine's own
    /// statistics (no table is scanned); `None` where it keeps none.
    fn table_rows_query(&self) -> Option<&'static str> {
        None
    }
    /// The `n`th (1-based) bind placeholder.
    fn placeholder(&self, n: usize) -> String;
    /// The column type for `kind` in this engine.
    fn column_type(&self, kind: Col) -> &'static str;
    /// A query returning the declared type of key column `column` of `table` (as
    /// written in `[data] table`, maybe `schema.table`), with its binds; `None`
    /// where every key the driver decodes travels as it is.
    fn key_type_query(&self, _table: &str, _column: &str) -> Option<(String, Vec<String>)> {
        None
    }
    /// How a key column of declared type `declared` travels through batches and
    /// checkpoints: `Ok(None)` as it is (integers, text), `Ok(Some(t))` as text,
    /// bound back with `CAST(? AS t)`, or `Err(why)` when it cannot travel exactly.
    fn key_cast(&self, _declared: &str) -> Result<Option<String>, String> {
        Ok(None)
    }
    /// The type to cast a key column to, to read it as text.
    fn text_type(&self) -> &'static str {
        "TEXT"
    }
    /// What follows `CREATE TABLE … ( … )` (e.g. MySQL's engine and charset).
    fn table_options(&self) -> &'static str {
        ""
    }
    /// A statement creating `schema` if missing, where schemas are created separately.
    fn create_schema(&self, _schema: &str) -> Option<String> {
        None
    }
    /// A query returning one row when `table` exists (bind: the unqualified name, then the schema or "").
    fn table_exists_sql(&self) -> &'static str;
    /// A query (binds: table name, schema or `''`) returning the columns of
    /// one of Instar's tables whose type is narrower than [`Engine::column_type`]
    /// now gives (a table written by an older Instar), and the statement that
    /// widens one (`{table}`, `{column}` and `{type}` filled in); `None` where
    /// every text column is unbounded.
    fn narrow_columns(&self) -> Option<(&'static str, &'static str)> {
        None
    }
    /// Whether `INSERT … RETURNING id` works.
    fn returning_id(&self) -> bool;
    /// Whether DDL can be rolled back (otherwise each migration runs statement by statement).
    fn transactional_ddl(&self) -> bool;
    /// The statement that opens a transaction of Instar's.
    fn begin(&self) -> &'static str {
        "BEGIN"
    }
    /// Whether `stmt` commits by itself or cannot run inside a transaction
    /// block, so it cannot commit together with its progress row (it is then
    /// recorded as in flight before it is sent).
    fn commits_by_itself(&self, stmt: &str) -> bool;
    /// The run lock's name for this database (`history_table` names the project's table).
    fn lock_name(&self, url: &crate::url::DbUrl, history_table: &str) -> String {
        let _ = url;
        format!("instar:{history_table}").chars().take(64).collect()
    }
    /// The lock as messages name it.
    fn lock_label(&self, db: &Db) -> String {
        db.lock_name.clone()
    }
    /// Tries to take the run lock once; `true` when it is held now.
    fn try_lock<'a>(&self, db: &'a mut Db) -> DbFuture<'a, bool>;
    /// Releases the run lock.
    fn release_lock<'a>(&self, db: &'a mut Db) -> DbFuture<'a, ()>;
    /// Whether several statements with bind parameters can go in one call (the
    /// script, its history row and COMMIT together).
    fn binds_across_statements(&self) -> bool {
        false
    }
    /// A query returning a row when the history's schema (bound as its one
    /// parameter) exists, and what to tell the user when it does not; `None`
    /// where a missing one is created with the history table (PostgreSQL's
    /// schemas).
    fn schema_exists_sql(&self) -> Option<(&'static str, &'static str)> {
        None
    }
    /// A query returning the engine's estimate of the rows in `table` (as
    /// written in `[data] table`), from its statistics and without a scan;
    /// `None` where the engine keeps none.
    fn row_estimate_sql(&self, _table: &str) -> Option<(String, Vec<String>)> {
        None
    }
    /// Why parallel data-migration workers would not help, where they would not.
    /// `expr` as text the driver reads as a string.
    fn as_text(&self, expr: &str) -> String {
        format!("CAST({expr} AS {})", self.text_type())
    }

    /// Whether a text parameter must be cast to its column's declared type
    /// (PostgreSQL does not convert text to `jsonb` or `integer` by itself).
    fn typed_params(&self) -> bool {
        false
    }

    /// `expr` (binary) as lower-case hexadecimal text.
    fn hex_sql(&self, expr: &str) -> String {
        format!("lower(hex({expr}))")
    }

    /// Where the engine may leave foreign keys unenforced during a migration:
    /// a query saying whether they are enforced now (1 or 0), and one listing
    /// the rows whose foreign key points nowhere (table, rowid, parent).
    fn foreign_key_check_sql(&self) -> Option<(&'static str, &'static str)> {
        None
    }

    fn parallel_refusal(&self) -> Option<&'static str> {
        None
    }

    /// Scratch databases on the server (`instar test`): the statement creating
    /// database `name`, a query listing databases whose name starts with
    /// `instar_scratch_`, and the statement dropping one; `None` where a
    /// database is a file (SQLite).
    fn scratch_sql(&self, _name: &str) -> Option<ScratchSql> {
        None
    }

    /// The queries `instar audit` runs on this engine.
    fn audit_sql(&self) -> AuditSql;

    /// A query (one bind: the table's name) of its columns in order:
    /// `(name, declared type, position in the primary key or 0)`; generated
    /// columns are left out (the target computes them).
    fn columns_sql(&self) -> &'static str;
    /// The statement that puts the session in UTC, so that dates with a time
    /// zone travel as UTC text both ways (a copy's connections).
    fn utc_session(&self) -> Option<&'static str> {
        None
    }
    /// What a copy selects for column `col` (quoted) of class `class`, so
    /// that the driver reads it (as text where it has no native type).
    fn copy_select(&self, col: &str, class: &crate::copy::Class) -> String;

    /// The database's schema and rows as one script ([`Db::dump_sql`]);
    /// `work_dir` holds a client tool's output.
    fn dump<'a>(&self, db: &'a mut Db, work_dir: &'a Path) -> DbFuture<'a, String>;

    /// The engine's JSON functions, for lenses pushed down to SQL.
    fn json(&self) -> &'static dyn crate::json_sql::JsonSql;
    /// How online migrations' ops compile on this engine.
    fn online(&self) -> &'static dyn crate::online::OnlineDdl;
    /// The database clock now, in milliseconds since the Unix epoch (leases).
    fn now_ms_sql(&self) -> &'static str;
    /// How DDL waits for table locks on this engine ([`crate::ddl_lock`]).
    fn lock_waits(&self) -> &'static dyn crate::ddl_lock::LockWaits;

    /// What a `SELECT` ends with to lock the rows it reads until the
    /// transaction ends (empty where the transaction locks the database).
    fn lock_rows(&self) -> &'static str {
        " FOR UPDATE"
    }
    /// Whether an automatic backup is taken before a run (`risky`: the run has
    /// steps that cannot roll back).
    fn wants_backup(&self, db: &Db, risky: bool) -> bool;
    /// Copies the database into `folder`; returns the method's name and the file.
    fn take_backup<'a>(
        &self,
        db: &'a mut Db,
        folder: &'a Path,
    ) -> DbFuture<'a, (&'static str, PathBuf)>;
    /// Restores the copy at `file` over the database, keeping a lock `db` holds.
    fn restore_backup<'a>(&self, db: &'a mut Db, file: &'a Path) -> DbFuture<'a, ()>;
    /// Checks, without touching the database, that `file` is a whole backup
    /// this engine can restore (an error says what is wrong with it).
    fn verify_backup<'a>(&self, file: &'a Path) -> DbFuture<'a, ()>;
    /// Copies the database as it is now into `folder` before a restore replaces
    /// it; where the engine can, also a database too damaged for a backup.
    fn set_aside<'a>(
        &self,
        db: &'a mut Db,
        folder: &'a Path,
    ) -> DbFuture<'a, (&'static str, PathBuf)> {
        self.take_backup(db, folder)
    }
    /// A query returning a row when table `table` (as written in `[data] table`)
    /// has a primary key or unique index on exactly `columns` (sorted, comma-separated).
    fn unique_index_sql(&self, table: &str, columns: &str) -> (String, Vec<String>);
    /// A query returning a row exactly when the object of `effect` exists now (with its binds).
    fn effect_sql(&self, effect: &Effect) -> (String, Vec<String>);
}

/// What `instar audit` asks an engine. Each query's columns are given.
pub(crate) struct AuditSql {
    /// Rows of text that are all `ok` on a sound database (SQLite).
    pub(crate) integrity: Option<&'static str>,
    /// Rows whose foreign key points nowhere: `(table, rowid, parent)` (SQLite).
    pub(crate) foreign_key_check: Option<&'static str>,
    /// Foreign keys the database does not vouch for: `(name, table,
    /// parent, columns, parent columns)`, columns comma-separated.
    pub(crate) unenforced_foreign_keys: Option<&'static str>,
    /// Check constraints not validated: `(name, table, expression)`.
    pub(crate) unvalidated_checks: Option<&'static str>,
    /// Indexes left invalid (a failed concurrent build): `(index, table)`.
    pub(crate) invalid_indexes: Option<&'static str>,
    /// Every table, view and index: `(kind, name)`, kind `table`/`view`/`index`.
    pub(crate) catalog: &'static str,
}

/// How an engine creates, lists and drops scratch databases, and the
/// session lock that says a scratch database's owner is alive.
pub(crate) struct ScratchSql {
    pub(crate) create: String,
    pub(crate) list: &'static str,
    pub(crate) drop: String,
    /// Takes the owner's lock without waiting: one row, 1 when taken.
    pub(crate) try_lock: String,
    /// Releases it.
    pub(crate) unlock: String,
}

/// The engine for a dialect.
pub(crate) fn engine(d: Dialect) -> &'static dyn Engine {
    match d {
        Dialect::Sqlite => &crate::sqlite::Sqlite,
        Dialect::Postgres => &crate::postgres::Postgres,
        Dialect::MySql => &crate::mysql::MySql,
    }
}

/// `sql` with each `?` replaced by the engine's numbered placeholder (`$1`, `$2` … on
/// PostgreSQL). Only for Instar's own SQL, whose templates hold no `?` in literals.
pub(crate) fn marks(e: &dyn Engine, sql: &str) -> String {
    let mut n = 0;
    sql.split('?')
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part.to_string()
            } else {
                n += 1;
                format!("{}{part}", e.placeholder(n))
            }
        })
        .collect()
}

/// The first `n` words of a statement, upper-cased, comments before it skipped.
pub(crate) fn leading_words(stmt: &str, n: usize) -> Vec<String> {
    stmt.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("--") && !l.starts_with('#'))
        .flat_map(str::split_whitespace)
        .take(n)
        .map(|w| w.trim_end_matches(';').to_ascii_uppercase())
        .collect()
}

/// Whether a statement controls transactions itself (BEGIN, COMMIT …): it must
/// run as written, outside a transaction of Instar's.
pub(crate) fn is_transaction_control(stmt: &str) -> bool {
    matches!(
        leading_words(stmt, 1).first().map(String::as_str),
        Some("BEGIN" | "COMMIT" | "ROLLBACK" | "START" | "END" | "SAVEPOINT" | "RELEASE")
    )
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

/// The kinds of history column; each engine maps them to a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Col {
    /// The auto-incrementing primary key.
    Id,
    /// Short text (versions, names, enums, timestamps).
    Short,
    /// Unbounded text (errors, statements, notes).
    Long,
    /// A key compared exactly (case and accents matter).
    Key,
    /// A 64-bit integer.
    Int,
}

/// The history table: every column after `id`, its kind, and whether it is NOT NULL,
/// in the order [`crate::db::Db`] reads and writes them.
pub(crate) const HISTORY: &[(&str, Col, bool)] = &[
    ("version", Col::Short, true),
    ("name", Col::Short, true),
    ("event", Col::Short, true),
    ("direction", Col::Short, true),
    ("kind", Col::Short, true),
    ("checksum", Col::Short, false),
    ("schema_version", Col::Short, false),
    ("started_at", Col::Short, true),
    ("finished_at", Col::Short, false),
    ("duration_ms", Col::Int, false),
    ("statements_applied", Col::Int, true),
    ("statements_total", Col::Int, true),
    ("statement_hashes", Col::Long, false),
    ("rows_affected", Col::Int, false),
    ("error", Col::Long, false),
    ("failed_statement", Col::Long, false),
    ("operator", Col::Short, true),
    ("tool_version", Col::Short, true),
    ("note", Col::Long, false),
    // Added in 0.2: tables written by 0.1 get it by `ALTER TABLE` (see `Db::ensure_history`).
    ("run_id", Col::Short, false),
    ("in_flight", Col::Int, false),
];

/// The history columns after `id`, comma-separated.
pub(crate) const HISTORY_COLUMNS: &str = "version, name, event, direction, kind, checksum, schema_version, started_at, finished_at, duration_ms, statements_applied, statements_total, statement_hashes, rows_affected, error, failed_statement, operator, tool_version, note, run_id, in_flight";

/// Columns added since 0.1, in order, with their kinds: `Db::ensure_history` adds
/// whichever a table lacks.
pub(crate) const HISTORY_ADDED: &[(&str, Col)] = &[("run_id", Col::Short), ("in_flight", Col::Int)];

/// The history columns of Instar 0.1, which had no `run_id`.
pub(crate) const HISTORY_COLUMNS_V1: &str = "version, name, event, direction, kind, checksum, schema_version, started_at, finished_at, duration_ms, statements_applied, statements_total, statement_hashes, rows_affected, error, failed_statement, operator, tool_version, note";

/// Statements that create the history table (and its schema) if missing.
pub(crate) fn history_ddl(e: &dyn Engine, table: &str, schema: Option<&str>) -> Vec<String> {
    table_ddl(e, table, schema, HISTORY)
}

/// Statements that create a table of Instar's (an `id` key plus `columns`) if missing.
pub(crate) fn table_ddl(
    e: &dyn Engine,
    table: &str,
    schema: Option<&str>,
    columns: &[(&str, Col, bool)],
) -> Vec<String> {
    let columns: Vec<String> = std::iter::once(format!("id {}", e.column_type(Col::Id)))
        .chain(columns.iter().map(|(name, kind, required)| {
            format!(
                "{name} {}{}",
                e.column_type(*kind),
                if *required { " NOT NULL" } else { "" }
            )
        }))
        .collect();
    schema
        .and_then(|s| e.create_schema(s))
        .into_iter()
        .chain(std::iter::once(format!(
            "CREATE TABLE IF NOT EXISTS {table} (\n  {}\n){}",
            columns.join(",\n  "),
            e.table_options()
        )))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn marks_number_placeholders_per_engine() {
        let sql = "UPDATE t SET a = ? WHERE b = ? AND c = ?";
        assert_eq!(
            super::marks(&crate::postgres::Postgres, sql),
            "UPDATE t SET a = $1 WHERE b = $2 AND c = $3"
        );
        assert_eq!(super::marks(&crate::mysql::MySql, sql), sql);
    }

    #[test]
    fn column_list_matches_the_table() {
        let names: Vec<&str> = super::HISTORY.iter().map(|c| c.0).collect();
        assert_eq!(names.join(", "), super::HISTORY_COLUMNS);
        assert_eq!(
            format!("{}, run_id, in_flight", super::HISTORY_COLUMNS_V1),
            super::HISTORY_COLUMNS
        );
    }
}
