//! MySQL and MariaDB: history DDL, and the run lock.
//!
//! DDL commits implicitly on MySQL, so every migration runs statement by
//! statement with its progress recorded (see the runner). The lock is
//! `GET_LOCK`, held by the run's connection and released when it closes.

use sqlx::AnyConnection;

use crate::engine::{quote_with, Engine};
use crate::Error;

pub(crate) struct MySql;

impl Engine for MySql {
    fn quote(&self, ident: &str) -> String {
        quote_with(ident, '`')
    }
    fn placeholder(&self, _: usize) -> String {
        "?".into()
    }
    fn history_ddl(&self, table: &str) -> Vec<String> {
        vec![format!(
            "CREATE TABLE IF NOT EXISTS {table} (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  version VARCHAR(255) NOT NULL, name VARCHAR(255) NOT NULL, event VARCHAR(16) NOT NULL, direction VARCHAR(8) NOT NULL,
  kind VARCHAR(16) NOT NULL, checksum VARCHAR(80), schema_version VARCHAR(64),
  started_at VARCHAR(40) NOT NULL, finished_at VARCHAR(40), duration_ms BIGINT,
  statements_applied BIGINT NOT NULL, statements_total BIGINT NOT NULL, statement_hashes TEXT,
  rows_affected BIGINT, error TEXT, failed_statement TEXT,
  operator VARCHAR(255) NOT NULL, tool_version VARCHAR(32) NOT NULL, note TEXT) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        )]
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
}

/// Tries `GET_LOCK(name)` once on `conn`.
pub(crate) async fn try_lock(conn: &mut AnyConnection, name: &str) -> Result<bool, Error> {
    let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 0)")
        .bind(name)
        .fetch_one(conn)
        .await
        .map_err(|e| Error::query("taking the migration lock", e))?;
    Ok(got == Some(1))
}

/// Releases the lock.
pub(crate) async fn release(conn: &mut AnyConnection, name: &str) -> Result<(), Error> {
    sqlx::query("SELECT RELEASE_LOCK(?)")
        .bind(name)
        .execute(conn)
        .await
        .map_err(|e| Error::query("releasing the migration lock", e))?;
    Ok(())
}
