//! Running one migration: in a transaction with its history row, or statement
//! by statement with recorded progress; locating a failing statement; the
//! history rows a run writes.

use std::time::Instant;

use instar_core::event::{Event, EventSink};
use instar_core::history::{Direction, EventKind, HistoryRow};
use instar_core::plan::{Plan, Step};
use instar_core::split::Statement;

use super::batch::{Batch, Located};
use instar_core::{time, Migration, Source};

use crate::db::History;
use crate::error::{db_code, db_message, Aftermath};
use crate::{Db, Error};

use super::{script, statements};
use crate::db::control;

/// A fresh history row for `m`, stamped now.
pub(crate) fn new_row(m: &Migration, event: EventKind, direction: Direction) -> HistoryRow {
    let kind = if m.is_repeatable() {
        "repeatable"
    } else if crate::online::is_online(m) {
        "online"
    } else {
        "schema"
    };
    let mut row = blank_row(
        m.version.to_string(),
        m.name.clone(),
        event,
        direction,
        kind,
    );
    row.checksum = Some(m.checksum.clone());
    row.schema_version = m.meta.schema_version.as_ref().map(|v| v.to_string());
    row
}

/// A history row stamped now, with nothing run yet (by this process).
pub fn blank_row(
    version: String,
    name: String,
    event: EventKind,
    direction: Direction,
    kind: &str,
) -> HistoryRow {
    HistoryRow {
        id: 0,
        version,
        name,
        event,
        direction,
        kind: kind.into(),
        checksum: None,
        schema_version: None,
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
        run_id: None,
        in_flight: None,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        note: None,
    }
}

/// The `apply`/`revert` row of a finished step.
pub(super) fn done_row(
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

pub(super) fn finished_event(step: &Step, t0: Instant, rows: u64) -> Event {
    Event::MigrationFinished {
        version: step.version.clone(),
        direction: step.direction,
        duration_ms: t0.elapsed().as_millis() as u64,
        rows_affected: rows,
    }
}

/// `user@host` of whoever runs this process, looked up once per process.
pub fn operator() -> String {
    static OPERATOR: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    OPERATOR.get_or_init(look_up_operator).clone()
}

fn look_up_operator() -> String {
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

pub(crate) fn short(sql: &str) -> String {
    let one_line: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 200 {
        format!("{}…", one_line.chars().take(200).collect::<String>())
    } else {
        one_line
    }
}

/// PostgreSQL's error position (1-based, in characters of the query sent), if it gave one.
pub(super) fn pg_position(e: &sqlx::Error) -> Option<usize> {
    match e {
        sqlx::Error::Database(d) => d
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .and_then(|p| match p.position() {
                Some(sqlx::postgres::PgErrorPosition::Original(n)) => Some(n),
                _ => None,
            }),
        _ => None,
    }
}

/// The line of the error inside the script: the statement's line, moved down by
/// the newlines before `offset` (characters into the statement) when known.
fn line_in(stmt: &Statement, offset: Option<usize>) -> usize {
    stmt.line
        + offset.map_or(0, |n| {
            stmt.sql.chars().take(n).filter(|&c| c == '\n').count()
        })
}

pub(super) fn failed(
    m: &Migration,
    d: Direction,
    stmt: &Statement,
    offset: Option<usize>,
    e: &sqlx::Error,
    aftermath: Aftermath,
) -> Error {
    let code = db_code(e);
    let mut message = db_message(e);
    // 25001: active_sql_transaction — the statement refuses a transaction block.
    if code.as_deref() == Some("25001") {
        let what =
            instar_core::outside::needs_no_transaction(&stmt.sql, instar_core::Dialect::Postgres)
                .unwrap_or("this statement");
        message = format!(
            "{message}\n  {}",
            instar_core::outside::no_transaction_hint(what, m.layout)
        );
    }
    Error::StatementFailed {
        version: m.version.to_string(),
        path: script(m, d).path.clone(),
        line: line_in(stmt, offset),
        statement: short(&stmt.sql),
        message,
        code,
        aftermath,
    }
}

pub(super) async fn run_checks(
    conn: &mut crate::conn::Conn,
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

pub(super) fn statement_event(step: &Step, i: usize, s: &Statement) -> Event {
    Event::StatementStarted {
        version: step.version.clone(),
        index: i,
        line: s.line,
        summary: short(s.sql.lines().next().unwrap_or("")),
    }
}

/// What every run of one migration begins with: its clock, its direction, its
/// statements, and the `migration_started` event.
pub(super) fn start_step<'a>(
    db: &Db,
    m: &'a Migration,
    step: &Step,
    sink: &mut dyn EventSink,
) -> (Instant, bool, Vec<Statement<'a>>) {
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
                begin: db.engine.begin(),
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
    stmts: &'a [Statement<'a>],
    batch: Batch<'a>,
    t0: Instant,
}

impl Work<'_> {
    /// The error for a failed batch, located from the execution; the transaction is already undone.
    fn failure(&self, at: Located, e: &sqlx::Error) -> Error {
        match at {
            Some((i, offset)) => failed(
                self.m,
                self.step.direction,
                &self.stmts[i],
                offset,
                e,
                Aftermath::RolledBack,
            ),
            None => Error::query(
                format!(
                    "recording migration {} in the history (rolled back; the database is as it was before it)",
                    self.m.version
                ),
                clone_db_error(e),
            ),
        }
    }
}

/// A driver error is not `Clone`; its text is what the message needs.
fn clone_db_error(e: &sqlx::Error) -> sqlx::Error {
    sqlx::Error::Protocol(db_message(e))
}

/// Runs one migration and its history row in one transaction (a savepoint when `nested`).
/// With `every_statement`, a `statement_started` event goes out for every
/// statement as its call is sent (`-v`); otherwise for the first only.
pub(super) async fn run_in_transaction(
    db: &mut Db,
    m: &Migration,
    step: &Step,
    nested: bool,
    every_statement: bool,
    sink: &mut dyn EventSink,
) -> Result<(), Error> {
    let (t0, up, stmts) = start_step(db, m, step, sink);
    let tx = TxSql::new(db, nested);
    let fk_check = foreign_key_check(db, &stmts).await?;
    let one_call = !nested && db.engine.binds_across_statements() && fk_check.is_none();
    let (history, conn) = db.parts();
    if up && !m.meta.checks.before.is_empty() {
        control(conn, tx.begin).await?;
        let checked = run_checks(conn, m, "before", Aftermath::RolledBack).await;
        control(conn, tx.rollback).await?;
        checked?;
    }
    let announced = if every_statement { stmts.len() } else { 1 };
    for (i, st) in stmts.iter().enumerate().take(announced) {
        sink.event(&statement_event(step, i, st));
    }
    // The foreign-key check compares with the rows already orphaned before
    // the migration, inside its transaction: BEGIN goes first, on its own.
    let begun = nested || fk_check.is_some();
    if begun {
        control(conn, tx.begin).await?;
    }
    let fk = match fk_check {
        Some(sql) => Orphans::before(conn, sql).await,
        None => None,
    };
    // One round trip for BEGIN and every statement: per-call overhead (a thread
    // hand-off on SQLite, a network round trip elsewhere) is most of a small
    // migration's cost.
    let w = Work {
        m,
        step,
        stmts: &stmts,
        batch: Batch::new(if begun { None } else { tx.start() }, &stmts),
        t0,
    };
    if one_call && (!up || m.meta.checks.after.is_empty()) {
        return in_one_call(conn, history, &w, &tx, sink).await;
    }
    let body = async {
        let rows = match w.batch.run(conn, None).await {
            Ok(r) => r,
            Err((at, e)) => return Err(w.failure(at, &e)),
        };
        if up {
            run_checks(conn, m, "after", Aftermath::RolledBack).await?;
        }
        if let Some(fk) = &fk {
            fk.check(conn, m, step.direction).await?;
        }
        history
            .insert(conn, &done_row(m, step, t0, stmts.len(), Some(rows)))
            .await?;
        Ok::<u64, Error>(rows)
    };
    match body.await {
        Ok(rows) => {
            control(conn, tx.commit).await?;
            sink.event(&finished_event(step, t0, rows));
            Ok(())
        }
        Err(e) => {
            // The batch may have failed before BEGIN took effect; a failed ROLLBACK then is harmless.
            let _ = crate::conn::exec(&mut *conn, tx.rollback).await;
            Err(e)
        }
    }
}

/// The foreign-key check a migration needs: where the engine leaves foreign
/// keys unenforced, they are not enforced now (`init_sql` may switch them on,
/// and SQLite then enforces them itself), and the script can orphan rows.
async fn foreign_key_check(
    db: &mut Db,
    stmts: &[Statement<'_>],
) -> Result<Option<&'static str>, Error> {
    let Some((enforced, check)) = db.engine.foreign_key_check_sql() else {
        return Ok(None);
    };
    if !may_orphan_rows(stmts) {
        return Ok(None);
    }
    let on: i64 = crate::conn::query(enforced)
        .scalar(&mut db.conn)
        .await
        .map_err(|e| Error::query("reading PRAGMA foreign_keys", e))?;
    Ok((on == 0).then_some(check))
}

/// Whether a script can leave a foreign key pointing nowhere: anything but
/// `CREATE` (a new table is empty; a new index or view holds no row).
fn may_orphan_rows(stmts: &[Statement]) -> bool {
    stmts.iter().any(|s| {
        let words = crate::engine::leading_words(&s.sql, 1);
        words.first().is_none_or(|w| w != "CREATE")
    })
}

/// The rows whose foreign key pointed nowhere before a migration ran: only
/// the ones it adds fail it (a database may hold orphans already, its foreign
/// keys being off).
struct Orphans {
    sql: &'static str,
    before: std::collections::HashSet<Orphan>,
}

/// Child table, rowid (none in a `WITHOUT ROWID` table), parent table.
type Orphan = (String, Option<i64>, String);

/// More orphans than this before a migration: it cannot tell its own apart.
const ORPHANS_COMPARED: usize = 10_000;

impl Orphans {
    /// `None` when the check cannot be made (SQLite refuses it on a foreign key
    /// to a column that is not unique, or too many rows are orphaned already).
    async fn before(conn: &mut crate::conn::Conn, sql: &'static str) -> Option<Orphans> {
        let before = Orphans::read(conn, sql).await.ok()?;
        (before.len() <= ORPHANS_COMPARED).then(|| Orphans {
            sql,
            before: before.into_iter().collect(),
        })
    }

    async fn read(conn: &mut crate::conn::Conn, sql: &str) -> Result<Vec<Orphan>, sqlx::Error> {
        let rows = crate::conn::query(&format!("{sql} LIMIT {}", ORPHANS_COMPARED + 1))
            .fetch_all(conn)
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.try_get::<String>(0).unwrap_or_default(),
                    r.try_get::<i64>(1).ok(),
                    r.try_get::<String>(2).unwrap_or_default(),
                )
            })
            .collect())
    }

    /// Fails the migration (its transaction is then undone) when it left rows
    /// whose foreign key points at no row, naming the first few.
    async fn check(
        &self,
        conn: &mut crate::conn::Conn,
        m: &Migration,
        direction: Direction,
    ) -> Result<(), Error> {
        // The migration may have declared a foreign key SQLite cannot check (to
        // a column that is not unique): SQLite says "foreign key mismatch", and
        // would say it to every write with foreign keys on; nothing to compare.
        let Ok(now) = Orphans::read(conn, self.sql).await else {
            return Ok(());
        };
        let new: Vec<&Orphan> = now.iter().filter(|o| !self.before.contains(*o)).collect();
        if new.is_empty() {
            return Ok(());
        }
        let mut found: Vec<String> = new
            .iter()
            .take(5)
            .map(|(table, rowid, parent)| {
                let row = rowid.map_or("a row".to_string(), |id| format!("rowid {id}"));
                format!("{table} {row} → {parent} (no such row)")
            })
            .collect();
        if new.len() > 5 {
            found.push(format!("and {} more", new.len() - 5));
        }
        Err(Error::ForeignKeyViolation {
            version: m.version.to_string(),
            path: super::script(m, direction).path.clone(),
            violations: found.join("; "),
            aftermath: Aftermath::RolledBack,
        })
    }
}

/// SQLite binds parameters across a multi-statement query: the script, its
/// history row and the COMMIT go in one call, still one transaction. Rows
/// affected are not known before the call; the duration is the call's.
async fn in_one_call(
    conn: &mut crate::conn::Conn,
    history: History<'_>,
    w: &Work<'_>,
    tx: &TxSql,
    sink: &mut dyn EventSink,
) -> Result<(), Error> {
    let row = done_row(w.m, w.step, w.t0, w.stmts.len(), None);
    let tail = format!("{};\n{}", history.insert_sql(false), tx.commit);
    // SQLite binds across the statements of one call: that is what lets the
    // history row and COMMIT go with the (last call of the) script.
    match w.batch.run(conn, Some((&tail, &history.binds(&row)))).await {
        Ok(rows) => {
            // The history row's INSERT counts one row.
            sink.event(&finished_event(w.step, w.t0, rows.saturating_sub(1)));
            Ok(())
        }
        Err((at, e)) => {
            let _ = crate::conn::exec(&mut *conn, tx.rollback).await;
            Err(w.failure(at, &e))
        }
    }
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
        Error::ForeignKeyViolation {
            version,
            violations,
            ..
        } => (
            version,
            Some("PRAGMA foreign_key_check".to_string()),
            format!("rows whose foreign key points at no row: {violations}"),
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
    let (history, conn) = db.parts();
    history.insert(conn, &row).await.map(|_| ())
}
