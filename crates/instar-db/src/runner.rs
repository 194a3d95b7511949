//! The runner: validate → prepare (lock, re-read history, backup) → execute →
//! verify → commit, for `up` and `down`; plus `baseline` and `repair`.
//!
//! Every front door (CLI, library, HTTP) calls these functions; none has an
//! orchestration loop of its own.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use instar_core::checksum::statement_hash;
use instar_core::event::{Event, EventSink};
use instar_core::history::{derive, Direction, EventKind, HistoryRow, State};
use instar_core::plan::{self, Plan, PlanOptions, Status, Step, Target};
use instar_core::split::{split, Split, Statement};
use instar_core::{time, Migration, Source};
use serde::Serialize;
use sqlx::AnyConnection;

use crate::backup::{self, BackupInfo};
use crate::db::History;
use crate::error::{db_message, Aftermath};
use crate::{Db, Error};

/// How a run behaves.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// How long to wait for another run's lock (zero: try once).
    pub lock_timeout: Duration,
    /// Apply the whole run as one transaction (SQLite and PostgreSQL only).
    pub single_transaction: bool,
    /// Apply pending migrations older than the newest applied one.
    pub allow_out_of_order: bool,
    /// Do not refuse when applied migrations have no file.
    pub ignore_missing: bool,
    /// Where automatic backups go; `None` turns them off.
    pub backup_dir: Option<PathBuf>,
    /// Restore the automatic backup when a run fails outside a transaction.
    pub restore_on_failure: bool,
    /// Stop data migrations at a checkpoint once this much time is spent (the next run resumes).
    pub max_duration: Option<Duration>,
    /// Data migrations: walk the key range in this many slices at once (PostgreSQL, MySQL).
    pub parallel: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            lock_timeout: Duration::from_secs(60),
            single_transaction: false,
            allow_out_of_order: false,
            ignore_missing: false,
            backup_dir: None,
            restore_on_failure: true,
            max_duration: None,
            parallel: 1,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Versions applied or reverted, in order.
    pub migrations: Vec<String>,
    /// The automatic backup taken before the run, if any.
    pub backup: Option<BackupInfo>,
    /// Milliseconds the run took.
    pub duration_ms: u64,
    /// The data migration that stopped at a checkpoint when the time budget ran out.
    pub paused: Option<String>,
}

/// One step of a plan with the exact SQL it would run.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    /// Version text.
    pub version: String,
    /// Name.
    pub name: String,
    /// Which script.
    pub direction: Direction,
    /// The script's path.
    pub path: PathBuf,
    /// Whether it runs in a transaction.
    pub transaction: bool,
    /// Statements skipped because a previous run applied them.
    pub resume_from: usize,
    /// The statements, with their lines.
    pub statements: Vec<Statement>,
    /// Why the script is sent whole instead of statement by statement, if it is.
    pub sent_whole: Option<String>,
    /// For a data migration: what its first batch did (rolled back) and the whole run's estimate.
    pub estimate: Option<crate::data::Estimate>,
}

/// Reads history and computes the status of every migration (read-only, no lock).
pub async fn status(db: &mut Db, source: &Source) -> Result<(Status, State), Error> {
    let state = derive(&db.read_history().await?);
    Ok((
        plan::status(&source.migrations, &state, db.dialect()),
        state,
    ))
}

fn plan_options(db: &Db, target: Target, opts: &RunOptions) -> PlanOptions {
    PlanOptions {
        target,
        dialect: db.dialect(),
        allow_out_of_order: opts.allow_out_of_order,
        ignore_missing: opts.ignore_missing,
    }
}

/// Plans `target` and returns each step with its exact SQL. Reads only and
/// takes no lock; a data migration's first batch is run inside a transaction
/// that is rolled back, to estimate the whole run.
pub async fn preview(
    db: &mut Db,
    source: &Source,
    target: Target,
    opts: &RunOptions,
) -> Result<Vec<PlannedStep>, Error> {
    let state = derive(&db.read_history().await?);
    let p = plan::plan(&source.migrations, &state, &plan_options(db, target, opts))?;
    let mut out = Vec::with_capacity(p.steps.len());
    for s in &p.steps {
        let mut d = detail(db, source, s);
        let m = &source.migrations[s.index];
        if m.meta.kind == Some(instar_core::meta::Kind::Data) && s.resume_row.is_none() {
            d.estimate = Some(crate::data::estimate(db, m, s).await?);
        }
        out.push(d);
    }
    Ok(out)
}

/// Re-runs the `checks.after` of every applied migration; returns each check and its result.
pub async fn verify(db: &mut Db, source: &Source) -> Result<Vec<Verified>, Error> {
    let state = derive(&db.read_history().await?);
    let mut out = Vec::new();
    for m in &source.migrations {
        if !state.applied.contains_key(m.version.as_str()) {
            continue;
        }
        for check in &m.meta.checks.after {
            let (ok, result) = match Db::check(&mut db.conn, check).await {
                Ok(r) => r,
                Err(e) => (false, format!("an error: {}", db_message(&e))),
            };
            out.push(Verified {
                version: m.version.to_string(),
                check: check.clone(),
                ok,
                result,
            });
        }
    }
    Ok(out)
}

/// One re-run post-check.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    /// The migration.
    pub version: String,
    /// The query.
    pub check: String,
    /// Whether it returned true.
    pub ok: bool,
    /// What it returned.
    pub result: String,
}

fn detail(db: &Db, source: &Source, s: &Step) -> PlannedStep {
    let m = &source.migrations[s.index];
    let script = script(m, s.direction);
    let (statements, sent_whole) = statements(&script.sql, db);
    PlannedStep {
        version: s.version.clone(),
        name: m.name.clone(),
        direction: s.direction,
        path: script.path.clone(),
        transaction: transactional(db, m),
        resume_from: s.resume_from,
        statements,
        sent_whole,
        estimate: None,
    }
}

fn script(m: &Migration, d: Direction) -> &instar_core::Script {
    match d {
        Direction::Up => &m.up,
        // The planner only plans a down step for a migration with a down script.
        Direction::Down => m.down.as_ref().unwrap_or(&m.up),
    }
}

fn statements(sql: &str, db: &Db) -> (Vec<Statement>, Option<String>) {
    match split(sql, db.dialect()) {
        Split::Statements(s) => (s, None),
        Split::Whole { reason } => (
            vec![Statement {
                sql: sql.to_string(),
                line: 1,
            }],
            Some(reason),
        ),
    }
}

fn transactional(db: &Db, m: &Migration) -> bool {
    m.transaction && db.engine.transactional_ddl()
}

/// Applies or reverts migrations as `target` says.
///
/// Nothing pending costs one history query and no lock. Otherwise the lock is
/// taken, history re-read under it, a backup taken where the engine needs one,
/// and each migration run in its own transaction with its history row (or,
/// where it cannot be, statement by statement with recorded progress).
pub async fn run(
    db: &mut Db,
    source: &Source,
    target: Target,
    opts: &RunOptions,
    sink: &mut dyn EventSink,
) -> Result<Report, Error> {
    let started = Instant::now();
    let state = derive(&db.read_history().await?);
    let popts = plan_options(db, target, opts);
    if plan::plan(&source.migrations, &state, &popts)?
        .steps
        .is_empty()
    {
        return Ok(Report::default());
    }
    if opts.single_transaction && !db.engine.transactional_ddl() {
        return Err(Error::Unsupported(format!(
            "--single-transaction needs transactional DDL; {} commits DDL implicitly",
            db.dialect()
        )));
    }
    let lock_name = db
        .url
        .sqlite_path
        .as_ref()
        .map_or_else(|| db.dialect().to_string(), |p| p.display().to_string());
    let waited = db
        .lock(opts.lock_timeout, || {
            sink.event(&Event::LockWaiting {
                lock: lock_name.clone(),
            })
        })
        .await?;
    sink.event(&Event::LockAcquired {
        waited_ms: waited.as_millis() as u64,
    });
    let result = run_locked(db, source, &popts, opts, sink).await;
    let unlocked = db.unlock().await;
    let mut report = result?;
    unlocked?;
    report.duration_ms = started.elapsed().as_millis() as u64;
    sink.event(&Event::RunFinished {
        migrations: report.migrations.len(),
        duration_ms: report.duration_ms,
    });
    Ok(report)
}

async fn run_locked(
    db: &mut Db,
    source: &Source,
    popts: &PlanOptions,
    opts: &RunOptions,
    sink: &mut dyn EventSink,
) -> Result<Report, Error> {
    db.ensure_history().await?;
    // Another run may have applied migrations while this one waited for the lock.
    let state = derive(&db.read_history().await?);
    let plan = plan::plan(&source.migrations, &state, popts)?;
    let mut report = Report::default();
    if plan.steps.is_empty() {
        return Ok(report);
    }
    if opts.single_transaction {
        if let Some(s) = plan
            .steps
            .iter()
            .find(|s| source.migrations[s.index].meta.kind == Some(instar_core::meta::Kind::Data))
        {
            return Err(Error::Unsupported(format!(
                "migration {} is a data migration, which commits batch by batch; it cannot run with --single-transaction",
                s.version
            )));
        }
        if let Some(s) = plan
            .steps
            .iter()
            .find(|s| !source.migrations[s.index].transaction)
        {
            return Err(Error::Unsupported(format!(
                "migration {} opts out of transactions; it cannot run with --single-transaction",
                s.version
            )));
        }
    }
    if let Some(dir) = &opts.backup_dir {
        // Data migrations commit batch by batch with their checkpoint and resume from
        // it, so they alone never call for a (possibly huge) dump on MySQL.
        let risky = plan.steps.iter().any(|s| {
            let m = &source.migrations[s.index];
            !transactional(db, m) && m.meta.kind != Some(instar_core::meta::Kind::Data)
        });
        if backup::wanted(db, risky) {
            report.backup = backup::take(db, dir, "automatic, before a run").await?;
            if let Some(b) = &report.backup {
                sink.event(&Event::BackupTaken {
                    id: b.id.clone(),
                    path: b.path.display().to_string(),
                });
            }
        }
    }
    let outcome = if opts.single_transaction {
        run_single(db, source, &plan, sink, &mut report).await
    } else {
        run_each(db, source, &plan, opts, sink, &mut report).await
    };
    match outcome {
        Ok(()) => Ok(report),
        Err(mut e) => {
            if let (Some(b), Some(dir), true) =
                (&report.backup, &opts.backup_dir, opts.restore_on_failure)
            {
                if is_dirty(&e) {
                    backup::restore(db, dir, &b.id).await?;
                    sink.event(&Event::BackupRestored { id: b.id.clone() });
                    set_aftermath(
                        &mut e,
                        Aftermath::Restored {
                            backup: b.id.clone(),
                        },
                    );
                    // The restore brought back the history as it was; record what happened.
                    record_failure(db, source, &plan, &e).await?;
                }
            }
            Err(e)
        }
    }
}

fn is_dirty(e: &Error) -> bool {
    matches!(
        e,
        Error::StatementFailed {
            aftermath: Aftermath::Dirty { .. },
            ..
        } | Error::CheckFailed {
            aftermath: Aftermath::Dirty { .. },
            ..
        }
    )
}

fn set_aftermath(e: &mut Error, a: Aftermath) {
    if let Error::StatementFailed { aftermath, .. } | Error::CheckFailed { aftermath, .. } = e {
        *aftermath = a;
    }
}

async fn run_each(
    db: &mut Db,
    source: &Source,
    plan: &Plan,
    opts: &RunOptions,
    sink: &mut dyn EventSink,
    report: &mut Report,
) -> Result<(), Error> {
    for step in &plan.steps {
        let m = &source.migrations[step.index];
        if m.meta.kind == Some(instar_core::meta::Kind::Data) {
            match crate::data::run(db, m, step, opts.max_duration, opts.parallel, sink).await {
                Ok(crate::data::Outcome::Done) => {
                    report.migrations.push(step.version.clone());
                    continue;
                }
                Ok(crate::data::Outcome::Paused) => {
                    report.paused = Some(step.version.clone());
                    return Ok(());
                }
                Err(e) => {
                    sink.event(&Event::MigrationFailed {
                        version: step.version.clone(),
                        error: e.to_string(),
                    });
                    return Err(e);
                }
            }
        }
        let r = if transactional(db, m) {
            run_in_transaction(db, m, step, false, sink).await
        } else {
            run_stepwise(db, m, step, sink).await
        };
        if let Err(e) = r {
            sink.event(&Event::MigrationFailed {
                version: step.version.clone(),
                error: e.to_string(),
            });
            if matches!(
                &e,
                Error::StatementFailed {
                    aftermath: Aftermath::RolledBack,
                    ..
                } | Error::CheckFailed {
                    aftermath: Aftermath::RolledBack,
                    ..
                }
            ) {
                record_failure(db, source, plan, &e).await?;
            }
            return Err(e);
        }
        report.migrations.push(step.version.clone());
    }
    Ok(())
}

async fn run_single(
    db: &mut Db,
    source: &Source,
    plan: &Plan,
    sink: &mut dyn EventSink,
    report: &mut Report,
) -> Result<(), Error> {
    let begin = begin_sql(db);
    exec_control(&mut db.conn, begin).await?;
    for step in &plan.steps {
        let m = &source.migrations[step.index];
        if let Err(e) = run_in_transaction(db, m, step, true, sink).await {
            exec_control(&mut db.conn, "ROLLBACK").await?;
            sink.event(&Event::MigrationFailed {
                version: step.version.clone(),
                error: e.to_string(),
            });
            record_failure(db, source, plan, &e).await?;
            return Err(e);
        }
        report.migrations.push(step.version.clone());
    }
    exec_control(&mut db.conn, "COMMIT").await
}

fn begin_sql(db: &Db) -> &'static str {
    // IMMEDIATE takes SQLite's write lock up front instead of failing to upgrade later.
    if db.dialect() == instar_core::Dialect::Sqlite {
        "BEGIN IMMEDIATE"
    } else {
        "BEGIN"
    }
}

async fn exec_control(conn: &mut AnyConnection, sql: &str) -> Result<(), Error> {
    sqlx::raw_sql(sql)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(|e| Error::query(format!("running {sql}"), e))
}

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

/// Runs one migration and its history row in one transaction (a savepoint when `nested`).
async fn run_in_transaction(
    db: &mut Db,
    m: &Migration,
    step: &Step,
    nested: bool,
    sink: &mut dyn EventSink,
) -> Result<(), Error> {
    let t0 = Instant::now();
    let up = step.direction == Direction::Up;
    let (stmts, _) = statements(&script(m, step.direction).sql, db);
    sink.event(&started_event(m, step, stmts.len()));
    let (begin, commit, rollback) = if nested {
        (
            "SAVEPOINT instar_step",
            "RELEASE SAVEPOINT instar_step",
            "ROLLBACK TO SAVEPOINT instar_step",
        )
    } else {
        (begin_sql(db), "COMMIT", "ROLLBACK")
    };
    let history = History {
        engine: db.engine,
        table: &db.table,
    };
    let one_trip = !nested && db.dialect() == instar_core::Dialect::Sqlite;
    let conn = &mut db.conn;
    if up && !m.meta.checks.before.is_empty() {
        exec_control(conn, begin).await?;
        let checked = run_checks(conn, m, "before", Aftermath::RolledBack).await;
        exec_control(conn, rollback).await?;
        checked?;
    }
    if let Some(first) = stmts.first() {
        sink.event(&statement_event(step, 0, first));
    }
    // One round trip for BEGIN and every statement: per-call overhead (a thread
    // hand-off on SQLite, a network round trip elsewhere) is most of a small
    // migration's cost. `\n;` ends a trailing line comment before the delimiter.
    // A savepoint is taken on its own: PostgreSQL parses a multi-statement string
    // whole, so a syntax error would also swallow a SAVEPOINT sent with it.
    if nested {
        exec_control(conn, begin).await?;
    }
    let start = (!nested).then_some(begin);
    let batch: String = start
        .into_iter()
        .map(str::to_string)
        .chain(stmts.iter().map(|s| s.sql.clone()))
        .collect::<Vec<_>>()
        .join("\n;\n");
    if one_trip && (!up || m.meta.checks.after.is_empty()) {
        // SQLite binds parameters across a multi-statement query: the script, its
        // history row and the COMMIT go in one call, still one transaction.
        // Rows affected are not known before the call; the duration is the call's.
        let row = done_row(m, step, t0, stmts.len(), None);
        let sql = format!("{batch}\n;\n{};\n{commit}", history.insert_sql(false));
        return match History::bind(sqlx::query(&sql).persistent(false), &row)
            .execute(&mut *conn)
            .await
        {
            Ok(r) => {
                sink.event(&finished_event(
                    step,
                    t0,
                    r.rows_affected().saturating_sub(1),
                ));
                Ok(())
            }
            Err(e) => {
                Err(locate_failure(conn, m, step.direction, &stmts, (start, rollback), e).await)
            }
        };
    }
    let body = async {
        let rows = match sqlx::raw_sql(&batch).execute(&mut *conn).await {
            Ok(r) => r.rows_affected(),
            Err(e) => {
                return Err(
                    locate_failure(conn, m, step.direction, &stmts, (start, rollback), e).await,
                )
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
            exec_control(conn, commit).await?;
            sink.event(&finished_event(step, t0, rows));
            Ok(())
        }
        Err(e) => {
            // The batch may have failed before BEGIN took effect; a failed ROLLBACK then is harmless.
            let _ = sqlx::raw_sql(rollback).execute(&mut *conn).await;
            Err(e)
        }
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
async fn run_stepwise(
    db: &mut Db,
    m: &Migration,
    step: &Step,
    sink: &mut dyn EventSink,
) -> Result<(), Error> {
    let t0 = Instant::now();
    let up = step.direction == Direction::Up;
    let (stmts, _) = statements(&script(m, step.direction).sql, db);
    sink.event(&started_event(m, step, stmts.len()));
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
async fn record_failure(db: &mut Db, source: &Source, plan: &Plan, e: &Error) -> Result<(), Error> {
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

/// What `repair` should do.
#[derive(Debug, Clone, Default)]
pub struct RepairOptions {
    /// Record the current checksum of every edited applied migration.
    pub accept_checksums: bool,
    /// Mark this dirty (or pending) migration as applied instead of clearing it.
    pub mark_applied: Option<String>,
    /// Why; stored in the history.
    pub reason: Option<String>,
}

/// Clears dirty marks (the migrations become pending again), marks one applied,
/// or accepts edited checksums; each action is a history row. Returns what it did.
pub async fn repair(
    db: &mut Db,
    source: &Source,
    opts: &RepairOptions,
    lock_timeout: Duration,
) -> Result<Vec<String>, Error> {
    db.lock(lock_timeout, || {}).await?;
    let r = repair_locked(db, source, opts).await;
    db.unlock().await?;
    r
}

async fn repair_locked(
    db: &mut Db,
    source: &Source,
    opts: &RepairOptions,
) -> Result<Vec<String>, Error> {
    db.ensure_history().await?;
    let state = derive(&db.read_history().await?);
    let mut done = Vec::new();
    let mut rows = Vec::new();
    if let Some(v) = &opts.mark_applied {
        let m = source
            .find(v)
            .ok_or_else(|| instar_core::Error::UnknownVersion(v.clone()))?;
        let mut row = new_row(m, EventKind::Apply, Direction::Up);
        row.finished_at = Some(row.started_at.clone());
        row.note = Some(format!(
            "marked applied by repair: {}",
            opts.reason.as_deref().unwrap_or("no reason given")
        ));
        rows.push(row);
        done.push(format!("marked {} applied", m.version));
    }
    for d in state.dirty.values() {
        if Some(&d.version) == opts.mark_applied.as_ref() {
            continue;
        }
        let m = source.find(&d.version);
        let mut row = match m {
            Some(m) => new_row(m, EventKind::Repair, d.direction),
            None => {
                let mut r = new_row(
                    source
                        .migrations
                        .first()
                        .ok_or_else(|| instar_core::Error::UnknownVersion(d.version.clone()))?,
                    EventKind::Repair,
                    d.direction,
                );
                r.version = d.version.clone();
                r.name = d.name.clone();
                r.checksum = d.checksum.clone();
                r
            }
        };
        row.note = Some(format!(
            "dirty mark cleared: {}",
            opts.reason.as_deref().unwrap_or("no reason given")
        ));
        rows.push(row);
        done.push(format!(
            "cleared the dirty mark of {} ({} of {} statements had run); it is pending again",
            d.version, d.statements_applied, d.statements_total
        ));
    }
    if opts.accept_checksums {
        for m in &source.migrations {
            if let Some(a) = state.applied.get(m.version.as_str()) {
                if a.checksum.as_deref() != Some(m.checksum.as_str()) && !m.is_repeatable() {
                    let mut row = new_row(m, EventKind::Realign, Direction::Up);
                    row.note = Some(format!(
                        "checksum {} accepted (was {}): {}",
                        m.checksum,
                        a.checksum.as_deref().unwrap_or("none"),
                        opts.reason.as_deref().unwrap_or("no reason given")
                    ));
                    rows.push(row);
                    done.push(format!("accepted the new checksum of {}", m.version));
                }
            }
        }
    }
    let history = History {
        engine: db.engine,
        table: &db.table,
    };
    for row in &rows {
        history.insert(&mut db.conn, row).await?;
    }
    Ok(done)
}

/// Records that everything up to and including `version` is already in the
/// database (adopting an existing database). Refused when anything is applied.
pub async fn baseline(
    db: &mut Db,
    source: &Source,
    version: &str,
    note: Option<String>,
    lock_timeout: Duration,
) -> Result<(), Error> {
    let m = source
        .find(version)
        .ok_or_else(|| instar_core::Error::UnknownVersion(version.into()))?
        .clone();
    db.lock(lock_timeout, || {}).await?;
    let r = async {
        db.ensure_history().await?;
        let state = derive(&db.read_history().await?);
        if !state.applied.is_empty() || state.baseline.is_some() {
            return Err(Error::Unsupported("baseline is only for a database with no applied migrations; this one has history already".into()));
        }
        let mut row = new_row(&m, EventKind::Baseline, Direction::Up);
        row.finished_at = Some(row.started_at.clone());
        row.note = note;
        let history = History {
            engine: db.engine,
            table: &db.table,
        };
        history.insert(&mut db.conn, &row).await.map(|_| ())
    }
    .await;
    db.unlock().await?;
    r
}

/// The default folder for backups of a project rooted at `project`.
pub fn default_backup_dir(project: &Path) -> PathBuf {
    project.join(".instar").join("backups")
}
