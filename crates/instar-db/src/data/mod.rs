//! Data migrations: one statement applied to a table in keyset batches.
//!
//! The key range is fixed when a run begins (the largest key then is the upper
//! bound), so a table that keeps growing cannot make the run endless; rows
//! inserted during the run are the application's job. Each batch is
//! `key > last AND key <= end` — never OFFSET over the table — and commits in
//! one transaction with its checkpoint row in `instar_checkpoints`, so a killed
//! run resumes after the last committed batch, never redoing or skipping one.
//!
//! With `--parallel N` (PostgreSQL, MySQL) the range is split into N slices of
//! about equal row counts, each with its own checkpoint row and connection,
//! walked concurrently. SQLite has one write lock per database, so workers
//! there would only take turns: it is refused.
//!
//! - [`keys`]: the SQL shape (quoted table and key, placeholders) and key values;
//! - [`checkpoint`]: the data tables, the checks before a run, start/resume/finish;
//! - [`walk`]: one slice's batch loop, error policies, adaptive batch size.

mod backfill;
mod checkpoint;
pub mod claims;
mod documents;
mod keys;
mod lanes;
mod walk;

pub use backfill::{backfill, forget_backfill, Backfill};
pub use documents::{DocCollection, Move, Validator};

use std::borrow::Cow;
use std::time::Instant;

use instar_core::event::{Event, EventSink};
use instar_core::history::Direction;
use instar_core::meta::{DataConfig, DocumentsConfig, Kind, BATCH_PLACEHOLDER};
use instar_core::plan::Step;
use instar_core::Migration;
use serde::Serialize;

pub use checkpoint::{
    checkpoints, estimated_rows, key_is_declared_unique, skipped_rows, Checkpoint, LARGE_TABLE,
};
use keys::{bind_key, fetch_key, Shape};
use walk::{Job, Shared};

use crate::db::control;
use crate::error::db_message;
use crate::runner::RunOptions;
use crate::{Db, Error};

/// How a data step ended.
pub(crate) enum Outcome {
    /// Every batch is done and the migration is recorded as applied.
    Done,
    /// The time budget was spent; the run stopped at a checkpoint.
    Paused,
    /// A worker walked what it could claim; the run's owner records the migration.
    Joined,
}

/// What a dry run of a data migration found: the first batch, run and rolled back.
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    /// Rows in the key range now.
    pub rows_total: i64,
    /// Rows the first batch's statement touched (rolled back).
    pub first_batch_rows: u64,
    /// How long the first batch took.
    pub batch_ms: u64,
    /// Batches the run would take at `batch_size`.
    pub batches: u64,
    /// The whole run at the first batch's pace (checkpoint commits not included).
    pub estimated_ms: u64,
    /// For a documents migration: the target, and how each version gets there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documents: Option<DocumentsEstimate>,
}

/// What a dry run of a documents migration found.
#[derive(Debug, Clone, Serialize)]
pub struct DocumentsEstimate {
    /// The collection.
    pub collection: String,
    /// The version documents are moved to.
    pub to: String,
    /// How the documents at each other version get there.
    pub moves: Vec<Move>,
}

/// The SQL shape of a data migration; on engines that need it, looks up which key
/// columns must travel as text (see [`Shape::casts`]), and refuses key types that
/// cannot travel exactly, before anything is written.
async fn shape<'a>(
    db: &mut Db,
    step: &Step,
    cfg: &DataConfig,
    statement: &'a str,
) -> Result<Shape<'a>, Error> {
    let e = db.engine;
    let table = cfg
        .table
        .split('.')
        .map(|p| e.quote(p))
        .collect::<Vec<_>>()
        .join(".");
    let mut casts = Vec::new();
    for c in cfg.key.columns() {
        let Some((sql, binds)) = e.key_type_query(&cfg.table, &c) else {
            casts.push(None);
            continue;
        };
        let q = crate::conn::query(&sql).bind_texts(binds);
        let ctx = || format!("looking up the type of key column {c}");
        // No row: the table or column is missing, which the preflight reports.
        let row = q
            .fetch_optional(&mut db.conn)
            .await
            .map_err(|e| Error::query(ctx(), e))?;
        let declared = match row {
            Some(r) => crate::db::row_values(&r)?
                .first()
                .and_then(|v| v.as_str().map(str::to_string)),
            None => None,
        };
        let cast = match declared {
            Some(t) => e.key_cast(&t).map_err(|why| Error::DataRefused {
                version: step.version.clone(),
                reason: format!(
                    "key column {c} of {}: {why}; use a key of integers or text",
                    cfg.table
                ),
            })?,
            None => None,
        };
        casts.push(cast);
    }
    Ok(Shape {
        e,
        table,
        cols: cfg.key.columns().iter().map(|c| e.quote(c)).collect(),
        statement,
        casts,
    })
}

/// A documents step's collection and `[documents]` table.
type DocsStep<'m> = (&'m DocCollection, &'m DocumentsConfig);

/// The batch walk of a data or documents step: the `[data]` table (once its
/// script is known to be one statement in this engine's dialect), or the one a
/// documents migration's collection makes.
fn config<'m>(
    db: &Db,
    m: &'m Migration,
    step: &Step,
    opts: &'m RunOptions,
) -> Result<(Cow<'m, DataConfig>, Option<DocsStep<'m>>), Error> {
    let refuse = |reason: String| Error::DataRefused {
        version: step.version.clone(),
        reason,
    };
    if m.meta.kind == Some(Kind::Documents) {
        let d = m
            .meta
            .documents
            .as_ref()
            .ok_or_else(|| refuse("no [documents] table".into()))?;
        let coll = opts.collections.get(&d.collection).ok_or_else(|| {
            refuse(format!(
                "collection {:?} is not declared; declare it under [collections.{}] in instar.toml",
                d.collection, d.collection
            ))
        })?;
        let walk = d.walk(&coll.table.table, &coll.table.key);
        return Ok((Cow::Owned(walk), Some((coll, d))));
    }
    let cfg = m
        .meta
        .data
        .as_ref()
        .ok_or_else(|| refuse("no [data] table".into()))?;
    let script = match step.direction {
        Direction::Up => &m.up,
        Direction::Down => m.down.as_ref().unwrap_or(&m.up),
    };
    instar_core::source::check_data_statement(script, db.dialect())?;
    Ok((Cow::Borrowed(cfg), None))
}

fn statement_of(m: &Migration, d: Direction) -> &str {
    let script = match d {
        Direction::Up => &m.up,
        Direction::Down => m.down.as_ref().unwrap_or(&m.up),
    };
    script.sql.trim().trim_end_matches(';').trim()
}

/// Dry run: the same checks as a real run, then the first batch inside a
/// transaction that is rolled back, timed, and extrapolated to the key range.
pub async fn estimate(
    db: &mut Db,
    m: &Migration,
    step: &Step,
    opts: &RunOptions,
) -> Result<Estimate, Error> {
    let (cfg, docs) = config(db, m, step, opts)?;
    let mover = match docs {
        Some((coll, d)) => Some(documents::Mover::new(db, coll, d, step, true).await?),
        None => None,
    };
    let statement = match mover {
        Some(_) => "",
        None => statement_of(m, step.direction),
    };
    let s = shape(db, step, &cfg, statement).await?;
    let (upper, total) = checkpoint::preflight(db, m, step, &cfg, &s).await?;
    let documents = match (&mover, docs) {
        (Some(mv), Some((coll, _))) => Some(DocumentsEstimate {
            collection: coll.table.collection.clone(),
            to: mv.to.clone(),
            moves: mv.moves.clone(),
        }),
        _ => None,
    };
    let Some(upper) = upper else {
        return Ok(Estimate {
            rows_total: 0,
            first_batch_rows: 0,
            batch_ms: 0,
            batches: 0,
            estimated_ms: 0,
            documents,
        });
    };
    let find = s.key_at(false, cfg.batch_size - 1);
    let end = fetch_key(&mut db.conn, &find, &[upper.as_slice()], s.cols.len())
        .await?
        .unwrap_or_else(|| upper.clone());
    let t = Instant::now();
    let first_batch_fails = |reason: String| Error::DataRefused {
        version: step.version.clone(),
        reason: format!("its first batch fails: {reason}"),
    };
    let rows = match &mover {
        // Its UPDATEs name instar_complements, which a dry run does not create.
        Some(mv) if !mv.can_rehearse() => 0,
        Some(mv) => {
            let names = checkpoint::names(db);
            let job = Job {
                m,
                step,
                cfg: &cfg,
                shape: &s,
                names: &names,
                row_id: 0,
                docs: Some(mv),
                claims: None,
            };
            let cp = Checkpoint::default();
            mv.batch(db, &job, None, &end, &cp, true)
                .await
                .map_err(|e| first_batch_fails(e.to_string()))?
                .0
        }
        None => {
            let mut k = 0;
            let stmt = s
                .statement
                .replace(BATCH_PLACEHOLDER, &s.range(false, &mut k));
            control(&mut db.conn, db.engine.begin()).await?;
            let r = bind_key(crate::conn::query(&stmt), &end)?
                .execute(&mut db.conn)
                .await;
            let _ = crate::conn::exec(&mut db.conn, "ROLLBACK").await;
            r.map_err(|e| first_batch_fails(db_message(&e)))?
                .rows_affected
        }
    };
    let took = t.elapsed();
    let batches = (total as u64).div_ceil(cfg.batch_size);
    Ok(Estimate {
        rows_total: total,
        first_batch_rows: rows,
        batch_ms: took.as_millis() as u64,
        batches,
        estimated_ms: (took.as_secs_f64() * 1000.0 * batches as f64) as u64,
        documents,
    })
}

/// Runs (or resumes) one data migration step, on `parallel` connections where
/// the engine allows (a resumed run keeps the slices it began with).
pub(crate) async fn run(
    db: &mut Db,
    m: &Migration,
    step: &Step,
    opts: &RunOptions,
    sink: &mut dyn EventSink,
) -> Result<Outcome, Error> {
    walk_all(db, m, step, opts, sink, Record::History).await
}

/// Whether a walk is a migration's (a `start` row, then `apply`/`revert`) or
/// a standalone move of documents (checkpoints only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Record {
    History,
    CheckpointsOnly,
}

async fn walk_all(
    db: &mut Db,
    m: &Migration,
    step: &Step,
    opts: &RunOptions,
    sink: &mut dyn EventSink,
    record: Record,
) -> Result<Outcome, Error> {
    let (cfg, docs) = config(db, m, step, opts)?;
    let cfg = &*cfg;
    let parallel = opts.parallel;
    if let Some(why) = db.engine.parallel_refusal().filter(|_| parallel > 1) {
        return Err(Error::Unsupported(format!(
            "--parallel needs PostgreSQL or MySQL: {why}; run without it"
        )));
    }
    let n = checkpoint::names(db);
    let mover = match docs {
        Some((coll, d)) => Some(documents::Mover::new(db, coll, d, step, false).await?),
        None => None,
    };
    let statement = match mover {
        Some(_) => "",
        None => statement_of(m, step.direction),
    };
    let shape = shape(db, step, cfg, statement).await?;
    let role = if opts.worker {
        claims::Role::Worker
    } else {
        claims::Role::Owner
    };
    let claims = claims::Claims::new(db, role);
    let (row_id, cps) = match step.resume_row {
        Some(row_id) => (row_id, checkpoint::resume(db, m, step, &n).await?),
        None if role == claims::Role::Worker => {
            return Err(Error::DataHalted {
                version: step.version.clone(),
                reason: "no run of it is in progress to join".into(),
            })
        }
        None => {
            let slices = opts.slices.unwrap_or(parallel).max(parallel).max(1);
            let begun =
                checkpoint::begin(db, m, step, cfg, &shape, &n, (slices, record, &mut *sink))
                    .await?;
            begun
        }
    };
    // Past every check: Instar's claims table now (claims an earlier run of
    // the same migration left are claimed again: see `Claims::claim`).
    claims.ensure(db).await?;
    let t0 = Instant::now();
    let shared = Shared::new(sink, &step.version, &cps, opts);
    shared.event(&Event::DataStarted {
        version: step.version.clone(),
        rows_total: shared.rows_total as u64,
        rows_done: shared.rows_done() as u64,
    });
    let job = Job {
        m,
        step,
        cfg,
        shape: &shape,
        names: &n,
        row_id,
        docs: mover.as_ref(),
        claims: Some(&claims),
    };
    let slices = cps.len();
    let cps = match lanes::walk(db, &job, &shared, parallel.clamp(1, slices.max(1)), &n).await? {
        lanes::End::Done(cps) => cps,
        lanes::End::OthersHold => return Ok(Outcome::Joined),
        lanes::End::Stopped => {
            shared.event(&Event::DataPaused {
                version: step.version.clone(),
                rows_done: shared.rows_done() as u64,
                rows_total: shared.rows_total as u64,
            });
            return Ok(Outcome::Paused);
        }
    };
    if role == claims::Role::Worker {
        // The run's owner records it (or the next `instar up`, if the owner died).
        return Ok(Outcome::Joined);
    }
    let totals = checkpoint::Totals {
        table: shape.table.clone(),
        rows_total: shared.rows_total,
        rows_done: cps.iter().map(|c| c.rows_done).sum(),
        batches: cps.iter().map(|c| c.batches).sum(),
        errors: cps.iter().map(|c| c.errors).sum(),
        elapsed_ms: cps
            .iter()
            .map(|c| c.elapsed_ms)
            .max()
            .unwrap_or(0)
            .max(t0.elapsed().as_millis() as i64),
        slices,
        exact_count: cfg.exact_count,
    };
    checkpoint::finish(
        db,
        m,
        step,
        &n,
        row_id,
        &totals,
        (record, &mut Forward(&shared)),
    )
    .await?;
    claims
        .clear(db, &step.version, step.direction.as_str())
        .await?;
    shared.event(&Event::MigrationFinished {
        version: step.version.clone(),
        direction: step.direction,
        duration_ms: totals.elapsed_ms as u64,
        rows_affected: totals.rows_done as u64,
    });
    Ok(Outcome::Done)
}

/// The run's events, from Instar's own transactions too (their retries).
struct Forward<'a, 's>(&'a Shared<'s>);

impl EventSink for Forward<'_, '_> {
    fn event(&mut self, e: &Event) {
        self.0.event(e);
    }
}

/// How a standalone move of documents ([`move_documents`]) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveEnd {
    /// Every batch is done; the checkpoints are gone.
    Done,
    /// The time budget was spent or the run was cancelled: the next move
    /// toward the same version resumes after the last batch.
    Paused,
}

/// The checkpoints' name of a standalone move of collection `c`.
pub fn move_name(c: &str) -> String {
    format!("documents:{c}")
}

/// A standalone move's stand-in migration and step: no file, no history;
/// its checksum names the target and the lenses (and modules) up to it, so a
/// checkpoint left by a move toward another version, or before a lens or
/// module on the way was edited, is never resumed.
fn standalone(coll: &DocCollection, cfg: &DocumentsConfig) -> Result<(Migration, Step), Error> {
    let name = move_name(&cfg.collection);
    let m = Migration {
        version: instar_core::Version::parse("0", instar_core::Layout::Instar)
            .ok_or_else(|| Error::Unsupported("version 0".into()))?,
        name: name.clone(),
        layout: instar_core::Layout::Instar,
        up: instar_core::source::Script {
            path: format!("collection {}", cfg.collection).into(),
            sql: String::new(),
            original: None,
        },
        down: None,
        meta: instar_core::meta::Meta {
            kind: Some(Kind::Documents),
            documents: Some(cfg.clone()),
            ..Default::default()
        },
        transaction: true,
        down_transaction: None,
        checksum: {
            use sha2::Digest;
            let lenses = sha2::Sha256::digest(coll.graph.fingerprint(&cfg.to));
            format!("documents to {} through sha256:{lenses:x}", cfg.to)
        },
        variants: Vec::new(),
        lenses: None,
    };
    let step = Step {
        index: 0,
        version: name,
        direction: Direction::Up,
        resume_from: 0,
        resume_row: None,
        in_flight: false,
    };
    Ok((m, step))
}

fn with_collection(opts: &RunOptions, coll: &DocCollection, cfg: &DocumentsConfig) -> RunOptions {
    let mut opts = opts.clone();
    opts.collections = [(cfg.collection.clone(), coll.clone())].into();
    opts
}

/// A dry run of [`move_documents`]: how the documents at each version get to
/// `cfg.to` (pushed down, with the exact `UPDATE`, or in process and why),
/// and the first batch, run and rolled back. Writes nothing.
pub async fn estimate_move(
    db: &mut Db,
    coll: &DocCollection,
    cfg: &DocumentsConfig,
    opts: &RunOptions,
) -> Result<Estimate, Error> {
    let (m, step) = standalone(coll, cfg)?;
    estimate(db, &m, &step, &with_collection(opts, coll, cfg)).await
}

/// Moves every document of `coll` to `cfg.to` outside a migration (`instar
/// docs migrate`): the batches, pushdown, checkpoints, `--parallel` slices,
/// error policy and time budget of a documents migration, under the run lock,
/// with checkpoints named [`move_name`] and no history row. A move killed or
/// stopped resumes after its last batch when it is run again toward the same
/// version; toward another one, it starts over (documents already there are
/// skipped either way).
pub async fn move_documents(
    db: &mut Db,
    coll: &DocCollection,
    cfg: &DocumentsConfig,
    opts: &RunOptions,
    sink: &mut dyn EventSink,
) -> Result<MoveEnd, Error> {
    let (m, mut step) = standalone(coll, cfg)?;
    let opts = with_collection(opts, coll, cfg);
    db.lock(opts.lock_timeout, || {
        sink.event(&Event::LockWaiting {
            lock: step.version.clone(),
        })
    })
    .await?;
    let r = async {
        let n = checkpoint::names(db);
        checkpoint::ensure_tables(db, &n).await?;
        let left = checkpoints(db).await?;
        // A migration paused half way may be moving these very documents.
        if let Some(other) = left.iter().find(|c| c.version != step.version) {
            return Err(Error::DataRefused {
                version: step.version.clone(),
                reason: format!(
                    "migration {} is paused at a checkpoint ({} of {} rows done) and may be moving these documents; finish it with `instar up` first",
                    other.version, other.rows_done, other.rows_total
                ),
            });
        }
        if left
            .iter()
            .any(|c| c.version == step.version && c.checksum.as_ref() == Some(&m.checksum))
        {
            step.resume_row = Some(0);
        }
        walk_all(db, &m, &step, &opts, sink, Record::CheckpointsOnly).await
    }
    .await;
    let unlocked = db.unlock().await;
    let end = r?;
    unlocked?;
    Ok(match end {
        Outcome::Done => MoveEnd::Done,
        // A move is never a worker's.
        Outcome::Paused | Outcome::Joined => MoveEnd::Paused,
    })
}
