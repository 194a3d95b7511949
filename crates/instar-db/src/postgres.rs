//! PostgreSQL: history DDL, and the run lock.
//!
//! The lock is a session-level advisory lock on the run's one connection, so it
//! dies with the connection. Behind a transaction-pooling proxy (PgBouncer in
//! `transaction` mode) session locks do not hold: connect directly, or through
//! session pooling.

use instar_core::effect::Effect;

use std::path::{Path, PathBuf};

use crate::engine::{quote_with, Col, DbFuture, Engine};
use crate::{Db, Error};

pub(crate) struct Postgres;

impl Engine for Postgres {
    fn dump<'a>(&self, db: &'a mut Db, work_dir: &'a Path) -> DbFuture<'a, String> {
        Box::pin(crate::postgres_backup::dump_sql(db, work_dir))
    }

    fn columns_sql(&self) -> &'static str {
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), COALESCE((SELECT k.n FROM unnest(i.indkey) WITH ORDINALITY k(att, n) WHERE k.att = a.attnum), 0)::bigint FROM pg_attribute a LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary WHERE a.attrelid = to_regclass(quote_ident($1)) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum"
    }

    fn utc_session(&self) -> Option<&'static str> {
        Some("SET TIME ZONE 'UTC'")
    }

    fn copy_select(&self, col: &str, class: &crate::copy::Class) -> String {
        use crate::copy::Class;
        match class {
            Class::Int => format!("{col}::bigint"),
            Class::Real | Class::Real32 => format!("{col}::float8"),
            Class::Bool | Class::Blob => col.to_string(),
            Class::TimestampTz => {
                format!("to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')")
            }
            Class::Timestamp => format!("to_char({col}, 'YYYY-MM-DD HH24:MI:SS.US')"),
            _ => format!("{col}::text"),
        }
    }

    fn audit_sql(&self) -> crate::engine::AuditSql {
        crate::engine::AuditSql {
            integrity: None,
            foreign_key_check: None,
            // NOT VALID foreign keys: PostgreSQL never checked the rows there before.
            unenforced_foreign_keys: Some("SELECT c.conname::text, c.conrelid::regclass::text, c.confrelid::regclass::text, (SELECT string_agg(a.attname::text, ',' ORDER BY k.n) FROM unnest(c.conkey) WITH ORDINALITY k(att, n) JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.att), (SELECT string_agg(a.attname::text, ',' ORDER BY k.n) FROM unnest(c.confkey) WITH ORDINALITY k(att, n) JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.att) FROM pg_constraint c WHERE c.contype = 'f' AND NOT c.convalidated AND c.connamespace = current_schema()::regnamespace ORDER BY 1"),
            unvalidated_checks: Some("SELECT c.conname::text, c.conrelid::regclass::text, pg_get_expr(c.conbin, c.conrelid) FROM pg_constraint c WHERE c.contype = 'c' AND NOT c.convalidated AND c.connamespace = current_schema()::regnamespace ORDER BY 1"),
            invalid_indexes: Some("SELECT i.indexrelid::regclass::text, i.indrelid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisvalid AND c.relnamespace = current_schema()::regnamespace ORDER BY 1"),
            catalog: "SELECT 'table', tablename::text FROM pg_tables WHERE schemaname = current_schema() UNION ALL SELECT 'view', viewname::text FROM pg_views WHERE schemaname = current_schema() UNION ALL SELECT 'view', matviewname::text FROM pg_matviews WHERE schemaname = current_schema() UNION ALL SELECT 'index', indexname::text FROM pg_indexes WHERE schemaname = current_schema()",
        }
    }

    fn scratch_sql(&self, name: &str) -> Option<crate::engine::ScratchSql> {
        Some(crate::engine::ScratchSql {
            create: format!("CREATE DATABASE {name} TEMPLATE template0"),
            list: "SELECT datname::text FROM pg_database WHERE datname LIKE 'instar\\_scratch\\_%'",
            // FORCE ends sessions a killed test left behind (PostgreSQL 13+).
            drop: format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            try_lock: format!("SELECT (CASE WHEN pg_try_advisory_lock(hashtext('{name}')) THEN 1 ELSE 0 END)::bigint"),
            unlock: format!("SELECT pg_advisory_unlock(hashtext('{name}'))"),
        })
    }

    fn table_rows_query(&self) -> Option<&'static str> {
        Some("SELECT c.relname::text, GREATEST(c.reltuples, 0)::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND n.nspname = current_schema()")
    }

    fn json(&self) -> &'static dyn crate::json_sql::JsonSql {
        &crate::postgres_json::PostgresJson
    }

    fn online(&self) -> &'static dyn crate::online::OnlineDdl {
        &crate::online::PostgresDdl
    }
    fn now_ms_sql(&self) -> &'static str {
        "CAST(floor(extract(epoch FROM clock_timestamp()) * 1000) AS bigint)"
    }
    fn lock_waits(&self) -> &'static dyn crate::ddl_lock::LockWaits {
        &Postgres
    }

    fn quote(&self, ident: &str) -> String {
        quote_with(ident, '"')
    }
    fn placeholder(&self, n: usize) -> String {
        format!("${n}")
    }
    fn column_type(&self, kind: Col) -> &'static str {
        match kind {
            Col::Id => "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
            Col::Short | Col::Long | Col::Key => "TEXT",
            Col::Int => "BIGINT",
        }
    }
    // Statements PostgreSQL refuses inside a transaction block.
    fn commits_by_itself(&self, stmt: &str) -> bool {
        let w = crate::engine::leading_words(stmt, 3);
        let w: Vec<&str> = w.iter().map(String::as_str).collect();
        crate::engine::is_transaction_control(stmt)
            || stmt
                .to_ascii_uppercase()
                .split_whitespace()
                .any(|x| x == "CONCURRENTLY")
            || matches!(
                w.as_slice(),
                ["VACUUM", ..]
                    | ["CREATE" | "DROP", "DATABASE" | "TABLESPACE", ..]
                    | ["ALTER", "SYSTEM", ..]
                    | ["CLUSTER"]
            )
    }
    fn try_lock<'a>(&self, db: &'a mut Db) -> DbFuture<'a, bool> {
        Box::pin(try_lock(&mut db.conn, &db.lock_name))
    }
    fn release_lock<'a>(&self, db: &'a mut Db) -> DbFuture<'a, ()> {
        Box::pin(release(&mut db.conn, &db.lock_name))
    }
    // Runs are transactional: no automatic backup.
    fn wants_backup(&self, _db: &Db, _risky: bool) -> bool {
        false
    }
    fn take_backup<'a>(
        &self,
        db: &'a mut Db,
        folder: &'a Path,
    ) -> DbFuture<'a, (&'static str, PathBuf)> {
        Box::pin(crate::postgres_backup::take(db, folder))
    }
    fn verify_backup<'a>(&self, file: &'a Path) -> DbFuture<'a, ()> {
        Box::pin(async move { crate::postgres_backup::verify(file) })
    }
    fn restore_backup<'a>(&self, db: &'a mut Db, file: &'a Path) -> DbFuture<'a, ()> {
        Box::pin(crate::postgres_backup::restore(db, file))
    }
    fn unique_index_sql(&self, table: &str, columns: &str) -> (String, Vec<String>) {
        let quoted: Vec<String> = table.split('.').map(|p| self.quote(p)).collect();
        (
            "SELECT 1 FROM pg_index i WHERE i.indrelid = CAST($1 AS regclass) AND i.indisunique AND i.indpred IS NULL \
             AND (SELECT string_agg(a.attname::text, ',' ORDER BY a.attname::text) FROM unnest(i.indkey) k(attnum) JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum) = $2 \
             AND NOT (0 = ANY (i.indkey))"
                .into(),
            vec![quoted.join("."), columns.into()],
        )
    }
    fn row_estimate_sql(&self, table: &str) -> Option<(String, Vec<String>)> {
        let quoted: Vec<String> = table.split('.').map(|p| self.quote(p)).collect();
        // reltuples is -1 for a table never vacuumed or analysed: unknown.
        Some((
            "SELECT CAST(reltuples AS BIGINT) FROM pg_class WHERE oid = CAST($1 AS regclass)"
                .into(),
            vec![quoted.join(".")],
        ))
    }
    fn effect_sql(&self, effect: &Effect) -> (String, Vec<String>) {
        match effect {
            Effect::Table { name, .. } | Effect::Index { name, .. } => (
                "SELECT 1 WHERE to_regclass($1) IS NOT NULL".into(),
                vec![name.clone()],
            ),
            Effect::Column { table, column, .. } => (
                "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2 AND NOT attisdropped".into(),
                vec![table.clone(), column.clone()],
            ),
        }
    }
    fn key_type_query(&self, table: &str, column: &str) -> Option<(String, Vec<String>)> {
        let quoted: Vec<String> = table.split('.').map(|p| self.quote(p)).collect();
        Some((
            "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND NOT a.attisdropped".into(),
            vec![quoted.join("."), column.into()],
        ))
    }
    // Every PostgreSQL type has an exact text form (floats too, since 12), so
    // anything but the integers and text the driver carries travels as text.
    fn key_cast(&self, declared: &str) -> Result<Option<String>, String> {
        let native = [
            "smallint",
            "integer",
            "bigint",
            "text",
            "character varying",
            "character",
            "\"char\"",
            "name",
        ]
        .iter()
        .any(|n| declared == *n || declared.starts_with(&format!("{n}(")));
        Ok((!native).then(|| declared.to_string()))
    }
    fn create_schema(&self, schema: &str) -> Option<String> {
        Some(format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            self.quote(schema)
        ))
    }
    fn typed_params(&self) -> bool {
        true
    }
    fn hex_sql(&self, expr: &str) -> String {
        format!("encode({expr}, 'hex')")
    }
    fn table_exists_sql(&self) -> &'static str {
        "SELECT 1 FROM information_schema.tables WHERE table_name = $1 AND table_schema = COALESCE(NULLIF($2, ''), current_schema())"
    }
    fn returning_id(&self) -> bool {
        true
    }
    fn transactional_ddl(&self) -> bool {
        true
    }
}

/// The advisory-lock key of a lock name: FNV-1a, as a signed 64-bit integer.
pub(crate) fn key(name: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// Tries the advisory lock once on `conn`.
async fn try_lock(conn: &mut crate::conn::Conn, name: &str) -> Result<bool, Error> {
    crate::conn::query("SELECT pg_try_advisory_lock($1)")
        .bind(key(name))
        .scalar(conn)
        .await
        .map_err(|e| Error::query("taking the advisory lock", e))
}

/// Releases the advisory lock.
async fn release(conn: &mut crate::conn::Conn, name: &str) -> Result<(), Error> {
    crate::conn::query("SELECT pg_advisory_unlock($1)")
        .bind(key(name))
        .execute(conn)
        .await
        .map_err(|e| Error::query("releasing the advisory lock", e))?;
    Ok(())
}

impl crate::ddl_lock::LockWaits for Postgres {
    fn set_sql(&self, t: std::time::Duration) -> String {
        format!("SET lock_timeout = '{}ms'", t.as_millis().max(1))
    }
    fn reset_sql(&self) -> String {
        "RESET lock_timeout".into()
    }
    fn is_lock_wait(&self, code: &str, _message: &str) -> bool {
        code == "55P03"
    }
    fn holders_sql(&self) -> Option<&'static str> {
        Some(
            "SELECT format('pid %s (application_name %L, %s%s, holds %s; last query: %s)', a.pid, a.application_name, a.state, \
             COALESCE(' for ' || floor(EXTRACT(EPOCH FROM now() - a.xact_start))::bigint || 's in its transaction', ''), \
             string_agg(DISTINCT c.relname || ' ' || l.mode, ', '), left(regexp_replace(a.query, '\\s+', ' ', 'g'), 100)) \
             FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.granted AND l.pid <> pg_backend_pid() AND a.datname = current_database() \
             AND c.relkind IN ('r', 'p', 'v', 'm') AND c.relnamespace <> 'pg_catalog'::regnamespace \
             GROUP BY a.pid, a.application_name, a.state, a.xact_start, a.query ORDER BY a.xact_start LIMIT 5",
        )
    }
}
