//! `start`, `complete`, `rollback`: one online migration served at two
//! versions, under the run lock, its phase kept in `instar_online` so that
//! each command resumes after a kill where the previous one stopped.
//!
//! Phases: `expanding` (the expand statements, one transaction where the
//! engine can), `backfilling` (checkpointed batches), `expanded` (both
//! versions served). `complete` contracts and records the migration as
//! applied in one transaction; `rollback` removes the new version.

use std::time::Instant;

use instar_core::event::{Event, EventSink};
use instar_core::history::{derive, Direction, EventKind};
use instar_core::plan::{self, PlanOptions, Target};
use instar_core::{Migration, Source};
use serde::Serialize;

pub use super::connect::{connect_sql, session_dropped};
use super::expand::{expansion, Expansion};
use super::lens::Collections;
use super::{compile_with, is_online, Catalog, COMPILED};
use crate::conn::exec;
use crate::db::control;
use crate::ddl_lock::ShortLocks;
use crate::runner::RunOptions;
use crate::{Db, Error};

/// The online migration in flight, as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct InFlight {
    /// Its version.
    pub version: String,
    /// `expanding`, `backfilling` or `expanded`.
    pub phase: String,
    /// The version before it, still served.
    pub old_version: String,
    /// Where each version's views are (PostgreSQL schemas; empty elsewhere).
    pub old_schema: String,
    /// The new version's.
    pub new_schema: String,
    /// When `start` began.
    pub started_at: String,
    /// SQLite: what a connection runs to read and write at the new version.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connect_new: Vec<String>,
}

/// What `start` did.
#[derive(Debug, Clone, Serialize)]
pub struct Started {
    /// The migration, now in flight (or `None`: paused during the backfill).
    pub in_flight: InFlight,
    /// Whether every backfill finished (else a time budget or a cancel paused it).
    pub expanded: bool,
    /// Changes the ops declare lossy, with rows that do not come back.
    pub lossy: Vec<String>,
    /// How long the expand transaction took (it holds the locks its DDL
    /// takes, PostgreSQL's `ACCESS EXCLUSIVE` on altered tables), in ms.
    pub expand_ms: u64,
}

/// What `complete` did.
#[derive(Debug, Clone, Serialize)]
pub struct Completed {
    /// The migration, now applied.
    pub completed: InFlight,
    /// How long the contract transaction took (it holds the locks its DDL takes), in ms.
    pub contract_ms: u64,
}

/// The next pending migration, which `start` serves: it must be online.
fn next_pending<'s>(
    db: &Db,
    source: &'s Source,
    state: &instar_core::history::State,
) -> Result<(usize, &'s Migration), Error> {
    let p = plan::plan(
        &source.migrations,
        state,
        &PlanOptions {
            target: Target::Up { to: None },
            dialect: db.dialect(),
            allow_out_of_order: false,
            ignore_missing: false,
        },
    )?;
    let Some(step) = p.steps.first() else {
        return Err(Error::Unsupported(
            "nothing is pending: every migration is applied".into(),
        ));
    };
    let m = &source.migrations[step.index];
    if !is_online(m) {
        return Err(Error::Unsupported(format!(
            "the next pending migration, {} ({}), is not an online migration; apply it with `instar up --to {}`, then `instar start`",
            m.version, m.name, m.version
        )));
    }
    Ok((step.index, m))
}

async fn current_schema(db: &mut Db) -> Result<String, Error> {
    Ok(match db.dialect() {
        instar_core::Dialect::Postgres => db
            .texts("SELECT current_schema()::text WHERE $1 IS NOT NULL", "1")
            .await?
            .into_iter()
            .next()
            .unwrap_or_else(|| "public".into()),
        instar_core::Dialect::MySql => {
            let v = db
                .texts("SELECT VERSION() FROM DUAL WHERE ? IS NOT NULL", "1")
                .await?;
            if !v.iter().any(|v| v.to_ascii_lowercase().contains("mariadb")) {
                return Err(Error::Unsupported(format!(
                    "serving two versions on MySQL needs MariaDB (this server is {}: its triggers and views would need statements MySQL lacks, CREATE OR REPLACE TRIGGER and anonymous blocks); run this migration plainly with `instar up`",
                    v.first().map_or("unknown", String::as_str)
                )));
            }
            db.texts("SELECT DATABASE() FROM DUAL WHERE ? IS NOT NULL", "1")
                .await?
                .into_iter()
                .next()
                .unwrap_or_default()
        }
        instar_core::Dialect::Sqlite => String::new(),
    })
}

/// Expands the next pending migration (it must be online), or goes on with
/// the one in flight: both versions served once it returns `expanded`.
pub async fn start(
    db: &mut Db,
    source: &Source,
    batch: u64,
    opts: &RunOptions,
    sink: &mut dyn EventSink,
) -> Result<Started, Error> {
    lock(db, opts, sink).await?;
    let r = start_locked(db, source, batch, opts, sink).await;
    unlock_after(db, r).await
}

async fn start_locked(
    db: &mut Db,
    source: &Source,
    batch: u64,
    opts: &RunOptions,
    sink: &mut dyn EventSink,
) -> Result<Started, Error> {
    db.ensure_history().await?;
    db.ensure_compiled_table().await?;
    let mut lossy = Vec::new();
    let (flight, x) = match db.in_flight_full().await? {
        Some(f) => f,
        None => {
            let (m, x, cat) = expansion_of_next(db, source, &opts.collections).await?;
            // Kept for a later `down`; where the plain run cannot express an op
            // (MySQL casts by itself), the migration stays without one.
            let compiled = match compile_with(db, m, cat, &opts.collections) {
                Ok(c) => c,
                Err(_) if db.dialect() == instar_core::Dialect::MySql => super::Compiled {
                    up: String::new(),
                    down: None,
                    transaction: false,
                    summaries: Vec::new(),
                },
                Err(e) => return Err(e),
            };
            // Checked on real rows before anything changes.
            for p in &x.round_trips {
                let rows = db.probe(p).await?;
                if rows.is_empty() {
                    continue;
                }
                let examples = examples(&rows);
                if !p.lossy {
                    return Err(Error::Unsupported(format!(
                        "{} does not hold for some rows, so going back down would change them ({examples}); fix the up/down expressions, or declare lossy = true on the op if that is meant",
                        p.what
                    )));
                }
                lossy.push(format!("{} ({examples})", p.what));
            }
            // A rollback killed after its record went may have left checkpoints.
            for (i, fill) in x.fills.iter().enumerate() {
                crate::data::forget_backfill(db, &fill_name(m.version.as_str(), i, &fill.table))
                    .await?;
            }
            db.keep_compile(m.version.as_str(), &compiled).await?;
            db.keep_expansion(m.version.as_str(), &x).await?;
            let f = db.in_flight_full().await?.expect("just kept");
            f
        }
    };
    if flight.phase == "completing" || flight.phase == "rolling_back" {
        return Err(Error::Unsupported(format!(
            "online migration {} is {} (that stopped half way); run `instar {}` again to finish it",
            flight.version,
            flight.phase.replace('_', " "),
            if flight.phase == "completing" {
                "complete"
            } else {
                "rollback"
            }
        )));
    }
    let version = flight.version.clone();
    let mut expand_ms = 0;
    if flight.phase == "expanding" {
        // The version views come with the expansion: new-version clients may
        // write during the backfill (which fills only rows nobody wrote since).
        let mut stmts = x.expand.clone();
        stmts.extend(x.views.iter().cloned());
        stmts.push(phase_sql(db, &version, "backfilling"));
        let t0 = Instant::now();
        db.run_all(&stmts, "expanding", sink).await?;
        expand_ms = t0.elapsed().as_millis() as u64;
    }
    if flight.phase == "expanding" || flight.phase == "backfilling" {
        for s in &x.expand_outside {
            db.run_patient(std::slice::from_ref(s), "building an index")
                .await?;
        }
        for (i, f) in x.fills.iter().enumerate() {
            let name = fill_name(&version, i, &f.table);
            let b = crate::data::Backfill {
                name: &name,
                table: &f.table,
                key: f.key.clone(),
                statement: &f.statement,
                batch_size: batch.max(1),
            };
            if !crate::data::backfill(db, &b, opts, sink).await? {
                let in_flight = db.in_flight().await?.expect("in flight");
                return Ok(Started {
                    in_flight,
                    expanded: false,
                    lossy,
                    expand_ms,
                });
            }
        }
        db.run_all(
            &[phase_sql(db, &version, "expanded")],
            "recording the phase",
            sink,
        )
        .await?;
    }
    let in_flight = db.in_flight().await?.expect("in flight");
    sink.event(&Event::OpCompiled {
        version: version.clone(),
        op: 0,
        line: 0,
        summary: format!(
            "served at versions {} and {}",
            in_flight.old_version, version
        ),
    });
    Ok(Started {
        in_flight,
        expanded: true,
        lossy,
        expand_ms,
    })
}

/// The next pending migration (an online one), its expansion, and the
/// catalog it was made against.
async fn expansion_of_next<'s>(
    db: &mut Db,
    source: &'s Source,
    collections: &Collections,
) -> Result<(&'s Migration, Expansion, Catalog), Error> {
    let state = derive(&db.read_history().await?);
    let (index, m) = next_pending(db, source, &state)?;
    let old_version = index.checked_sub(1).map_or_else(
        || "base".to_string(),
        |i| source.migrations[i].version.to_string(),
    );
    let mut cat = db.online_catalog(&m.meta.ops).await?;
    let base = current_schema(db).await?;
    if db.dialect() == instar_core::Dialect::MySql {
        let own = db.table_name.clone();
        cat.all_tables = db
            .texts(
                "SELECT CAST(table_name AS CHAR) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' AND ? IS NOT NULL ORDER BY table_name",
                "1",
            )
            .await?
            .into_iter()
            .filter(|t| !t.starts_with("instar_") && *t != own)
            .collect();
    }
    let ops = super::ops_of(db, m, &cat, collections)?;
    let x = expansion(
        db.engine,
        db.dialect(),
        &ops,
        &cat,
        &old_version,
        m.version.as_str(),
        &base,
    )
    .map_err(|why| {
        Error::Unsupported(format!(
            "online migration {} cannot be served at two versions: {why}",
            m.version
        ))
    })?;
    Ok((m, x, cat))
}

/// What `start` would run for the next pending migration (or the one in
/// flight), and after it `complete` and `rollback`; changes nothing.
pub async fn preview(
    db: &mut Db,
    source: &Source,
    collections: &Collections,
) -> Result<Expansion, Error> {
    if let Some((_, x)) = db.in_flight_full().await? {
        return Ok(x);
    }
    Ok(expansion_of_next(db, source, collections).await?.1)
}

/// The checkpoints' name of backfill `i` of an expansion.
fn fill_name(version: &str, i: usize, table: &str) -> String {
    format!("online:{version}:{i}:{table}")
}

fn phase_sql(db: &Db, version: &str, phase: &str) -> String {
    format!(
        "UPDATE {} SET phase = '{phase}' WHERE version = '{}'",
        db.sibling_table(COMPILED),
        version.replace('\'', "''")
    )
}

fn examples(rows: &[Vec<String>]) -> String {
    rows.iter()
        .map(|r| {
            format!(
                "key {}: {} becomes {}",
                r.first().map_or("", String::as_str),
                r.get(1).map_or("", String::as_str),
                r.get(2).map_or("", String::as_str)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Contracts the migration in flight to its new version and records it as
/// applied; refused while clients of the old version are connected (where
/// the engine can tell) unless `force`.
pub async fn complete(
    db: &mut Db,
    source: &Source,
    force: bool,
    opts: &RunOptions,
    sink: &mut dyn EventSink,
) -> Result<Completed, Error> {
    lock(db, opts, sink).await?;
    let r = complete_locked(db, source, force, sink).await;
    unlock_after(db, r).await
}

async fn complete_locked(
    db: &mut Db,
    source: &Source,
    force: bool,
    sink: &mut dyn EventSink,
) -> Result<Completed, Error> {
    let (f, x) = in_flight_for(db, "rolling_back", "rollback").await?;
    // A complete that stopped half way (where DDL commits by itself) goes on:
    // its statements are idempotent, and the checks ran before it began.
    let resuming = f.phase == "completing";
    if f.phase != "expanded" && !resuming {
        return Err(Error::Unsupported(format!(
            "online migration {} is still {} (its start was interrupted); run `instar start` to finish it, or `instar rollback`",
            f.version, f.phase
        )));
    }
    if !force && !resuming {
        let clients = old_clients(db, &f).await?;
        if !clients.is_empty() {
            return Err(Error::Unsupported(format!(
                "clients of version {} are still connected ({}); stop or upgrade them, then complete again (or --force)",
                f.old_version,
                clients.join(", ")
            )));
        }
    }
    for p in x.in_sync.iter().filter(|_| !resuming) {
        let rows = db.probe(p).await?;
        if !rows.is_empty() && !p.lossy {
            return Err(Error::Unsupported(format!(
                "{} disagree for some rows ({}); nothing was contracted. `instar start` again re-runs the backfill",
                p.what,
                examples(&rows)
            )));
        }
    }
    let m = source
        .migrations
        .iter()
        .find(|m| m.version.as_str() == f.version)
        .ok_or_else(|| Error::Unsupported(format!("online migration {} is in flight but its folder is gone; restore it, or `instar rollback`", f.version)))?;
    let t0 = Instant::now();
    let tx = db.engine.transactional_ddl();
    if !tx && !resuming {
        db.run_all(
            &[phase_sql(db, &f.version, "completing")],
            "recording the phase",
            sink,
        )
        .await?;
    }
    let locks = ShortLocks::of(db);
    locks.set(db.engine, &mut db.conn).await?;
    let mut attempt = 0;
    let r = loop {
        match contract(db, m, &f, &x.contract, resuming || attempt > 0, t0).await {
            Err(e) if ShortLocks::is_wait_error(db.engine, &e) => {
                attempt += 1;
                let what = format!("completing {}", f.version);
                if let Err(why) = locks
                    .after_wait(db.engine, &mut db.conn, &what, attempt, sink)
                    .await
                {
                    break Err(Error::Unsupported(format!("{what} failed: {why}")));
                }
            }
            r => break r,
        }
    };
    let reset = ShortLocks::reset(db.engine, &mut db.conn).await;
    r?;
    reset?;
    Ok(Completed {
        completed: f,
        contract_ms: t0.elapsed().as_millis() as u64,
    })
}

/// Removes the new version of the migration in flight; the old one stays as
/// it was, with every write made through either version.
pub async fn rollback(
    db: &mut Db,
    opts: &RunOptions,
    sink: &mut dyn EventSink,
) -> Result<InFlight, Error> {
    lock(db, opts, sink).await?;
    let r = rollback_locked(db, sink).await;
    unlock_after(db, r).await
}

async fn rollback_locked(db: &mut Db, sink: &mut dyn EventSink) -> Result<InFlight, Error> {
    let (f, x) = in_flight_for(db, "completing", "complete").await?;
    if !db.engine.transactional_ddl() {
        db.run_all(
            &[phase_sql(db, &f.version, "rolling_back")],
            "recording the phase",
            sink,
        )
        .await?;
    }
    // Where DDL is transactional, an expansion still `expanding` never
    // committed: there is nothing to undo, only the record.
    let applied_nothing = f.phase == "expanding" && db.engine.transactional_ddl();
    let mut stmts = if applied_nothing {
        Vec::new()
    } else {
        x.rollback.clone()
    };
    stmts.push(format!(
        "DELETE FROM {} WHERE version = '{}'",
        db.sibling_table(COMPILED),
        f.version.replace('\'', "''")
    ));
    db.run_all(&stmts, "rolling back", sink).await?;
    for (i, fill) in x.fills.iter().enumerate() {
        crate::data::forget_backfill(db, &fill_name(&f.version, i, &fill.table)).await?;
    }
    Ok(f)
}

/// Clients of the old version the engine can see: PostgreSQL sessions whose
/// `application_name` names its schema, MariaDB sessions using its database of views.
async fn old_clients(db: &mut Db, f: &InFlight) -> Result<Vec<String>, Error> {
    let sql = match db.dialect() {
        instar_core::Dialect::Postgres => "SELECT application_name FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name LIKE '%' || ? || '%'",
        // Sessions using the old version's database of views.
        instar_core::Dialect::MySql => "SELECT CONCAT(user, '@', host) FROM information_schema.processlist WHERE db = ? AND id <> CONNECTION_ID()",
        instar_core::Dialect::Sqlite => return Ok(Vec::new()),
    };
    let sql = if db.dialect() == instar_core::Dialect::Postgres {
        sql.replace('?', "$1")
    } else {
        sql.to_string()
    };
    db.texts(&sql, &f.old_schema).await
}

/// The migration in flight, unless none is, or the other command (`other`,
/// whose interrupted phase is `phase`) stopped half way and must finish first.
async fn in_flight_for(
    db: &mut Db,
    phase: &str,
    other: &str,
) -> Result<(InFlight, Expansion), Error> {
    let Some((f, x)) = db.in_flight_full().await? else {
        return Err(Error::Unsupported(
            "no online migration is in flight; `instar start` begins one".into(),
        ));
    };
    if f.phase == phase {
        return Err(Error::Unsupported(format!(
            "online migration {} was in `instar {other}` when that stopped; run `instar {other}` again to finish it",
            f.version
        )));
    }
    Ok((f, x))
}

/// Takes the run lock.
async fn lock(db: &mut Db, opts: &RunOptions, sink: &mut dyn EventSink) -> Result<(), Error> {
    let label = db
        .url
        .sqlite_path
        .as_ref()
        .map_or_else(|| db.dialect().to_string(), |p| p.display().to_string());
    db.lock(opts.lock_timeout, || {
        sink.event(&Event::LockWaiting {
            lock: label.clone(),
        })
    })
    .await?;
    Ok(())
}

/// Releases the run lock after `r`.
async fn unlock_after<T>(db: &mut Db, r: Result<T, Error>) -> Result<T, Error> {
    let unlocked = db.unlock().await;
    let r = r?;
    unlocked?;
    Ok(r)
}

/// One attempt at the contract: its statements, the history row (unless an
/// earlier attempt that stopped half way wrote it) and the cleared record,
/// in one transaction where DDL is transactional.
async fn contract(
    db: &mut Db,
    m: &instar_core::Migration,
    f: &InFlight,
    stmts: &[String],
    again: bool,
    t0: Instant,
) -> Result<(), Error> {
    // Cleared last: a complete killed after its history row (where DDL commits
    // by itself) is still in flight, and the next one finds the row written.
    let clear = format!(
        "UPDATE {} SET phase = NULL, expansion = NULL WHERE version = '{}'",
        db.sibling_table(COMPILED),
        f.version.replace('\'', "''")
    );
    let recorded = again && {
        let state = derive(&db.read_history().await?);
        state.applied_of(&f.version).is_some()
    };
    let tx = db.engine.transactional_ddl();
    if tx {
        control(&mut db.conn, db.engine.begin()).await?;
    }
    let ran = async {
        for s in stmts {
            exec(&mut db.conn, s).await.map_err(|e| {
                Error::query(
                    format!(
                        "completing {} failed at `{}`",
                        f.version,
                        crate::runner::short_statement(s)
                    ),
                    e,
                )
            })?;
        }
        if !recorded {
            let mut row = crate::runner::new_row(m, EventKind::Apply, Direction::Up);
            row.finished_at = Some(instar_core::time::now_rfc3339());
            row.duration_ms = Some(t0.elapsed().as_millis() as i64);
            row.statements_applied = stmts.len() as i64;
            row.statements_total = stmts.len() as i64;
            row.note = Some(format!("online: expanded at {}, completed", f.started_at));
            let (h, conn) = db.parts();
            h.insert(conn, &row).await?;
        }
        exec(&mut db.conn, &clear)
            .await
            .map_err(|e| Error::query("recording the online migration complete", e))?;
        Ok::<(), Error>(())
    }
    .await;
    match ran {
        Ok(()) if tx => control(&mut db.conn, "COMMIT").await,
        Ok(()) => Ok(()),
        Err(e) => {
            if tx {
                let _ = exec(&mut db.conn, "ROLLBACK").await;
            }
            Err(e)
        }
    }
}
