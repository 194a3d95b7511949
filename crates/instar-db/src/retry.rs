//! Retries where the engine asks for them: a serialization failure or a
//! deadlock (PostgreSQL 40001/40P01, MySQL 1213 — also Galera's
//! certification conflict —, a lock wait timeout, TiDB's write conflict,
//! SQLite busy) rolled the transaction back, and running it again is the
//! documented answer. Only Instar's own transactions are retried (a data
//! migration's batch with its checkpoint, the start and the end of a data
//! migration — its history row with its checkpoints —, the lease's
//! bookkeeping), never a user's DDL.

use std::time::Duration;

/// Attempts of one transaction before its error stands.
pub(crate) const ATTEMPTS: u32 = 6;

/// Whether the engine says "run the transaction again".
pub(crate) fn retryable(e: &sqlx::Error) -> bool {
    crate::error::db_code(e).is_some_and(|c| retryable_code(&c))
}

/// Whether error code `c` says "run the transaction again".
pub(crate) fn retryable_code(c: &str) -> bool {
    matches!(
        c,
        "40001" | "40P01" | "1213" | "1205" | "9007" | "8002" | "8022" | "5" | "261" | "517"
    )
}

/// The code of an error the engine asks to retry, if it is one.
pub(crate) fn code_of(e: &crate::Error) -> Option<String> {
    match e {
        crate::Error::Query { code: Some(c), .. } if retryable_code(c) => Some(c.clone()),
        _ => None,
    }
}

/// Ends one of Instar's own transactions: COMMIT after `r` succeeded,
/// ROLLBACK after it failed.
pub(crate) async fn end<T>(
    db: &mut crate::Db,
    r: Result<T, crate::Error>,
) -> Result<T, crate::Error> {
    match r {
        Ok(t) => match crate::db::control(&mut db.conn, "COMMIT").await {
            Ok(()) => Ok(t),
            Err(e) => {
                // SQLite keeps a transaction whose COMMIT was busy open.
                let _ = crate::conn::exec(&mut db.conn, "ROLLBACK").await;
                Err(e)
            }
        },
        Err(e) => {
            let _ = crate::conn::exec(&mut db.conn, "ROLLBACK").await;
            Err(e)
        }
    }
}

/// Whether one of Instar's own transactions (history and checkpoint rows,
/// never a user's statement) that ended with `r` on attempt `attempt` runs
/// again: the engine rolled it back for a serialization failure or a
/// deadlock, and fewer than [`ATTEMPTS`] were made. The wait before the next
/// attempt, reported to `sink` as a `retry` event.
pub(crate) fn again<T>(
    r: &Result<T, crate::Error>,
    attempt: u32,
    what: &str,
    sink: &mut dyn instar_core::event::EventSink,
) -> Option<Duration> {
    let code = match r {
        Err(e) if attempt < ATTEMPTS => code_of(e)?,
        _ => return None,
    };
    let pause = backoff(attempt);
    sink.event(&instar_core::event::Event::Retry {
        what: what.into(),
        code,
        attempt,
        backoff_ms: pause.as_millis() as u64,
    });
    Some(pause)
}

/// The wait before attempt `attempt + 1`: 50 ms doubling, at most 2 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(50u64 << attempt.saturating_sub(1).min(6)).min(Duration::from_secs(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_two_seconds() {
        assert_eq!(backoff(1), Duration::from_millis(50));
        assert_eq!(backoff(3), Duration::from_millis(200));
        assert_eq!(backoff(10), Duration::from_secs(2));
    }
}
