//! Short lock waits for Instar's own DDL on a live database.
//!
//! An `ALTER TABLE` that waits behind a long transaction holds its place in
//! the table's lock queue, and every read and write of the application then
//! queues behind it: a migration that waits one minute stops the application
//! for one minute. So online work runs its DDL with a short lock timeout
//! (`Settings::ddl_lock_timeout`), and a statement that times out is tried
//! again after a backoff, up to `Settings::ddl_lock_attempts` times; each
//! retry is an event naming the sessions that held the lock, and giving up
//! says who they were. Each engine spells the pieces ([`LockWaits`]); this
//! module knows none.

use std::time::Duration;

use instar_core::event::{Event, EventSink};

use crate::conn::{exec, query, Conn};
use crate::engine::Engine;
use crate::{Db, Error};

/// One engine's lock waits, as SQL.
pub(crate) trait LockWaits: Sync {
    /// The statement that makes lock waits of this session give up after `t`.
    fn set_sql(&self, t: Duration) -> String;
    /// The statement that gives this session back its usual lock waits.
    fn reset_sql(&self) -> String;
    /// Whether an error (its code and message) means "the lock was not
    /// granted in time".
    fn is_lock_wait(&self, code: &str, message: &str) -> bool;
    /// A query whose rows (one text column each) describe the other sessions
    /// holding locks on tables of this database; `None` when the engine cannot tell.
    fn holders_sql(&self) -> Option<&'static str>;
    /// What to say when the engine cannot tell who holds the lock.
    fn unknown_holder(&self) -> &'static str {
        "a session the engine does not name"
    }
}

/// The short lock waits of one piece of online work.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShortLocks {
    pub(crate) timeout: Duration,
    pub(crate) attempts: u32,
}

impl ShortLocks {
    pub(crate) fn of(db: &Db) -> ShortLocks {
        ShortLocks {
            timeout: db.settings.ddl_lock_timeout,
            attempts: db.settings.ddl_lock_attempts.max(1),
        }
    }

    /// Makes this session's lock waits short.
    pub(crate) async fn set(&self, engine: &dyn Engine, conn: &mut Conn) -> Result<(), Error> {
        let sql = engine.lock_waits().set_sql(self.timeout);
        exec(conn, &sql)
            .await
            .map(|_| ())
            .map_err(|e| Error::query("setting the lock timeout of online DDL", e))
    }

    /// Gives this session back its usual lock waits.
    pub(crate) async fn reset(engine: &dyn Engine, conn: &mut Conn) -> Result<(), Error> {
        let sql = engine.lock_waits().reset_sql();
        exec(conn, &sql)
            .await
            .map(|_| ())
            .map_err(|e| Error::query("resetting the lock timeout", e))
    }

    /// Whether a driver error is a lock wait that gave up.
    pub(crate) fn is_wait(engine: &dyn Engine, e: &sqlx::Error) -> bool {
        crate::error::db_code(e).is_some_and(|c| {
            engine
                .lock_waits()
                .is_lock_wait(&c, &crate::error::db_message(e))
        })
    }

    /// Whether one of Instar's errors is a lock wait that gave up.
    pub(crate) fn is_wait_error(engine: &dyn Engine, e: &Error) -> bool {
        let message = match e {
            Error::StatementFailed { message, .. } | Error::Query { message, .. } => message,
            _ => return false,
        };
        e.db_code()
            .is_some_and(|c| engine.lock_waits().is_lock_wait(c, message))
    }

    /// The wait before attempt `attempt + 1`: 250 ms doubling, at most 8 s.
    pub(crate) fn backoff(attempt: u32) -> Duration {
        Duration::from_millis(250u64 << attempt.saturating_sub(1).min(5))
            .min(Duration::from_secs(8))
    }

    /// After attempt `attempt` gave up waiting: whether to try again (after
    /// reporting it and sleeping), or the text that says why it stops.
    pub(crate) async fn after_wait(
        &self,
        engine: &dyn Engine,
        conn: &mut Conn,
        what: &str,
        attempt: u32,
        sink: &mut dyn EventSink,
    ) -> Result<(), String> {
        let holders = holders(engine, conn).await;
        if attempt >= self.attempts {
            return Err(format!(
                "gave up after {attempt} attempt(s) of {:.1}s each waiting for a table lock, held by {holders}. End that transaction and run the command again, or raise [online] lock_timeout / lock_attempts in instar.toml",
                self.timeout.as_secs_f64()
            ));
        }
        let pause = Self::backoff(attempt);
        sink.event(&Event::LockRetry {
            what: what.to_string(),
            attempt,
            of: self.attempts,
            backoff_ms: pause.as_millis() as u64,
            holders,
        });
        tokio::time::sleep(pause).await;
        Ok(())
    }
}

/// The sessions holding locks on this database's tables, as one line.
pub(crate) async fn holders(engine: &dyn Engine, conn: &mut Conn) -> String {
    let waits = engine.lock_waits();
    let Some(sql) = waits.holders_sql() else {
        return waits.unknown_holder().to_string();
    };
    let rows = match query(sql).fetch_all(&mut *conn).await {
        Ok(rows) => rows,
        Err(e) => return format!("sessions that could not be listed ({e})"),
    };
    let lines: Vec<String> = rows
        .iter()
        .filter_map(|r| crate::db::row_values(r).ok())
        .filter_map(|v| v.first().and_then(|x| x.as_str()).map(str::to_string))
        .collect();
    if lines.is_empty() {
        "a session that had ended by the time Instar looked".into()
    } else {
        lines.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(ShortLocks::backoff(1), Duration::from_millis(250));
        assert_eq!(ShortLocks::backoff(2), Duration::from_millis(500));
        assert_eq!(ShortLocks::backoff(6), Duration::from_secs(8));
        assert_eq!(ShortLocks::backoff(60), Duration::from_secs(8));
    }
}
