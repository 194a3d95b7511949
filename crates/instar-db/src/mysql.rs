//! MySQL and MariaDB: history DDL, and the run lock.
//!
//! DDL commits implicitly on MySQL, so every migration runs statement by
//! statement with its progress recorded (see the runner). The lock is
//! `GET_LOCK`, held by the run's connection and released when it closes.

use instar_core::effect::Effect;

use std::path::{Path, PathBuf};

use crate::engine::{quote_with, Col, DbFuture, Engine};
use crate::{Db, Error};

pub(crate) struct MySql;

impl Engine for MySql {
    fn dump<'a>(&self, db: &'a mut Db, _work_dir: &'a Path) -> DbFuture<'a, String> {
        Box::pin(async move {
            let history = db.settings.history_table.clone();
            // What SHOW CREATE TABLE/VIEW does not carry is refused, not dropped.
            let others = "SELECT CAST(CONCAT('trigger ', trigger_name) AS CHAR) FROM information_schema.triggers WHERE trigger_schema = DATABASE() UNION ALL SELECT CAST(CONCAT(LOWER(routine_type), ' ', routine_name) AS CHAR) FROM information_schema.routines WHERE routine_schema = DATABASE() UNION ALL SELECT CAST(CONCAT('event ', event_name) AS CHAR) FROM information_schema.events WHERE event_schema = DATABASE()";
            let found: Vec<String> = db
                .rows(others, "listing triggers, routines and events")
                .await?
                .iter()
                .filter_map(|r| r.first().and_then(|v| v.as_str()).map(str::to_string))
                .collect();
            if !found.is_empty() {
                return Err(Error::Unsupported(format!(
                    "the migrations create {} on MySQL, which a baseline cannot carry yet (only tables, views and rows); squash up to a version before them, or keep these migrations",
                    found.join(", ")
                )));
            }
            let list = "SELECT CAST(table_name AS CHAR), CAST(table_type AS CHAR) FROM information_schema.tables WHERE table_schema = DATABASE() ORDER BY create_time, table_name";
            let mut tables = Vec::new();
            let mut views = Vec::new();
            for r in db.rows(list, "listing tables").await? {
                let name = r
                    .first()
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string();
                if crate::dump::is_instar_table(&name, &history) {
                    continue;
                }
                if r.get(1).and_then(|v| v.as_str()) == Some("VIEW") {
                    views.push(name);
                } else {
                    tables.push(name);
                }
            }
            // Foreign keys may point at a table created after: checks off while it runs.
            let mut out = String::from("SET FOREIGN_KEY_CHECKS = 0;\n");
            for (t, what) in tables
                .iter()
                .map(|t| (t, "TABLE"))
                .chain(views.iter().map(|v| (v, "VIEW")))
            {
                let sql = format!("SHOW CREATE {what} {}", db.engine.quote(t));
                let rows = db
                    .rows(&sql, &format!("reading the definition of {t}"))
                    .await?;
                if let Some(ddl) = rows.first().and_then(|r| r.get(1)).and_then(|v| v.as_str()) {
                    out += &strip_definer(ddl);
                    out += ";\n";
                }
            }
            out += &db.rows_as_inserts(&tables).await?;
            out += "SET FOREIGN_KEY_CHECKS = 1;\n";
            Ok(out)
        })
    }

    fn columns_sql(&self) -> &'static str {
        "SELECT CAST(c.column_name AS CHAR), CAST(c.column_type AS CHAR), CAST(COALESCE((SELECT k.ordinal_position FROM information_schema.key_column_usage k WHERE k.table_schema = c.table_schema AND k.table_name = c.table_name AND k.column_name = c.column_name AND k.constraint_name = 'PRIMARY'), 0) AS SIGNED) FROM information_schema.columns c WHERE c.table_schema = DATABASE() AND c.table_name = ? AND c.extra NOT LIKE '%GENERATED%' ORDER BY c.ordinal_position"
    }

    fn utc_session(&self) -> Option<&'static str> {
        Some("SET time_zone = '+00:00'")
    }

    fn copy_select(&self, col: &str, class: &crate::copy::Class) -> String {
        use crate::copy::Class;
        match class {
            Class::Int | Class::Bool => format!("CAST({col} AS SIGNED)"),
            Class::Blob => col.to_string(),
            Class::Timestamp | Class::TimestampTz => {
                format!("DATE_FORMAT({col}, '%Y-%m-%d %H:%i:%s.%f')")
            }
            _ => format!("CAST({col} AS CHAR)"),
        }
    }

    fn audit_sql(&self) -> crate::engine::AuditSql {
        crate::engine::AuditSql {
            integrity: None,
            foreign_key_check: None,
            // MySQL keeps no trace of rows loaded with FOREIGN_KEY_CHECKS = 0: every key is checked.
            unenforced_foreign_keys: Some("SELECT CAST(constraint_name AS CHAR), CAST(CONCAT('`', table_name, '`') AS CHAR), CAST(CONCAT('`', referenced_table_name, '`') AS CHAR), CAST(GROUP_CONCAT(column_name ORDER BY ordinal_position) AS CHAR), CAST(GROUP_CONCAT(referenced_column_name ORDER BY ordinal_position) AS CHAR) FROM information_schema.key_column_usage WHERE table_schema = DATABASE() AND referenced_table_name IS NOT NULL GROUP BY constraint_name, table_name, referenced_table_name ORDER BY 1"),
            unvalidated_checks: None,
            invalid_indexes: None,
            catalog: "SELECT CAST(CASE table_type WHEN 'VIEW' THEN 'view' ELSE 'table' END AS CHAR), CAST(table_name AS CHAR) FROM information_schema.tables WHERE table_schema = DATABASE() UNION ALL SELECT DISTINCT CAST('index' AS CHAR), CAST(index_name AS CHAR) FROM information_schema.statistics WHERE table_schema = DATABASE() AND index_name <> 'PRIMARY'",
        }
    }

    fn scratch_sql(&self, name: &str) -> Option<crate::engine::ScratchSql> {
        Some(crate::engine::ScratchSql {
            create: format!("CREATE DATABASE {name}"),
            list: "SELECT CAST(schema_name AS CHAR) FROM information_schema.schemata WHERE schema_name LIKE 'instar\\_scratch\\_%'",
            drop: format!("DROP DATABASE IF EXISTS {name}"),
            try_lock: format!("SELECT CAST(COALESCE(GET_LOCK('{name}', 0), 0) AS SIGNED)"),
            unlock: format!("SELECT RELEASE_LOCK('{name}')"),
        })
    }

    fn table_rows_query(&self) -> Option<&'static str> {
        Some("SELECT CAST(table_name AS CHAR), CAST(COALESCE(table_rows, 0) AS SIGNED) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'")
    }

    fn json(&self) -> &'static dyn crate::json_sql::JsonSql {
        &crate::mysql_json::MySqlJson
    }

    fn online(&self) -> &'static dyn crate::online::OnlineDdl {
        &crate::online::MySqlDdl
    }
    fn now_ms_sql(&self) -> &'static str {
        "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)"
    }
    fn lock_waits(&self) -> &'static dyn crate::ddl_lock::LockWaits {
        &MySql
    }

    // A MySQL "schema" is a database: Instar creates tables, not databases.
    fn schema_exists_sql(&self) -> Option<(&'static str, &'static str)> {
        Some((
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = ?",
            "this MySQL server has no database of that name; create it first (CREATE DATABASE), or remove the setting to keep the history in the URL's database",
        ))
    }
    fn quote(&self, ident: &str) -> String {
        quote_with(ident, '`')
    }
    fn placeholder(&self, _: usize) -> String {
        "?".into()
    }
    fn column_type(&self, kind: Col) -> &'static str {
        match kind {
            Col::Id => "BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY",
            Col::Short => "VARCHAR(255)",
            Col::Key => "VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
            Col::Long => "LONGTEXT",
            Col::Int => "BIGINT",
        }
    }
    fn table_options(&self) -> &'static str {
        " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    }
    // 0.2.0 and earlier wrote TEXT (64 KiB): too small for the statement hashes
    // of a file of some 4,000 statements, or a long failing statement.
    fn narrow_columns(&self) -> Option<(&'static str, &'static str)> {
        Some((
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? AND table_schema = COALESCE(NULLIF(?, ''), DATABASE()) AND data_type IN ('text', 'tinytext', 'mediumtext')",
            "ALTER TABLE {table} MODIFY {column} {type}",
        ))
    }
    fn table_exists_sql(&self) -> &'static str {
        "SELECT 1 FROM information_schema.tables WHERE table_name = ? AND table_schema = COALESCE(NULLIF(?, ''), DATABASE())"
    }
    fn returning_id(&self) -> bool {
        false
    }
    fn transactional_ddl(&self) -> bool {
        false
    }
    // Only DML can commit together with its progress row: DDL (and anything
    // else) commits implicitly.
    fn commits_by_itself(&self, stmt: &str) -> bool {
        !matches!(
            crate::engine::leading_words(stmt, 1)
                .first()
                .map(String::as_str),
            Some("INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "SELECT" | "WITH" | "DO")
        )
    }
    // GET_LOCK names are server-wide: the name holds the database's.
    fn lock_name(&self, url: &crate::url::DbUrl, _history_table: &str) -> String {
        // The database's name only: two runners whose URLs differ in their
        // parameters must take the same lock.
        let path = url.driver_url.split('?').next().unwrap_or("");
        let db = path.rsplit('/').next().unwrap_or("");
        format!("instar:{db}").chars().take(64).collect()
    }
    fn try_lock<'a>(&self, db: &'a mut Db) -> DbFuture<'a, bool> {
        Box::pin(try_lock(&mut db.conn, &db.lock_name))
    }
    fn release_lock<'a>(&self, db: &'a mut Db) -> DbFuture<'a, ()> {
        Box::pin(release(&mut db.conn, &db.lock_name))
    }
    fn wants_backup(&self, _db: &Db, risky: bool) -> bool {
        risky && crate::backup::tool_exists("mysqldump")
    }
    fn take_backup<'a>(
        &self,
        db: &'a mut Db,
        folder: &'a Path,
    ) -> DbFuture<'a, (&'static str, PathBuf)> {
        Box::pin(crate::mysql_backup::take(db, folder))
    }
    fn verify_backup<'a>(&self, file: &'a Path) -> DbFuture<'a, ()> {
        Box::pin(async move { crate::mysql_backup::verify(file) })
    }
    fn restore_backup<'a>(&self, db: &'a mut Db, file: &'a Path) -> DbFuture<'a, ()> {
        Box::pin(crate::mysql_backup::restore(db, file))
    }
    fn unique_index_sql(&self, table: &str, columns: &str) -> (String, Vec<String>) {
        let (schema, name) = table.split_once('.').unwrap_or(("", table));
        (
            "SELECT 1 FROM information_schema.statistics WHERE table_schema = COALESCE(NULLIF(?, ''), DATABASE()) AND table_name = ? AND non_unique = 0 \
             GROUP BY index_name HAVING CAST(GROUP_CONCAT(column_name ORDER BY column_name SEPARATOR ',') AS CHAR) = ? LIMIT 1"
                .into(),
            vec![schema.into(), name.into(), columns.into()],
        )
    }
    fn row_estimate_sql(&self, table: &str) -> Option<(String, Vec<String>)> {
        let (schema, name) = table.split_once('.').unwrap_or(("", table));
        Some((
            "SELECT CAST(table_rows AS SIGNED) FROM information_schema.tables WHERE table_schema = COALESCE(NULLIF(?, ''), DATABASE()) AND table_name = ?".into(),
            vec![schema.into(), name.into()],
        ))
    }
    fn effect_sql(&self, effect: &Effect) -> (String, Vec<String>) {
        let split = |n: &str| match n.split_once('.') {
            Some((s, t)) => (s.to_string(), t.to_string()),
            None => (String::new(), n.to_string()),
        };
        const SCHEMA: &str = "table_schema = COALESCE(NULLIF(?, ''), DATABASE())";
        match effect {
            Effect::Table { name, .. } => {
                let (s, t) = split(name);
                (
                    format!(
                        "SELECT 1 FROM information_schema.tables WHERE {SCHEMA} AND table_name = ?"
                    ),
                    vec![s, t],
                )
            }
            Effect::Index { name, table, .. } => {
                let (s, t) = split(table.as_deref().unwrap_or(""));
                (
                    format!("SELECT 1 FROM information_schema.statistics WHERE {SCHEMA} AND (table_name = ? OR ? = '') AND index_name = ? LIMIT 1"),
                    vec![s, t.clone(), t, name.clone()],
                )
            }
            Effect::Column { table, column, .. } => {
                let (s, t) = split(table);
                (
                    format!("SELECT 1 FROM information_schema.columns WHERE {SCHEMA} AND table_name = ? AND column_name = ?"),
                    vec![s, t, column.clone()],
                )
            }
        }
    }
    fn key_type_query(&self, table: &str, column: &str) -> Option<(String, Vec<String>)> {
        let (schema, name) = table.split_once('.').unwrap_or(("", table));
        Some((
            "SELECT CAST(column_type AS CHAR) FROM information_schema.columns WHERE table_schema = COALESCE(NULLIF(?, ''), DATABASE()) AND table_name = ? AND column_name = ?".into(),
            vec![schema.into(), name.into(), column.into()],
        ))
    }
    // The Any driver decodes signed integers and text; unsigned BIGINT above
    // i64::MAX and dates travel as text, cast back on the way in.
    fn key_cast(&self, declared: &str) -> Result<Option<String>, String> {
        let t = declared.to_ascii_lowercase();
        let base = t.split(['(', ' ']).next().unwrap_or("");
        let unsigned = t.contains("unsigned");
        Ok(match base {
            "bigint" if unsigned => Some("UNSIGNED".into()),
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" => None,
            "char" | "varchar" | "text" | "tinytext" | "mediumtext" | "longtext" => None,
            "date" => Some("DATE".into()),
            "datetime" => Some("DATETIME(6)".into()),
            "time" => Some("TIME(6)".into()),
            "decimal" | "numeric" => Some(declared.to_string()),
            "float" | "double" | "real" => {
                return Err(format!(
                "the key's type {declared} is floating point, which does not round-trip exactly"
            ))
            }
            _ => {
                return Err(format!(
                    "the key's type {declared} cannot be carried exactly through a checkpoint"
                ))
            }
        })
    }
    fn text_type(&self) -> &'static str {
        "CHAR"
    }
    // A JSON column (and HEX's result) has a binary collation, which the
    // driver reads as a BLOB: a case-insensitive one reads as text.
    fn as_text(&self, expr: &str) -> String {
        format!("CAST({expr} AS CHAR CHARACTER SET utf8mb4) COLLATE utf8mb4_general_ci")
    }
    fn hex_sql(&self, expr: &str) -> String {
        format!("LOWER(CAST(HEX({expr}) AS CHAR(255)))")
    }
}

/// Tries `GET_LOCK(name)` once on `conn`.
async fn try_lock(conn: &mut crate::conn::Conn, name: &str) -> Result<bool, Error> {
    let got: Option<i64> = crate::conn::query("SELECT GET_LOCK(?, 0)")
        .bind(name)
        .scalar(conn)
        .await
        .map_err(|e| Error::query("taking the migration lock", e))?;
    Ok(got == Some(1))
}

/// Releases the lock.
async fn release(conn: &mut crate::conn::Conn, name: &str) -> Result<(), Error> {
    crate::conn::query("SELECT RELEASE_LOCK(?)")
        .bind(name)
        .execute(conn)
        .await
        .map_err(|e| Error::query("releasing the migration lock", e))?;
    Ok(())
}

/// A view's definition without `ALGORITHM=… DEFINER=… SQL SECURITY …`: the
/// baseline runs as whoever applies it.
fn strip_definer(ddl: &str) -> String {
    let Some(start) = ddl.find(" ALGORITHM=").or_else(|| ddl.find(" DEFINER=")) else {
        return ddl.to_string();
    };
    let Some(view) = ddl.find(" VIEW ") else {
        return ddl.to_string();
    };
    if view < start {
        return ddl.to_string();
    }
    format!("{}{}", &ddl[..start], &ddl[view..])
}

impl crate::ddl_lock::LockWaits for MySql {
    fn set_sql(&self, t: std::time::Duration) -> String {
        // Whole seconds, at least one: the variable's unit.
        format!(
            "SET SESSION lock_wait_timeout = {}",
            t.as_secs_f64().ceil().max(1.0) as u64
        )
    }
    fn reset_sql(&self) -> String {
        "SET SESSION lock_wait_timeout = DEFAULT".into()
    }
    fn is_lock_wait(&self, code: &str, message: &str) -> bool {
        // ER_LOCK_WAIT_TIMEOUT 1205, reported by its SQLSTATE HY000 (shared
        // with many errors) and its message.
        code == "1205" || (code == "HY000" && message.starts_with("Lock wait timeout exceeded"))
    }
    fn holders_sql(&self) -> Option<&'static str> {
        Some(
            "SELECT CONCAT('connection ', p.ID, ' (user ', p.USER, ', ', LOWER(p.COMMAND), \
             COALESCE(CONCAT(' for ', TIMESTAMPDIFF(SECOND, t.trx_started, NOW()), 's in its transaction'), ''), \
             '; last query: ', COALESCE(LEFT(COALESCE(t.trx_query, p.INFO), 100), 'none running'), ')') \
             FROM information_schema.PROCESSLIST p LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID \
             WHERE p.ID <> CONNECTION_ID() AND p.DB = DATABASE() AND (t.trx_id IS NOT NULL OR p.COMMAND <> 'Sleep') \
             ORDER BY t.trx_started LIMIT 5",
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::Engine;

    #[test]
    fn the_lock_is_named_by_the_database_not_the_url_parameters() {
        let name = |u: &str| {
            super::MySql.lock_name(&crate::url::DbUrl::parse(u).unwrap(), "instar_history")
        };
        assert_eq!(name("mysql://root@127.0.0.1:3306/app"), "instar:app");
        assert_eq!(
            name("mysql://root@127.0.0.1:3307/app?ssl-mode=DISABLED"),
            "instar:app"
        );
    }
}
