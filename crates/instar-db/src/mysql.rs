//! MySQL and MariaDB: history DDL, and the run lock.
//!
//! DDL commits implicitly on MySQL, so every migration runs statement by
//! statement with its progress recorded (see the runner). The lock is
//! `GET_LOCK`, held by the run's connection and released when it closes.

use sqlx::AnyConnection;

use crate::engine::{quote_with, Col, Engine};
use crate::Error;

pub(crate) struct MySql;

impl Engine for MySql {
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
            Col::Long => "TEXT",
            Col::Int => "BIGINT",
        }
    }
    fn table_options(&self) -> &'static str {
        " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
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
