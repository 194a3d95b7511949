//! SQLite: history DDL, and the run lock.
//!
//! The lock is an exclusive OS lock (`flock`) on a sidecar file next to the
//! database (`<file>.instar-lock`). An exclusive *transaction* would also block
//! the run's own per-migration commits; the sidecar lock excludes other runs
//! only, and the kernel releases it when the process dies, so a killed run
//! never leaves a stale lock.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use instar_core::effect::Effect;

use crate::engine::{quote_with, Col, DbFuture, Engine};
use crate::{Db, Error};

pub(crate) struct Sqlite;

impl Engine for Sqlite {
    fn dump<'a>(&self, db: &'a mut Db, _work_dir: &'a Path) -> DbFuture<'a, String> {
        Box::pin(async move {
            let history = db.settings.history_table.clone();
            // Tables (in creation order), their rows, then what refers to
            // them: indexes, views, and triggers last (seeded rows must not
            // fire them again).
            let sql = "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 WHEN 'view' THEN 2 ELSE 3 END, rowid";
            let (mut tables_sql, mut rest) = (String::new(), String::new());
            for r in db.rows(sql, "reading the schema").await? {
                let name = r.get(1).and_then(|v| v.as_str()).unwrap_or_default();
                let tbl = r.get(2).and_then(|v| v.as_str()).unwrap_or_default();
                if crate::dump::is_instar_table(name, &history)
                    || crate::dump::is_instar_table(tbl, &history)
                {
                    continue;
                }
                let Some(ddl) = r.get(3).and_then(|v| v.as_str()) else {
                    continue;
                };
                let out = if r.first().and_then(|v| v.as_str()) == Some("table") {
                    &mut tables_sql
                } else {
                    &mut rest
                };
                *out += ddl;
                *out += ";\n";
            }
            let tables = db.application_tables().await?;
            let mut out = tables_sql;
            out += &db.rows_as_inserts(&tables).await?;
            out += &rest;
            Ok(out)
        })
    }

    fn columns_sql(&self) -> &'static str {
        "SELECT name, type, pk FROM pragma_table_info(?) ORDER BY cid"
    }

    fn copy_select(&self, col: &str, _class: &crate::copy::Class) -> String {
        // Values come as they are stored.
        col.to_string()
    }

    fn audit_sql(&self) -> crate::engine::AuditSql {
        crate::engine::AuditSql {
            integrity: Some("PRAGMA integrity_check(100)"),
            foreign_key_check: Some("SELECT \"table\", rowid, parent FROM pragma_foreign_key_check"),
            unenforced_foreign_keys: None,
            unvalidated_checks: None,
            invalid_indexes: None,
            catalog: "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'view', 'index') AND name NOT LIKE 'sqlite_%'",
        }
    }

    fn table_rows_query(&self) -> Option<&'static str> {
        // What ANALYZE left (its first number is the table's rows), if it ran.
        Some("SELECT tbl, CAST(stat AS INTEGER) FROM sqlite_stat1 WHERE idx IS NULL OR stat NOT LIKE '% %' GROUP BY tbl")
    }

    fn json(&self) -> &'static dyn crate::json_sql::JsonSql {
        &crate::sqlite_json::SqliteJson
    }

    fn online(&self) -> &'static dyn crate::online::OnlineDdl {
        &crate::online::SqliteDdl
    }
    fn now_ms_sql(&self) -> &'static str {
        "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
    }
    fn lock_waits(&self) -> &'static dyn crate::ddl_lock::LockWaits {
        &Sqlite
    }
    fn lock_rows(&self) -> &'static str {
        ""
    }

    fn quote(&self, ident: &str) -> String {
        quote_with(ident, '"')
    }
    fn placeholder(&self, _: usize) -> String {
        "?".into()
    }
    fn column_type(&self, kind: Col) -> &'static str {
        match kind {
            // The rowid: one more than the largest id. Instar's tables are
            // append-only, so ids only grow; AUTOINCREMENT would guard against
            // reuse after deleting the newest row by hand, at the price of a
            // `sqlite_sequence` write in every commit (13% of applying 500 small
            // migrations, measured). Tables created with it keep it.
            Col::Id => "INTEGER PRIMARY KEY",
            Col::Short | Col::Long | Col::Key => "TEXT",
            Col::Int => "INTEGER",
        }
    }
    // A SQLite "schema" is an attached database: it cannot be created by name.
    fn schema_exists_sql(&self) -> Option<(&'static str, &'static str)> {
        Some((
            "SELECT 1 FROM pragma_database_list WHERE name = ?",
            "this SQLite connection has no database of that name (use \"main\", or attach one with ATTACH DATABASE in init_sql)",
        ))
    }
    fn table_exists_sql(&self) -> &'static str {
        // Views count: a view of that name is not Instar's and must not read as
        // an empty history.
        "SELECT 1 FROM pragma_table_list WHERE name = ? AND schema = COALESCE(NULLIF(?, ''), 'main')"
    }
    fn returning_id(&self) -> bool {
        true
    }
    fn transactional_ddl(&self) -> bool {
        true
    }
    fn commits_by_itself(&self, stmt: &str) -> bool {
        crate::engine::is_transaction_control(stmt)
            || crate::engine::leading_words(stmt, 1)
                .first()
                .is_some_and(|w| w == "VACUUM")
    }
    // An INTEGER PRIMARY KEY is the rowid and has no index: look at the table's pk columns too.
    fn lock_label(&self, db: &Db) -> String {
        db.url.sqlite_path.as_deref().map_or_else(
            || "an in-memory database".into(),
            |p| lock_path(p).display().to_string(),
        )
    }
    // An in-memory database is private to its connection: nothing to lock.
    fn try_lock<'a>(&self, db: &'a mut Db) -> DbFuture<'a, bool> {
        Box::pin(async move {
            let Some(path) = db.url.sqlite_path.clone() else {
                return Ok(true);
            };
            if db.lock_file.is_none() {
                db.lock_file = Some(open_lock(&path)?);
            }
            let got = try_lock(db.lock_file.as_ref().expect("opened above"))?;
            if !got {
                db.lock_file = None;
            }
            Ok(got)
        })
    }
    // Closing the file releases the lock.
    fn release_lock<'a>(&self, db: &'a mut Db) -> DbFuture<'a, ()> {
        db.lock_file = None;
        Box::pin(async { Ok(()) })
    }
    fn binds_across_statements(&self) -> bool {
        true
    }
    fn foreign_key_check_sql(&self) -> Option<(&'static str, &'static str)> {
        Some((
            "SELECT foreign_keys FROM pragma_foreign_keys",
            "SELECT c.\"table\", c.rowid, c.parent FROM pragma_foreign_key_check AS c",
        ))
    }

    fn parallel_refusal(&self) -> Option<&'static str> {
        Some("SQLite has one write lock per database, so parallel workers would only take turns")
    }
    fn wants_backup(&self, db: &Db, _risky: bool) -> bool {
        db.url.sqlite_path.is_some()
    }
    fn take_backup<'a>(
        &self,
        db: &'a mut Db,
        folder: &'a Path,
    ) -> DbFuture<'a, (&'static str, PathBuf)> {
        Box::pin(crate::sqlite_backup::take(db, folder))
    }
    fn verify_backup<'a>(&self, file: &'a Path) -> DbFuture<'a, ()> {
        Box::pin(crate::sqlite_backup::check_sqlite_copy(file))
    }
    fn set_aside<'a>(
        &self,
        db: &'a mut Db,
        folder: &'a Path,
    ) -> DbFuture<'a, (&'static str, PathBuf)> {
        Box::pin(crate::sqlite_backup::set_aside(db, folder))
    }
    fn restore_backup<'a>(&self, db: &'a mut Db, file: &'a Path) -> DbFuture<'a, ()> {
        Box::pin(crate::sqlite_backup::restore(db, file))
    }
    fn unique_index_sql(&self, table: &str, columns: &str) -> (String, Vec<String>) {
        (
            "SELECT 1 FROM pragma_index_list(?1) il WHERE il.\"unique\" = 1 AND (SELECT group_concat(name, ',') FROM (SELECT name FROM pragma_index_info(il.name) ORDER BY name)) = ?2 \
             UNION ALL SELECT 1 WHERE (SELECT group_concat(name, ',') FROM (SELECT name FROM pragma_table_info(?1) WHERE pk > 0 ORDER BY name)) = ?2"
                .into(),
            vec![table.into(), columns.into()],
        )
    }
    fn effect_sql(&self, effect: &Effect) -> (String, Vec<String>) {
        match effect {
            Effect::Table { name, .. } => (
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?".into(),
                vec![name.clone()],
            ),
            Effect::Index { name, .. } => (
                "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?".into(),
                vec![name.clone()],
            ),
            Effect::Column { table, column, .. } => (
                "SELECT 1 FROM pragma_table_info(?) WHERE name = ?".into(),
                vec![table.clone(), column.clone()],
            ),
        }
    }
    // IMMEDIATE takes SQLite's write lock up front instead of failing to upgrade later.
    fn begin(&self) -> &'static str {
        "BEGIN IMMEDIATE"
    }
}

/// The sidecar lock file of a database file.
pub(crate) fn lock_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".instar-lock");
    PathBuf::from(s)
}

/// Opens the sidecar lock file of `db`.
pub(crate) fn open_lock(db: &Path) -> Result<File, Error> {
    let path = lock_path(db);
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| {
            Error::Lock(format!(
                "cannot open the lock file {}: {e}; check that its folder is writable",
                path.display()
            ))
        })
}

/// Tries the exclusive lock on the sidecar file once.
pub(crate) fn try_lock(file: &File) -> Result<bool, Error> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(Error::Lock(format!("cannot lock the lock file: {e}")))
        }
    }
}

impl crate::ddl_lock::LockWaits for Sqlite {
    fn set_sql(&self, t: std::time::Duration) -> String {
        format!("PRAGMA busy_timeout = {}", t.as_millis().max(1))
    }
    fn reset_sql(&self) -> String {
        format!(
            "PRAGMA busy_timeout = {}",
            crate::sqlite_conn::BUSY_TIMEOUT.as_millis()
        )
    }
    fn is_lock_wait(&self, code: &str, _message: &str) -> bool {
        // SQLITE_BUSY and its extended codes (recovery, snapshot, timeout).
        matches!(code, "5" | "261" | "517" | "773")
    }
    fn holders_sql(&self) -> Option<&'static str> {
        None
    }
    fn unknown_holder(&self) -> &'static str {
        "another connection to this file (SQLite does not say which)"
    }
}
