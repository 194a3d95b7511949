//! `up` and `down` on Spanner: the core's plan, run step by step under the
//! lease. Each DDL group is one schema-change operation, recorded in the
//! `start` row (its name, and the statement it begins at) before it is
//! submitted; each DML group is one transaction that also counts itself in
//! the `start` row. Whatever stops a run, the row says exactly how many
//! statements took effect.

use std::time::{Duration, Instant};

use instar_core::checksum::statement_hash;
use instar_core::history::{derive, Direction, EventKind, HistoryRow, State};
use instar_core::plan::{plan, PlanOptions, Step, Target};
use instar_core::source::{Migration, Script};
use instar_db::lease::LockStrategy;
use serde::Serialize;

use crate::client::{Client, Session};
use crate::lease::Lease;
use crate::script::{groups, statements, Group, GroupKind, DIALECT};
use crate::tables::{self, Progress};
use crate::Error;

/// How a run goes.
#[derive(Debug, Clone)]
pub struct Options {
    /// Up to a version, or down.
    pub target: Target,
    /// `lease` (also for `auto`) or `none`; `advisory` is refused.
    pub lock: LockStrategy,
    /// How long a lease lasts without a heartbeat.
    pub lease: Duration,
    /// How long to wait for another runner's lease.
    pub lock_timeout: Duration,
    /// Apply pending migrations older than the newest applied one.
    pub allow_out_of_order: bool,
    /// Do not refuse when applied migrations have no file.
    pub ignore_missing: bool,
    /// Data migrations stop at a checkpoint once this is spent.
    pub max_duration: Option<Duration>,
}

/// What a run reports as it goes.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The lock is held and the plan made.
    RunStarted {
        /// The run's id.
        run_id: String,
        /// `version name` of each step.
        steps: Vec<String>,
    },
    /// A migration begins (or resumes at `resume_from`).
    MigrationStarted {
        /// Its version.
        version: String,
        /// Its name.
        name: String,
        /// Up or down.
        direction: Direction,
        /// Statements already applied by an earlier run.
        resume_from: usize,
    },
    /// A schema-change operation was submitted (or found again after a restart).
    Operation {
        /// Its version.
        version: String,
        /// The operation's name.
        operation: String,
        /// Its statements.
        statements: usize,
    },
    /// A data-migration batch committed.
    Batch {
        /// Its version.
        version: String,
        /// Rows walked so far.
        rows_done: i64,
        /// Rows to walk in all.
        total: i64,
    },
    /// A migration finished.
    MigrationFinished {
        /// Its version.
        version: String,
        /// How long it took.
        duration_ms: u64,
    },
}

/// One migration a run applied or reverted.
#[derive(Debug, Clone, Serialize)]
pub struct Done {
    /// Its version.
    pub version: String,
    /// Its name.
    pub name: String,
    /// Up or down.
    pub direction: Direction,
    /// Statements in its script.
    pub statements: usize,
    /// Rows a data migration walked.
    pub rows: Option<i64>,
    /// How long it took.
    pub duration_ms: u64,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The run's id.
    pub run_id: String,
    /// What it applied or reverted, in order.
    pub done: Vec<Done>,
    /// A data migration stopped at a checkpoint by `max_duration`.
    pub stopped_at_checkpoint: Option<String>,
}

/// Everything a runner needs between steps.
pub(crate) struct Ctx<'a> {
    pub client: &'a Client,
    pub session: &'a Session,
    pub lease: Option<&'a Lease>,
    pub run_id: &'a str,
    pub on_event: &'a mut dyn FnMut(Event),
    pub deadline: Option<Instant>,
}

impl Ctx<'_> {
    /// Renews the lease in `txn` (and fails if it is lost).
    pub fn fence(&self, txn: &mut crate::client::Txn) -> Result<(), Error> {
        match self.lease {
            Some(l) => l.fence(txn),
            None => Ok(()),
        }
    }
}

/// The history and the state derived from it.
pub fn state(session: &Session) -> Result<(Vec<HistoryRow>, State), Error> {
    let (rows, _) = tables::read(session)?;
    let st = derive(&rows);
    Ok((rows, st))
}

/// The plan a run would follow (nothing is written).
pub fn plan_steps(
    session: &Session,
    migrations: &[Migration],
    opts: &Options,
) -> Result<Vec<Step>, Error> {
    let (_, st) = state(session)?;
    Ok(plan(migrations, &st, &plan_options(opts))?.steps)
}

fn plan_options(opts: &Options) -> PlanOptions {
    PlanOptions {
        target: opts.target.clone(),
        dialect: DIALECT,
        allow_out_of_order: opts.allow_out_of_order,
        ignore_missing: opts.ignore_missing,
    }
}

/// Takes the lock as `opts.lock` says (none, or a lease).
pub fn lock(
    client: &Client,
    session: &Session,
    run_id: &str,
    opts: &Options,
) -> Result<Option<Lease>, Error> {
    match opts.lock {
        LockStrategy::None => Ok(None),
        LockStrategy::Advisory => Err(Error::Run(
            "Spanner has no advisory lock: use `[run] lock = \"lease\"` (the default on Spanner) or `none` where the platform serialises deploys".into(),
        )),
        LockStrategy::Auto | LockStrategy::Lease => {
            Lease::acquire(client, session, run_id, opts.lease, opts.lock_timeout).map(Some)
        }
    }
}

/// Runs the plan under the lock.
pub fn run(
    client: &Client,
    migrations: &[Migration],
    opts: &Options,
    on_event: &mut dyn FnMut(Event),
) -> Result<Report, Error> {
    let session = client.session()?;
    tables::ensure(client, &session)?;
    let run_id = instar_db::new_run_id();
    let lease = lock(client, &session, &run_id, opts)?;
    let result = run_locked(
        client,
        &session,
        lease.as_ref(),
        &run_id,
        migrations,
        opts,
        on_event,
    );
    if let Some(l) = lease {
        let released = l.release(&session);
        if result.is_ok() {
            released?;
        }
    }
    result
}

fn run_locked(
    client: &Client,
    session: &Session,
    lease: Option<&Lease>,
    run_id: &str,
    migrations: &[Migration],
    opts: &Options,
    on_event: &mut dyn FnMut(Event),
) -> Result<Report, Error> {
    let (rows, ops) = tables::read(session)?;
    let st = derive(&rows);
    let steps = plan(migrations, &st, &plan_options(opts))?.steps;
    on_event(Event::RunStarted {
        run_id: run_id.into(),
        steps: steps
            .iter()
            .map(|s| format!("{} {}", s.version, migrations[s.index].name))
            .collect(),
    });
    let mut ctx = Ctx {
        client,
        session,
        lease,
        run_id,
        on_event,
        deadline: opts.max_duration.map(|d| Instant::now() + d),
    };
    let mut report = Report {
        run_id: run_id.into(),
        done: Vec::new(),
        stopped_at_checkpoint: None,
    };
    for step in &steps {
        let m = &migrations[step.index];
        let t0 = Instant::now();
        (ctx.on_event)(Event::MigrationStarted {
            version: step.version.clone(),
            name: m.name.clone(),
            direction: step.direction,
            resume_from: step.resume_from,
        });
        let (statements, rows) = if m.meta.kind == Some(instar_core::meta::Kind::Data) {
            match crate::data::run(&mut ctx, m, step.direction)? {
                crate::data::Outcome::Finished { rows } => (1, Some(rows)),
                crate::data::Outcome::Stopped => {
                    report.stopped_at_checkpoint = Some(step.version.clone());
                    break;
                }
            }
        } else {
            let resumed_op = step.resume_row.and_then(|id| ops.get(&id).cloned());
            (apply_script(&mut ctx, m, step, resumed_op)?, None)
        };
        let duration_ms = t0.elapsed().as_millis() as u64;
        (ctx.on_event)(Event::MigrationFinished {
            version: step.version.clone(),
            duration_ms,
        });
        report.done.push(Done {
            version: step.version.clone(),
            name: m.name.clone(),
            direction: step.direction,
            statements,
            rows,
            duration_ms,
        });
    }
    Ok(report)
}

/// A history row for `m` as this run writes it.
pub(crate) fn row(ctx: &Ctx, m: &Migration, event: EventKind, direction: Direction) -> HistoryRow {
    let kind = if m.meta.kind == Some(instar_core::meta::Kind::Data) {
        "data"
    } else {
        "schema"
    };
    let mut r = tables::new_row(m.version.as_str(), &m.name, event, direction, kind);
    r.checksum = Some(m.checksum.clone());
    r.schema_version = m.meta.schema_version.as_ref().map(ToString::to_string);
    r.run_id = Some(ctx.run_id.into());
    r
}

/// The script a direction runs.
pub(crate) fn script_of(m: &Migration, direction: Direction) -> Result<&Script, Error> {
    match direction {
        Direction::Up => Ok(&m.up),
        Direction::Down => m.down.as_ref().ok_or_else(|| {
            Error::Run(format!(
                "{} {} has no down script",
                m.version.as_str(),
                m.name
            ))
        }),
    }
}

/// Records the migration finished (`apply` or `revert`), fenced.
pub(crate) fn finish(
    ctx: &Ctx,
    mut r: HistoryRow,
    t0: Instant,
    also: &dyn Fn(&mut crate::client::Txn) -> Result<(), Error>,
) -> Result<(), Error> {
    r.event = match r.direction {
        Direction::Up => EventKind::Apply,
        Direction::Down => EventKind::Revert,
    };
    r.finished_at = Some(instar_core::time::now_rfc3339());
    r.duration_ms = Some(t0.elapsed().as_millis() as i64);
    ctx.session.rw(|txn| {
        ctx.fence(txn)?;
        also(txn)?;
        tables::insert(txn, &r)
    })?;
    Ok(())
}

fn apply_script(
    ctx: &mut Ctx,
    m: &Migration,
    step: &Step,
    resumed_op: Option<String>,
) -> Result<usize, Error> {
    let t0 = Instant::now();
    let script = script_of(m, step.direction)?;
    let stmts = statements(&script.sql, &script.path)?;
    let groups = groups(&stmts, &script.path)?;
    let mut r = row(ctx, m, EventKind::Start, step.direction);
    r.statements_total = stmts.len() as i64;
    r.statement_hashes = Some(
        stmts
            .iter()
            .map(|(s, _)| statement_hash(s))
            .collect::<Vec<_>>()
            .join(","),
    );
    let mut progress = Progress {
        applied: step.resume_from as i64,
        ..Progress::default()
    };
    let row_id = match step.resume_row {
        Some(id) => {
            if let Some(op) = resumed_op {
                progress = crate::run_ddl::recover(ctx, m, script, &stmts, id, progress, &op)?;
            }
            id
        }
        None => ctx.session.rw(|txn| {
            ctx.fence(txn)?;
            tables::insert(txn, &r)
        })?,
    };
    for g in &groups {
        let end = g.first + g.statements.len();
        if end as i64 <= progress.applied {
            continue;
        }
        let skip = (progress.applied as usize).saturating_sub(g.first);
        let part = Group {
            kind: g.kind,
            first: g.first + skip,
            statements: g.statements[skip..].to_vec(),
        };
        progress = match part.kind {
            GroupKind::Ddl => crate::run_ddl::ddl(ctx, m, script, &part, row_id, progress)?,
            GroupKind::Dml => crate::run_ddl::dml(ctx, m, script, &part, row_id, progress)?,
        };
    }
    r.statements_applied = stmts.len() as i64;
    finish(ctx, r, t0, &|_| Ok(()))?;
    Ok(stmts.len())
}
