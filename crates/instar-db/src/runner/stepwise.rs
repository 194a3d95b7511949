//! Running a migration statement by statement (MySQL, whose DDL commits by
//! itself; `-- instar:no-transaction` files), with its progress in the `start` row.
//!
//! A statement that can run in a transaction commits together with its
//! progress row, so it is recorded exactly when it takes effect. One that
//! commits by itself is recorded as *in flight* before it is sent: after a
//! crash the migration is dirty at that statement, and the next run checks
//! whether it took effect (the table, index or column it creates or drops)
//! before deciding to send it again.

use instar_core::checksum::statement_hash;
use instar_core::effect::{expected_effect, Effect};
use instar_core::event::EventSink;
use instar_core::history::EventKind;
use instar_core::plan::Step;
use instar_core::split::Statement;
use instar_core::Migration;

use super::step::{
    done_row, failed, finished_event, new_row, pg_position, run_checks, short, start_step,
    statement_event,
};
use crate::conn::exec;
use crate::db::{control, History};
use crate::ddl_lock::ShortLocks;
use crate::engine::Engine;
use crate::error::{db_message, Aftermath};
use crate::{CancelToken, Db, Error};

/// Runs one migration statement by statement. Returns `false` when `cancel`
/// stopped it between two statements (its progress is recorded; `up` resumes
/// after the last one done).
pub(super) async fn run_stepwise(
    db: &mut Db,
    m: &Migration,
    step: &Step,
    cancel: &CancelToken,
    locks: Option<ShortLocks>,
    sink: &mut dyn EventSink,
) -> Result<bool, Error> {
    let (t0, up, stmts) = start_step(db, m, step, sink);
    let engine = db.engine;
    let (history, conn) = db.parts();
    if up && step.resume_from == 0 {
        run_checks(conn, m, "before", Aftermath::RolledBack).await?;
    }
    let row_id = match step.resume_row {
        Some(id) => id,
        None => {
            let mut row = new_row(m, EventKind::Start, step.direction);
            row.statements_total = stmts.len() as i64;
            row.statement_hashes = Some(
                stmts
                    .iter()
                    .map(|s| statement_hash(&s.sql))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            history.insert(conn, &row).await?
        }
    };
    let w = Stepwise {
        engine,
        history,
        row_id,
        m,
        step,
        locks,
    };
    let mut rows = 0u64;
    for (i, s) in stmts.iter().enumerate().skip(step.resume_from) {
        if i > step.resume_from && cancel.is_cancelled() {
            return Ok(false);
        }
        let uncertain = i == step.resume_from && step.in_flight;
        if uncertain && w.took_effect(conn, s).await? == Some(true) {
            // It had committed before the previous run died: count it, do not send it again.
            history.progress(conn, row_id, i + 1, None, None).await?;
            continue;
        }
        sink.event(&statement_event(step, i, s));
        rows += w.statement(conn, i, s, uncertain, sink).await?;
    }
    if up {
        let dirty = Aftermath::Dirty {
            applied: stmts.len(),
            resume: step.direction.as_str(),
            backup: None,
        };
        if let Err(e) = run_checks(conn, m, "after", dirty).await {
            history
                .progress(conn, row_id, stmts.len(), Some(&e.to_string()), None)
                .await?;
            return Err(e);
        }
    }
    history
        .insert(conn, &done_row(m, step, t0, stmts.len(), Some(rows)))
        .await?;
    sink.event(&finished_event(step, t0, rows));
    Ok(true)
}

/// What every statement of one statement-by-statement run needs.
struct Stepwise<'a> {
    engine: &'static dyn Engine,
    history: History<'a>,
    row_id: i64,
    m: &'a Migration,
    step: &'a Step,
    /// Short lock waits, retried (online migrations).
    locks: Option<ShortLocks>,
}

impl Stepwise<'_> {
    /// Whether statement `s`'s effect is visible now: `None` when its shape
    /// tells nothing Instar can check.
    async fn took_effect(
        &self,
        conn: &mut crate::conn::Conn,
        s: &Statement<'_>,
    ) -> Result<Option<bool>, Error> {
        let Some(effect) = expected_effect(&s.sql) else {
            return Ok(None);
        };
        let (sql, binds) = self.engine.effect_sql(&effect);
        let q = crate::conn::query(&sql).bind_texts(binds);
        let present = q
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| Error::query("checking whether an interrupted statement took effect", e))?
            .is_some();
        let wanted = match effect {
            Effect::Table { exists, .. }
            | Effect::Index { exists, .. }
            | Effect::Column { exists, .. } => exists,
        };
        Ok(Some(present == wanted))
    }

    /// Runs one statement; with short lock waits, a statement that timed out
    /// waiting for a lock had no effect and is sent again (in a new
    /// transaction where it has one). The error, and why retries stopped.
    async fn exec_retrying(
        &self,
        conn: &mut crate::conn::Conn,
        s: &Statement<'_>,
        own_commit: bool,
        sink: &mut dyn EventSink,
    ) -> Result<u64, (sqlx::Error, Option<String>)> {
        let mut attempt = 0;
        loop {
            let e = match exec(conn, &s.sql).await {
                Ok(n) => return Ok(n),
                Err(e) => e,
            };
            let Some(locks) = self.locks.filter(|_| ShortLocks::is_wait(self.engine, &e)) else {
                return Err((e, None));
            };
            attempt += 1;
            if !own_commit {
                let _ = exec(conn, "ROLLBACK").await;
            }
            let what = format!("migration {} line {}", self.m.version, s.line);
            if let Err(why) = locks
                .after_wait(self.engine, conn, &what, attempt, sink)
                .await
            {
                return Err((e, Some(why)));
            }
            if !own_commit {
                control(conn, self.engine.begin())
                    .await
                    .map_err(|x| (e, Some(x.to_string())))?;
            }
        }
    }

    /// Runs statement `i` and records it: in one transaction with its progress
    /// where it can, otherwise marked in flight first. Returns the rows it affected.
    async fn statement(
        &self,
        conn: &mut crate::conn::Conn,
        i: usize,
        s: &Statement<'_>,
        uncertain: bool,
        sink: &mut dyn EventSink,
    ) -> Result<u64, Error> {
        let h = self.history;
        let own_commit = self.engine.commits_by_itself(&s.sql);
        if own_commit {
            h.in_flight(conn, self.row_id, i).await?;
        } else {
            control(conn, self.engine.begin()).await?;
        }
        let result = self.exec_retrying(conn, s, own_commit, sink).await;
        match result {
            Ok(r) => {
                h.progress(conn, self.row_id, i + 1, None, None).await?;
                if !own_commit {
                    control(conn, "COMMIT").await?;
                }
                Ok(r)
            }
            Err((e, gave_up)) => {
                if !own_commit {
                    let _ = exec(conn, "ROLLBACK").await;
                }
                let mut message = db_message(&e);
                if let Some(why) = gave_up {
                    message.push_str(&format!(": {why}"));
                }
                if uncertain {
                    message.push_str(&format!(
                        " (this statement was in flight when an earlier run stopped and may have taken effect then; if it did, `instar repair --statement-done {}` counts it as done)",
                        self.m.version
                    ));
                }
                let at = format!("line {}: {}", s.line, short(&s.sql));
                h.progress(conn, self.row_id, i, Some(&message), Some(&at))
                    .await?;
                let dirty = Aftermath::Dirty {
                    applied: i,
                    resume: self.step.direction.as_str(),
                    backup: None,
                };
                let mut err = failed(self.m, self.step.direction, s, pg_position(&e), &e, dirty);
                if let Error::StatementFailed { message: m, .. } = &mut err {
                    *m = message;
                }
                Err(err)
            }
        }
    }
}
