//! Running one migration: in a transaction with its history row, or statement
//! by statement with recorded progress; locating a failing statement; the
//! history rows a run writes.

use std::time::Instant;

use instar_core::checksum::statement_hash;
use instar_core::event::{Event, EventSink};
use instar_core::history::{Direction, EventKind, HistoryRow};
use instar_core::plan::{Plan, Step};
use instar_core::split::Statement;
use instar_core::{time, Migration, Source};
use sqlx::AnyConnection;

use crate::db::History;
use crate::error::{db_message, Aftermath};
use crate::{Db, Error};

use super::{begin_sql, exec_control, script, statements};

/// A fresh history row for `m`, stamped now.
pub(crate) fn new_row(m: &Migration, event: EventKind, direction: Direction) -> HistoryRow {
    HistoryRow {
        id: 0,
        version: m.version.to_string(),
        name: m.name.clone(),
        event,
        direction,
        kind: if m.is_repeatable() {
            "repeatable"
        } else {
            "schema"
        }
        .into(),
        checksum: Some(m.checksum.clone()),
        schema_version: m.meta.schema_version.as_ref().map(|v| v.to_string()),
        started_at: time::now_rfc3339(),
        finished_at: None,
        duration_ms: None,
        statements_applied: 0,
        statements_total: 0,
        statement_hashes: None,
        rows_affected: None,
        error: None,
        failed_statement: None,
        operator: operator(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        note: None,
    }
}

/// The `apply`/`revert` row of a finished step.
fn done_row(
    m: &Migration,
    step: &Step,
    t0: Instant,
    statements: usize,
    rows: Option<u64>,
) -> HistoryRow {
    let event = match step.direction {
        Direction::Up => EventKind::Apply,
        Direction::Down => EventKind::Revert,
    };
    let mut row = new_row(m, event, step.direction);
    row.finished_at = Some(time::now_rfc3339());
    row.duration_ms = Some(t0.elapsed().as_millis() as i64);
    row.statements_applied = statements as i64;
    row.statements_total = statements as i64;
    row.rows_affected = rows.map(|r| r as i64);
    row
}

fn finished_event(step: &Step, t0: Instant, rows: u64) -> Event {
    Event::MigrationFinished {
        version: step.version.clone(),
        direction: step.direction,
        duration_ms: t0.elapsed().as_millis() as u64,
        rows_affected: rows,
    }
}

/// `user@host` of whoever runs this process.
pub fn operator() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .or_else(user_from_passwd)
        .unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}

/// The login name of this process's user, from /etc/passwd (Unix).
fn user_from_passwd() -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let uid = std::fs::metadata("/proc/self").ok()?.uid().to_string();
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.get(2) == Some(&uid.as_str())).then(|| f[0].to_string())
        })
    }
    #[cfg(not(unix))]
    {
        None
    }
}

fn short(sql: &str) -> String {
    let one_line: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 200 {
        format!("{}…", one_line.chars().take(200).collect::<String>())
    } else {
        one_line
    }
}

/// The line of the error inside the script: the statement's line, moved down
/// to PostgreSQL's error position when the server gives one.
fn error_line(e: &sqlx::Error, stmt: &Statement) -> usize {
    let pos = match e {
        sqlx::Error::Database(d) => d
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .and_then(|p| match p.position() {
                Some(sqlx::postgres::PgErrorPosition::Original(n)) => Some(n),
                _ => None,
            }),
        _ => None,
    };
    match pos {
        Some(n) => {
            stmt.line
                + stmt
                    .sql
                    .chars()
                    .take(n.saturating_sub(1))
                    .filter(|&c| c == '\n')
                    .count()
        }
        None => stmt.line,
    }
}

fn failed(
    m: &Migration,
    d: Direction,
    stmt: &Statement,
    e: &sqlx::Error,
    aftermath: Aftermath,
) -> Error {
    Error::StatementFailed {
        version: m.version.to_string(),
        path: script(m, d).path.clone(),
        line: error_line(e, stmt),
        statement: short(&stmt.sql),
        message: db_message(e),
        aftermath,
    }
}

async fn run_checks(
    conn: &mut AnyConnection,
    m: &Migration,
    phase: &'static str,
    aftermath: Aftermath,
) -> Result<(), Error> {
    let checks = if phase == "before" {
        &m.meta.checks.before
    } else {
        &m.meta.checks.after
    };
    for check in checks {
        let (ok, result) = Db::check(conn, check)
            .await
            .map_err(|e| Error::CheckFailed {
                version: m.version.to_string(),
                phase,
                check: check.clone(),
                result: format!("an error: {}", db_message(&e)),
                aftermath: aftermath.clone(),
            })?;
        if !ok {
            return Err(Error::CheckFailed {
                version: m.version.to_string(),
                phase,
                check: check.clone(),
                result,
                aftermath,
            });
        }
    }
    Ok(())
}

fn started_event(m: &Migration, step: &Step, n: usize) -> Event {
    Event::MigrationStarted {
        version: step.version.clone(),
        name: m.name.clone(),
        direction: step.direction,
        statements: n,
        resumed_from: step.resume_from,
    }
}

fn statement_event(step: &Step, i: usize, s: &Statement) -> Event {
    Event::StatementStarted {
        version: step.version.clone(),
        index: i,
        line: s.line,
        summary: short(s.sql.lines().next().unwrap_or("")),
    }
}

/// What every run of one migration begins with: its clock, its direction, its
/// statements, and the `migration_started` event.
fn start_step(
    db: &Db,
    m: &Migration,
    step: &Step,
    sink: &mut dyn EventSink,
) -> (Instant, bool, Vec<Statement>) {
    let (stmts, _) = statements(&script(m, step.direction).sql, db);
    sink.event(&started_event(m, step, stmts.len()));
    (Instant::now(), step.direction == Direction::Up, stmts)
}

/// The statements that open, commit and undo one migration's transaction: its
/// own transaction, or a savepoint inside the run's (`--single-transaction`).
struct TxSql {
    begin: &'static str,
    commit: &'static str,
    rollback: &'static str,
    nested: bool,
}

impl TxSql {
    fn new(db: &Db, nested: bool) -> TxSql {
        if nested {
            TxSql {
                begin: "SAVEPOINT instar_step",
                commit: "RELEASE SAVEPOINT instar_step",
                rollback: "ROLLBACK TO SAVEPOINT instar_step",
                nested,
            }
        } else {
            TxSql {
                begin: begin_sql(db),
                commit: "COMMIT",
                rollback: "ROLLBACK",
                nested,
            }
        }
    }

    /// BEGIN when it travels with the batch; a savepoint is taken on its own,
    /// because PostgreSQL parses a multi-statement string whole and a syntax
    /// error would swallow a SAVEPOINT sent with it.
    fn start(&self) -> Option<&'static str> {
        (!self.nested).then_some(self.begin)
    }
}

/// One migration being run: what `run_in_transaction`'s paths share.
struct Work<'a> {
    m: &'a Migration,
    step: &'a Step,
    stmts: &'a [Statement],
    t0: Instant,
}

/// Runs one migration and its history row in one transaction (a savepoint when `nested`).
pub(super) async fn run_in_transaction(
    db: &mut Db,
    m: &Migration,
    step: &Step,
    nested: bool,
    sink: &mut dyn EventSink,
) -> Result<(), Error> {
    let (t0, up, stmts) = start_step(db, m, step, sink);
    let tx = TxSql::new(db, nested);
    let history = History {
        engine: db.engine,
        table: &db.table,
    };
    let one_call = !nested && db.dialect() == instar_core::Dialect::Sqlite;
    let conn = &mut db.conn;
    if up && !m.meta.checks.before.is_empty() {
        exec_control(conn, tx.begin).await?;
        let checked = run_checks(conn, m, "before", Aftermath::RolledBack).await;
        exec_control(conn, tx.rollback).await?;
        checked?;
    }
    if let Some(first) = stmts.first() {
        sink.event(&statement_event(step, 0, first));
    }
    if nested {
        exec_control(conn, tx.begin).await?;
    }
    // One round trip for BEGIN and every statement: per-call overhead (a thread
    // hand-off on SQLite, a network round trip elsewhere) is most of a small
    // migration's cost. `\n;` ends a trailing line comment before the delimiter.
    let batch: String = tx
        .start()
        .into_iter()
        .map(str::to_string)
        .chain(stmts.iter().map(|s| s.sql.clone()))
        .collect::<Vec<_>>()
        .join("\n;\n");
    let w = Work {
        m,
        step,
        stmts: &stmts,
        t0,
    };
    if one_call && (!up || m.meta.checks.after.is_empty()) {
        return in_one_call(conn, history, &w, &batch, &tx, sink).await;
    }
    let body = async {
        let rows = match sqlx::raw_sql(&batch).execute(&mut *conn).await {
            Ok(r) => r.rows_affected(),
            Err(e) => {
                return Err(locate_failure(
                    conn,
                    m,
                    step.direction,
                    &stmts,
                    (tx.start(), tx.rollback),
                    e,
                )
                .await)
            }
        };
        if up {
            run_checks(conn, m, "after", Aftermath::RolledBack).await?;
        }
        history
            .insert(conn, &done_row(m, step, t0, stmts.len(), Some(rows)))
            .await?;
        Ok::<u64, Error>(rows)
    };
    match body.await {
        Ok(rows) => {
            exec_control(conn, tx.commit).await?;
            sink.event(&finished_event(step, t0, rows));
            Ok(())
        }
        Err(e) => {
            // The batch may have failed before BEGIN took effect; a failed ROLLBACK then is harmless.
            let _ = sqlx::raw_sql(tx.rollback).execute(&mut *conn).await;
            Err(e)
        }
    }
}

/// SQLite binds parameters across a multi-statement query: the script, its
/// history row and the COMMIT go in one call, still one transaction. Rows
/// affected are not known before the call; the duration is the call's.
async fn in_one_call(
    conn: &mut AnyConnection,
    history: History<'_>,
    w: &Work<'_>,
    batch: &str,
    tx: &TxSql,
    sink: &mut dyn EventSink,
) -> Result<(), Error> {
    let row = done_row(w.m, w.step, w.t0, w.stmts.len(), None);
    let sql = format!("{batch}\n;\n{};\n{}", history.insert_sql(false), tx.commit);
    match History::bind(sqlx::query(&sql).persistent(false), &row)
        .execute(&mut *conn)
        .await
    {
        Ok(r) => {
            sink.event(&finished_event(
                w.step,
                w.t0,
                r.rows_affected().saturating_sub(1),
            ));
            Ok(())
        }
        Err(e) => Err(locate_failure(
            conn,
            w.m,
            w.step.direction,
            w.stmts,
            (tx.start(), tx.rollback),
            e,
        )
        .await),
    }
}

/// After a batch failed: undoes it, then re-runs the statements one by one
/// (after `start`, when the batch opened the transaction) to name the one that
/// fails and its line, and undoes that too. Leaves no transaction of its own open.
async fn locate_failure(
    conn: &mut AnyConnection,
    m: &Migration,
    d: Direction,
    stmts: &[Statement],
    (start, undo): (Option<&str>, &str),
    batch_error: sqlx::Error,
) -> Error {
    // Errors here are expected (e.g. ROLLBACK when the batch never began); the
    // batch's own error is what gets reported.
    let _ = sqlx::raw_sql(undo).execute(&mut *conn).await;
    let mut found = None;
    let started = match start {
        Some(b) => sqlx::raw_sql(b).execute(&mut *conn).await.is_ok(),
        None => true,
    };
    if started {
        for s in stmts {
            if let Err(e) = sqlx::raw_sql(&s.sql).execute(&mut *conn).await {
                found = Some(failed(m, d, s, &e, Aftermath::RolledBack));
                break;
            }
        }
        let _ = sqlx::raw_sql(undo).execute(&mut *conn).await;
    }
    let fallback = Statement {
        sql: stmts.first().map(|s| s.sql.clone()).unwrap_or_default(),
        line: 1,
    };
    found.unwrap_or_else(|| failed(m, d, &fallback, &batch_error, Aftermath::RolledBack))
}

/// Runs one migration statement by statement, recording progress in its `start` row,
/// so a failure or a crash leaves a dirty mark naming the statement it stopped at.
pub(super) async fn run_stepwise(
    db: &mut Db,
    m: &Migration,
    step: &Step,
    sink: &mut dyn EventSink,
) -> Result<(), Error> {
    let (t0, up, stmts) = start_step(db, m, step, sink);
    let history = History {
        engine: db.engine,
        table: &db.table,
    };
    let conn = &mut db.conn;
    if up && step.resume_from == 0 {
        run_checks(conn, m, "before", Aftermath::RolledBack).await?;
    }
    let row_id = match step.resume_row {
        Some(id) => {
            history
                .progress(conn, id, step.resume_from, None, None)
                .await?;
            id
        }
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
    let mut rows = 0u64;
    for (i, s) in stmts.iter().enumerate().skip(step.resume_from) {
        sink.event(&statement_event(step, i, s));
        match sqlx::raw_sql(&s.sql).execute(&mut *conn).await {
            Ok(r) => rows += r.rows_affected(),
            Err(e) => {
                let err = failed(m, step.direction, s, &e, Aftermath::Dirty { applied: i });
                let at = format!("line {}: {}", s.line, short(&s.sql));
                history
                    .progress(conn, row_id, i, Some(&db_message(&e)), Some(&at))
                    .await?;
                return Err(err);
            }
        }
        history.progress(conn, row_id, i + 1, None, None).await?;
    }
    if up {
        if let Err(e) = run_checks(
            conn,
            m,
            "after",
            Aftermath::Dirty {
                applied: stmts.len(),
            },
        )
        .await
        {
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
    Ok(())
}

/// Appends a `fail` row for a failure that left the database as before.
pub(super) async fn record_failure(
    db: &mut Db,
    source: &Source,
    plan: &Plan,
    e: &Error,
) -> Result<(), Error> {
    let (version, statement, message) = match e {
        Error::StatementFailed {
            version,
            line,
            statement,
            message,
            ..
        } => (
            version,
            Some(format!("line {line}: {statement}")),
            message.clone(),
        ),
        Error::CheckFailed {
            version,
            check,
            result,
            phase,
            ..
        } => (
            version,
            Some(check.clone()),
            format!("check {phase} returned {result}"),
        ),
        _ => return Ok(()),
    };
    let Some(step) = plan.steps.iter().find(|s| &s.version == version) else {
        return Ok(());
    };
    let m = &source.migrations[step.index];
    let mut row = new_row(m, EventKind::Fail, step.direction);
    row.finished_at = Some(time::now_rfc3339());
    row.error = Some(message);
    row.failed_statement = statement;
    let history = History {
        engine: db.engine,
        table: &db.table,
    };
    history.insert(&mut db.conn, &row).await.map(|_| ())
}
