//! The runner: validate → prepare (lock, re-read history, backup) → execute →
//! verify → commit, for `up` and `down`; plus `baseline` and `repair`.
//!
//! Every front door (CLI, library, HTTP) calls these functions; none has an
//! orchestration loop of its own.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use instar_core::event::{Event, EventSink, PlanItem};
use instar_core::history::{derive, Direction, State};
use instar_core::plan::{self, Plan, PlanOptions, Status, Step, Target};
use instar_core::split::{split, Split, Statement};
use instar_core::{Migration, Source};
use serde::Serialize;

use crate::backup::{self, BackupInfo};
use crate::db::control;
use crate::ddl_lock::ShortLocks;
use crate::engine::is_transaction_control;
use crate::error::{db_message, Aftermath};
use crate::{CancelToken, Db, Error};

mod admin;
mod batch;
mod join;
pub(crate) mod step;
mod stepwise;

pub use admin::{baseline, repair, RepairOptions};
pub use join::{join, Joined};
pub use step::{blank_row, operator};
pub(crate) use step::{new_row, short as short_statement};
use step::{record_failure, run_in_transaction};
use stepwise::run_stepwise;

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
    ///
    /// # Warning
    /// A restore puts the whole database back as it was before the run, so it
    /// also discards whatever other clients wrote during the run. Off by
    /// default; safe only while no application writes to the database.
    pub restore_on_failure: bool,
    /// Stop data migrations at a checkpoint once this much time is spent (the next run resumes).
    pub max_duration: Option<Duration>,
    /// Data migrations: walk the key range in this many slices at once (PostgreSQL, MySQL).
    pub parallel: usize,
    /// Data migrations: split a new run's key range into this many slices
    /// (at least `parallel`), so that workers in other processes can claim
    /// the slices this one is not walking.
    pub slices: Option<usize>,
    /// Join the data migration another process's run is walking
    /// (`instar up --worker`): claim and walk slices, record nothing else.
    pub worker: bool,
    /// Stops the run at its next safe point when cancelled.
    pub cancel: CancelToken,
    /// Run even though another tool's history table has rows and Instar's has none.
    pub ignore_other_history: bool,
    /// Report every statement as it is sent (`-v`), not only the first of a
    /// migration run in one call.
    pub every_statement: bool,
    /// The collections documents migrations move, by name.
    pub collections: std::collections::BTreeMap<String, crate::data::DocCollection>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            lock_timeout: Duration::from_secs(60),
            single_transaction: false,
            allow_out_of_order: false,
            ignore_missing: false,
            backup_dir: None,
            restore_on_failure: false,
            max_duration: None,
            parallel: 1,
            slices: None,
            worker: false,
            cancel: CancelToken::default(),
            ignore_other_history: false,
            every_statement: false,
            collections: Default::default(),
        }
    }
}

/// Refuses to plan migrations on a database another tool has migrated while
/// Instar's history records nothing (they would run again).
async fn refuse_unadopted(
    db: &mut Db,
    source: &Source,
    state: &State,
    opts: &RunOptions,
) -> Result<(), Error> {
    let fresh = state.applied.is_empty() && state.baseline.is_none() && state.dirty.is_empty();
    if !fresh || opts.ignore_other_history {
        return Ok(());
    }
    let found = crate::adopt::unadopted(db, source).await?;
    if found.is_empty() {
        return Ok(());
    }
    Err(Error::NotAdopted {
        found: found
            .iter()
            .map(|r| r.summary())
            .collect::<Vec<_>>()
            .join("\n  "),
    })
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
    /// The data migration that stopped at a checkpoint (time budget spent, or cancelled).
    pub paused: Option<String>,
    /// Whether the run stopped early because it was cancelled.
    pub cancelled: bool,
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
    pub statements: Vec<Statement<'static>>,
    /// Why the script is sent whole instead of statement by statement, if it is.
    pub sent_whole: Option<String>,
    /// For a data migration: what its first batch did (rolled back) and the whole run's estimate.
    pub estimate: Option<crate::data::Estimate>,
    /// What will go wrong as the file is written (a statement the engine
    /// refuses inside a transaction, in a migration that runs in one).
    pub warnings: Vec<String>,
    /// For an online migration: what each op will do (`op 1, line 4: …`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
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
    if !p.steps.is_empty() {
        refuse_unadopted(db, source, &state, opts).await?;
        refuse_in_flight(db).await?;
    }
    check_scripts(db, source, &p)?;
    let mut out = Vec::with_capacity(p.steps.len());
    for (i, s) in p.steps.iter().enumerate() {
        let m = &source.migrations[s.index];
        let compiled;
        let mut d = if crate::online::is_online(m) {
            let resuming = s.resume_row.is_some();
            let mut events: Vec<Event> = Vec::new();
            match crate::online::prepared(
                db,
                m,
                s.direction,
                resuming,
                false,
                &opts.collections,
                &mut events,
            )
            .await
            {
                Ok(c) => {
                    compiled = c;
                    let mut d = detail(db, &compiled, s);
                    d.notes = events
                        .iter()
                        .filter_map(|e| match e {
                            Event::OpCompiled {
                                op, line, summary, ..
                            } => Some(format!("op {op} (line {line}): {summary}")),
                            _ => None,
                        })
                        .collect();
                    d
                }
                // A table an earlier step of this plan creates: compiled when its turn comes.
                Err(e) if i > 0 => {
                    let mut d = detail(db, m, s);
                    d.statements.clear();
                    d.warnings.push(format!("not compiled yet: {e} (an earlier step of this plan may create what its ops change; `up` compiles it when its turn comes)"));
                    d
                }
                Err(e) => return Err(e),
            }
        } else {
            detail(db, m, s)
        };
        if batched(m) && s.resume_row.is_none() {
            match crate::data::estimate(db, m, s, opts).await {
                Ok(e) => d.estimate = Some(e),
                // The table may be made or changed by a step before it in this
                // plan, which a preview does not run: said, not refused.
                Err(e) if i > 0 => d.warnings.push(format!(
                    "not estimated: {e} (an earlier step of this plan may create or change what it reads; `up` checks it again when its turn comes)"
                )),
                Err(e) => return Err(e),
            }
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
        if state.applied_of(m.version.as_str()).is_none() {
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

fn detail(db: &Db, m: &Migration, s: &Step) -> PlannedStep {
    let script = script(m, s.direction);
    let (statements, sent_whole) = statements(&script.sql, db);
    let transaction = transactional(db, m, s.direction);
    let warnings = statements
        .iter()
        .filter(|_| transaction)
        .filter_map(|st| {
            let what = instar_core::outside::needs_no_transaction(&st.sql, db.dialect())?;
            Some(format!(
                "{}:{}: {}",
                script.path.display(),
                st.line,
                instar_core::outside::no_transaction_hint(what, m.layout)
            ))
        })
        .collect();
    let statements = statements.into_iter().map(Statement::into_owned).collect();
    PlannedStep {
        warnings,
        version: s.version.clone(),
        name: m.name.clone(),
        direction: s.direction,
        path: script.path.clone(),
        transaction,
        resume_from: s.resume_from,
        statements,
        sent_whole,
        estimate: None,
        notes: Vec::new(),
    }
}

fn script(m: &Migration, d: Direction) -> &instar_core::Script {
    match d {
        Direction::Up => &m.up,
        // The planner only plans a down step for a migration with a down script.
        Direction::Down => m.down.as_ref().unwrap_or(&m.up),
    }
}

fn statements<'a>(sql: &'a str, db: &Db) -> (Vec<Statement<'a>>, Option<String>) {
    match split(sql, db.dialect()) {
        Split::Statements(s) => (s, None),
        // Refused before anything runs (see `check_scripts`); sent whole here only
        // for a plan printed after that check.
        Split::Unterminated { what, line } => (
            vec![Statement {
                sql: sql.into(),
                line: 1,
            }],
            Some(format!("unterminated {what} starting on line {line}")),
        ),
        Split::Whole { reason } => (
            vec![Statement {
                sql: sql.into(),
                line: 1,
            }],
            Some(reason),
        ),
    }
}

/// Refuses a plan with a script whose string, comment or quote is never closed:
/// sent as it is, it would swallow what follows (the history row, the COMMIT).
fn check_scripts(db: &Db, source: &Source, plan: &Plan) -> Result<(), Error> {
    for s in &plan.steps {
        let m = &source.migrations[s.index];
        // An online migration's statements are Instar's, compiled when it runs.
        if crate::online::is_online(m) {
            continue;
        }
        let sc = script(m, s.direction);
        // A data migration is one statement run per batch: refused before the
        // backup and the first batch, not after.
        if m.meta.data.is_some() {
            instar_core::source::check_data_statement(sc, db.dialect())?;
        }
        match split(&sc.sql, db.dialect()) {
            Split::Unterminated { what, line } => {
                return Err(instar_core::Error::Unterminated {
                    path: sc.path.clone(),
                    line,
                    what,
                }
                .into())
            }
            // Its own COMMIT would end Instar's transaction half way: what ran before
            // it would stay even when a later statement fails.
            Split::Statements(stmts) if transactional(db, m, s.direction) => {
                if let Some(st) = stmts.iter().find(|st| is_transaction_control(&st.sql)) {
                    return Err(Error::Unsupported(format!(
                        "{}:{}: `{}` controls the transaction itself, but migration {} runs in one transaction of Instar's; remove it, or add `-- instar:no-transaction` at the top to run the file statement by statement",
                        sc.path.display(),
                        st.line,
                        st.sql.split_whitespace().next().unwrap_or(""),
                        m.version
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether migration `m` runs in a transaction in direction `d`: a down
/// script may opt out by itself (`-- instar:no-transaction` on its first line).
fn transactional(db: &Db, m: &Migration, d: Direction) -> bool {
    // CockroachDB and YugabyteDB speak PostgreSQL but commit DDL by itself:
    // statement by statement there, each recorded as it takes effect.
    wants_transaction(m, d)
        && db.engine.transactional_ddl()
        && db.profile.traits().transactional_ddl
}

/// Whether migration `m` asks for a transaction in direction `d`.
fn wants_transaction(m: &Migration, d: Direction) -> bool {
    match d {
        Direction::Up => m.transaction,
        Direction::Down => {
            m.down_transaction.unwrap_or(m.transaction)
                && !m
                    .down
                    .as_ref()
                    .is_some_and(|s| instar_core::meta::header_no_transaction(&s.sql))
        }
    }
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
    let mut report = Report::default();
    run_into(db, source, target, opts, sink, &mut report).await?;
    Ok(report)
}

/// [`run`], filling `report` as it goes: after a failure it still says what
/// was applied before it, and which backup was taken.
pub async fn run_into(
    db: &mut Db,
    source: &Source,
    target: Target,
    opts: &RunOptions,
    sink: &mut dyn EventSink,
    report: &mut Report,
) -> Result<(), Error> {
    let started = Instant::now();
    let state = derive(&db.read_history().await?);
    let popts = plan_options(db, target, opts);
    let first = plan::plan(&source.migrations, &state, &popts)?;
    if first.steps.is_empty() {
        return Ok(());
    }
    refuse_unadopted(db, source, &state, opts).await?;
    check_scripts(db, source, &first)?;
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
    let result = run_locked(db, source, &popts, opts, sink, report).await;
    let unlocked = db.unlock().await;
    result?;
    unlocked?;
    report.duration_ms = started.elapsed().as_millis() as u64;
    sink.event(&Event::RunFinished {
        migrations: report.migrations.len(),
        duration_ms: report.duration_ms,
        cancelled: report.cancelled,
    });
    Ok(())
}

/// Refuses to plan or run migrations while an online migration is served at
/// two versions: its tables are half way between them.
async fn refuse_in_flight(db: &mut Db) -> Result<(), Error> {
    match db.in_flight().await? {
        Some(f) => Err(Error::Unsupported(format!(
            "online migration {} is being served at two versions ({}); finish it with `instar complete`, or remove the new version with `instar rollback`, before running migrations",
            f.version, f.phase
        ))),
        None => Ok(()),
    }
}

/// Whether a migration walks a table in checkpointed batches (data, documents).
fn batched(m: &Migration) -> bool {
    use instar_core::meta::Kind;
    matches!(m.meta.kind, Some(Kind::Data | Kind::Documents))
}

/// Refuses a `--single-transaction` plan holding a step that cannot run inside one.
fn check_single(source: &Source, plan: &Plan) -> Result<(), Error> {
    for s in &plan.steps {
        let m = &source.migrations[s.index];
        if batched(m) {
            return Err(Error::Unsupported(format!(
                "migration {} is a data or documents migration, which commits batch by batch; it cannot run with --single-transaction",
                s.version
            )));
        }
        if !wants_transaction(m, s.direction) {
            return Err(Error::Unsupported(format!(
                "migration {} opts out of transactions; it cannot run with --single-transaction",
                s.version
            )));
        }
    }
    Ok(())
}

fn plan_items(source: &Source, plan: &Plan) -> Vec<PlanItem> {
    plan.steps
        .iter()
        .map(|s| {
            let m = &source.migrations[s.index];
            PlanItem {
                version: s.version.clone(),
                name: m.name.clone(),
                direction: s.direction,
                kind: if m.meta.kind == Some(instar_core::meta::Kind::Data) {
                    "data".into()
                } else if m.meta.kind == Some(instar_core::meta::Kind::Documents) {
                    "documents".into()
                } else if m.meta.kind == Some(instar_core::meta::Kind::Online) {
                    "online".into()
                } else if m.is_repeatable() {
                    "repeatable".into()
                } else {
                    "schema".into()
                },
            }
        })
        .collect()
}

async fn run_locked(
    db: &mut Db,
    source: &Source,
    popts: &PlanOptions,
    opts: &RunOptions,
    sink: &mut dyn EventSink,
    report: &mut Report,
) -> Result<(), Error> {
    db.ensure_history().await?;
    refuse_in_flight(db).await?;
    // Another run may have applied migrations while this one waited for the lock.
    let state = derive(&db.read_history().await?);
    let plan = plan::plan(&source.migrations, &state, popts)?;
    if plan.steps.is_empty() {
        return Ok(());
    }
    check_scripts(db, source, &plan)?;
    if opts.single_transaction {
        check_single(source, &plan)?;
    }
    sink.event(&Event::RunStarted {
        plan: plan_items(source, &plan),
    });
    if let Some(dir) = &opts.backup_dir {
        // Data migrations commit batch by batch with their checkpoint and resume from
        // it, so they alone never call for a (possibly huge) dump on MySQL.
        let risky = plan.steps.iter().any(|s| {
            let m = &source.migrations[s.index];
            !transactional(db, m, s.direction) && !batched(m)
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
        run_single(db, source, &plan, opts, sink, report).await
    } else {
        run_each(db, source, &plan, opts, sink, report).await
    };
    let Err(mut e) = outcome else {
        return Ok(());
    };
    let Some(b) = report.backup.clone() else {
        return Err(e);
    };
    if !is_dirty(&e) {
        return Err(e);
    }
    match (&opts.backup_dir, opts.restore_on_failure) {
        // Restoring over a shared database would discard what other clients wrote
        // during the run: only on the user's explicit opt-in.
        (Some(dir), true) => {
            let r = backup::restore(db, dir, &b.id).await?;
            sink.event(&Event::BackupRestored { id: b.id.clone() });
            set_aftermath(
                &mut e,
                Aftermath::Restored {
                    backup: b.id,
                    set_aside: r.set_aside.id,
                },
            );
            // The restore brought back the history as it was; record what happened.
            record_failure(db, source, &plan, &e).await?;
        }
        _ => set_backup(&mut e, b.id),
    }
    Err(e)
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
    if let Error::StatementFailed { aftermath, .. }
    | Error::CheckFailed { aftermath, .. }
    | Error::ForeignKeyViolation { aftermath, .. } = e
    {
        *aftermath = a;
    }
}

/// Names the run's backup in a dirty failure, so the message can offer the restore.
fn set_backup(e: &mut Error, id: String) {
    if let Error::StatementFailed {
        aftermath: Aftermath::Dirty { backup, .. },
        ..
    }
    | Error::CheckFailed {
        aftermath: Aftermath::Dirty { backup, .. },
        ..
    } = e
    {
        *backup = Some(id);
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
        if opts.cancel.is_cancelled() {
            report.cancelled = true;
            return Ok(());
        }
        let m = &source.migrations[step.index];
        let r = if crate::online::is_online(m) {
            run_online(db, m, step, opts, sink).await
        } else if batched(m) {
            match crate::data::run(db, m, step, opts, sink).await {
                Ok(crate::data::Outcome::Done) => Ok(true),
                Ok(crate::data::Outcome::Paused | crate::data::Outcome::Joined) => {
                    report.paused = Some(step.version.clone());
                    report.cancelled = opts.cancel.is_cancelled();
                    return Ok(());
                }
                Err(e) => Err(e),
            }
        } else if transactional(db, m, step.direction) {
            run_in_transaction(db, m, step, false, opts.every_statement, sink)
                .await
                .map(|()| true)
        } else {
            run_stepwise(db, m, step, &opts.cancel, None, sink).await
        };
        match r {
            Ok(true) => report.migrations.push(step.version.clone()),
            Ok(false) => {
                // Cancelled between two statements: its progress is recorded, `up` resumes it.
                report.cancelled = true;
                return Ok(());
            }
            Err(e) => {
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
                    } | Error::ForeignKeyViolation {
                        aftermath: Aftermath::RolledBack,
                        ..
                    }
                ) {
                    record_failure(db, source, plan, &e).await?;
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Compiles an online migration against the live catalog and runs it, with
/// short lock waits: a transaction that timed out waiting for a lock is
/// rolled back and tried again (compiled again: nothing of it stayed); run
/// statement by statement, the statement that timed out is sent again.
async fn run_online(
    db: &mut Db,
    m: &Migration,
    step: &Step,
    opts: &RunOptions,
    sink: &mut dyn EventSink,
) -> Result<bool, Error> {
    let locks = ShortLocks::of(db);
    locks.set(db.engine, &mut db.conn).await?;
    let resuming = step.resume_row.is_some();
    let mut attempt = 0;
    let r = loop {
        let r = match crate::online::prepared(
            db,
            m,
            step.direction,
            resuming,
            true,
            &opts.collections,
            sink,
        )
        .await
        {
            Ok(c) if !transactional(db, &c, step.direction) => {
                break run_stepwise(db, &c, step, &opts.cancel, Some(locks), sink).await;
            }
            Ok(c) => run_in_transaction(db, &c, step, false, opts.every_statement, sink).await,
            Err(e) => Err(e),
        };
        match r {
            Err(mut e) if ShortLocks::is_wait_error(db.engine, &e) => {
                attempt += 1;
                let what = format!("migration {}", step.version);
                if let Err(why) = locks
                    .after_wait(db.engine, &mut db.conn, &what, attempt, sink)
                    .await
                {
                    match &mut e {
                        Error::StatementFailed { message, .. } | Error::Query { message, .. } => {
                            *message = format!("{message}: {why}");
                        }
                        _ => {}
                    }
                    break Err(e);
                }
            }
            r => break r.map(|()| true),
        }
    };
    let reset = ShortLocks::reset(db.engine, &mut db.conn).await;
    let done = r?;
    reset?;
    Ok(done)
}

async fn run_single(
    db: &mut Db,
    source: &Source,
    plan: &Plan,
    opts: &RunOptions,
    sink: &mut dyn EventSink,
    report: &mut Report,
) -> Result<(), Error> {
    control(&mut db.conn, db.engine.begin()).await?;
    let mut done = Vec::new();
    for step in &plan.steps {
        let compiled;
        let mut m = &source.migrations[step.index];
        if crate::online::is_online(m) {
            compiled = match crate::online::prepared(
                db,
                m,
                step.direction,
                false,
                true,
                &opts.collections,
                sink,
            )
            .await
            {
                Ok(c) => c,
                Err(e) => {
                    // The one transaction is open: end it before the lock is released.
                    let _ = crate::conn::exec(&mut db.conn, "ROLLBACK").await;
                    return Err(e);
                }
            };
            if !compiled.transaction {
                control(&mut db.conn, "ROLLBACK").await?;
                return Err(Error::Unsupported(format!(
                    "online migration {} builds indexes or validates constraints concurrently, which cannot run inside one transaction; run it without --single-transaction, or set transaction = true in its migration.toml",
                    step.version
                )));
            }
            m = &compiled;
        }
        if let Err(e) = run_in_transaction(db, m, step, true, opts.every_statement, sink).await {
            control(&mut db.conn, "ROLLBACK").await?;
            sink.event(&Event::MigrationFailed {
                version: step.version.clone(),
                error: e.to_string(),
            });
            record_failure(db, source, plan, &e).await?;
            return Err(e);
        }
        done.push(step.version.clone());
    }
    control(&mut db.conn, "COMMIT").await?;
    // Nothing counts as applied before the one transaction commits.
    report.migrations.extend(done);
    Ok(())
}

/// The default folder for backups of a project rooted at `project`.
pub fn default_backup_dir(project: &Path) -> PathBuf {
    project.join(".instar").join("backups")
}
