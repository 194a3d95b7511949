//! Instar's data tables (`instar_checkpoints`, `instar_errors`), the checks
//! before a run, and the start, resume and finish of a run's checkpoints.
//!
//! A run has one checkpoint row per slice of its key range (one slice unless
//! `--parallel` split it); each slice's row advances with its batches.

use instar_core::history::{Direction, EventKind};
use instar_core::meta::DataConfig;
use instar_core::plan::Step;
use instar_core::{time, Migration};
use serde::Serialize;
use serde_json::Value;

use super::keys::{bind_key, fetch_key, key_json, Shape};
use crate::engine::{marks, table_ddl, Col};
use crate::error::db_message;
use crate::{Db, Error};

const CHECKPOINT_COLUMNS: &[(&str, Col, bool)] = &[
    ("version", Col::Short, true),
    ("direction", Col::Short, true),
    ("slice", Col::Int, true),
    ("checksum", Col::Short, false),
    ("lower_key", Col::Long, false),
    ("last_key", Col::Long, false),
    ("upper_key", Col::Long, false),
    ("rows_total", Col::Int, true),
    ("rows_done", Col::Int, true),
    ("batches", Col::Int, true),
    ("errors", Col::Int, true),
    ("elapsed_ms", Col::Int, true),
    ("updated_at", Col::Short, true),
];

const SELECT: &str = "version, direction, slice, checksum, lower_key, last_key, upper_key, rows_total, rows_done, batches, errors, elapsed_ms";

const ERROR_COLUMNS: &[(&str, Col, bool)] = &[
    ("version", Col::Short, true),
    ("row_key", Col::Long, true),
    ("error", Col::Long, true),
    ("at", Col::Short, true),
];

/// Where one slice of a data migration stands: its checkpoint row.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Checkpoint {
    /// Version text.
    pub version: String,
    /// Direction of the run.
    pub direction: String,
    /// The slice of the key range (0 unless the run was split with `--parallel`).
    pub slice: i64,
    /// Checksum of the script when the run began.
    pub checksum: Option<String>,
    /// The slice's exclusive lower bound (JSON array); none for the first slice.
    pub lower_key: Option<String>,
    /// The last key done (JSON array), or none before the slice's first batch.
    pub last_key: Option<String>,
    /// The slice's inclusive upper bound (JSON array); none for an empty table.
    pub upper_key: Option<String>,
    /// Rows in the slice.
    pub rows_total: i64,
    /// Rows done.
    pub rows_done: i64,
    /// Batches done.
    pub batches: i64,
    /// Rows skipped with an error (`on_error = "skip"`).
    pub errors: i64,
    /// Time spent so far, over all runs.
    pub elapsed_ms: i64,
}

/// The qualified names of Instar's data tables.
pub(super) struct Names {
    pub(super) checkpoints: String,
    pub(super) errors: String,
}

pub(super) fn names(db: &Db) -> Names {
    Names {
        checkpoints: db.sibling_table("instar_checkpoints"),
        errors: db.sibling_table("instar_errors"),
    }
}

/// Creates the checkpoint and error tables if missing.
pub(super) async fn ensure_tables(db: &mut Db, n: &Names) -> Result<(), Error> {
    for (table, cols) in [
        (&n.checkpoints, CHECKPOINT_COLUMNS),
        (&n.errors, ERROR_COLUMNS),
    ] {
        for ddl in table_ddl(db.engine, table, db.schema(), cols) {
            crate::conn::exec(&mut db.conn, &ddl)
                .await
                .map_err(|e| Error::query("creating Instar's data tables", e))?;
        }
    }
    Ok(())
}

/// The rows of `sql` over Instar's table `table` as JSON values; empty when the
/// table does not exist (no data migration ever ran). Any other failure is reported.
async fn read_rows(
    db: &mut Db,
    table: &str,
    sql: &str,
    binds: &[&str],
) -> Result<Vec<Vec<Value>>, Error> {
    if !db.table_exists(table).await? {
        return Ok(Vec::new());
    }
    let texts = binds.iter().map(|b| b.to_string()).collect();
    let rows = crate::conn::query(sql)
        .bind_texts(texts)
        .fetch_all(&mut db.conn)
        .await
        .map_err(|e| Error::query(format!("reading {table}"), e))?;
    rows.iter().map(crate::db::row_values).collect()
}

/// Every checkpoint of an unfinished data migration; empty when there is none.
pub async fn checkpoints(db: &mut Db) -> Result<Vec<Checkpoint>, Error> {
    let n = names(db);
    let sql = format!(
        "SELECT {SELECT} FROM {} ORDER BY version, slice",
        n.checkpoints
    );
    let rows = read_rows(db, "instar_checkpoints", &sql, &[]).await?;
    rows.into_iter().map(decode).collect()
}

/// Rows recorded in `instar_errors` (skipped with `on_error = "skip"`), per version.
pub async fn skipped_rows(db: &mut Db) -> Result<Vec<(String, i64)>, Error> {
    let n = names(db);
    let sql = format!(
        "SELECT version, count(*) FROM {} GROUP BY version ORDER BY version",
        n.errors
    );
    let rows = read_rows(db, "instar_errors", &sql, &[]).await?;
    rows.into_iter()
        .map(|r| {
            let bad = || Error::Query {
                context: "counting skipped rows".into(),
                message: format!("unexpected row {r:?}"),
                code: None,
            };
            Ok((
                r.first()
                    .and_then(Value::as_str)
                    .ok_or_else(bad)?
                    .to_string(),
                r.get(1).and_then(Value::as_i64).ok_or_else(bad)?,
            ))
        })
        .collect()
}

/// A checkpoint row from its values, in [`SELECT`] order.
fn decode(r: Vec<Value>) -> Result<Checkpoint, Error> {
    let bad = |c: &str| Error::Query {
        context: "reading a checkpoint".into(),
        message: format!(
            "instar_checkpoints.{c} has an unexpected value; was the row changed by hand?"
        ),
        code: None,
    };
    let cols: Vec<&str> = SELECT.split(", ").collect();
    let s = |i: usize| match r.get(i) {
        Some(Value::String(t)) => Ok(Some(t.clone())),
        None | Some(Value::Null) => Ok(None),
        Some(_) => Err(bad(cols[i])),
    };
    let n = |i: usize| r.get(i).and_then(Value::as_i64).ok_or_else(|| bad(cols[i]));
    Ok(Checkpoint {
        version: s(0)?.ok_or_else(|| bad("version"))?,
        direction: s(1)?.ok_or_else(|| bad("direction"))?,
        slice: n(2)?,
        checksum: s(3)?,
        lower_key: s(4)?,
        last_key: s(5)?,
        upper_key: s(6)?,
        rows_total: n(7)?,
        rows_done: n(8)?,
        batches: n(9)?,
        errors: n(10)?,
        elapsed_ms: n(11)?,
    })
}

/// The rows of `select` over the checkpoints of `step`'s run.
async fn run_rows(
    db: &mut Db,
    step: &Step,
    n: &Names,
    select: &str,
    order: &str,
) -> Result<Vec<Vec<Value>>, Error> {
    let sql = marks(
        db.engine,
        &format!(
            "SELECT {select} FROM {} WHERE version = ? AND direction = ?{order}",
            n.checkpoints
        ),
    );
    read_rows(
        db,
        "instar_checkpoints",
        &sql,
        &[&step.version, step.direction.as_str()],
    )
    .await
}

/// Whether the run of `step` still has checkpoints (its owner has not recorded it).
pub(super) async fn in_progress(db: &mut Db, step: &Step, n: &Names) -> Result<bool, Error> {
    let rows = run_rows(db, step, n, "count(*)", "").await?;
    Ok(rows
        .first()
        .and_then(|r| r.first())
        .and_then(Value::as_i64)
        .unwrap_or(0)
        > 0)
}

/// The checkpoints of a run being resumed; refuses when the script changed since it began.
pub(super) async fn resume(
    db: &mut Db,
    m: &Migration,
    step: &Step,
    n: &Names,
) -> Result<Vec<Checkpoint>, Error> {
    let rows = run_rows(db, step, n, SELECT, " ORDER BY slice").await?;
    let cps: Vec<Checkpoint> = rows.into_iter().map(decode).collect::<Result<_, _>>()?;
    if cps.is_empty() {
        return Err(Error::DataHalted {
            version: step.version.clone(),
            reason: "it is marked in progress but has no checkpoint; run `instar repair` to start it over".into(),
        });
    }
    if let Some(gap) = coverage_gap(&cps) {
        return Err(Error::DataHalted {
            version: step.version.clone(),
            reason: format!("its checkpoints do not cover the whole key range ({gap}), so resuming could leave rows never walked; run `instar repair` to start it over"),
        });
    }
    if step.direction == Direction::Up
        && cps
            .iter()
            .any(|c| c.checksum.as_deref() != Some(m.checksum.as_str()))
    {
        return Err(Error::DataHalted {
            version: step.version.clone(),
            reason: format!(
                "its script changed since the run began ({} rows done with the old one); undo the edit to resume, or `instar repair` to start over",
                cps.iter().map(|c| c.rows_done).sum::<i64>()
            ),
        });
    }
    Ok(cps)
}

/// Why a run's slices (ordered by slice number) do not tile one key range: the
/// first starts at the beginning, each next one where the previous one ends.
fn coverage_gap(cps: &[Checkpoint]) -> Option<String> {
    let mut previous_upper: Option<&Option<String>> = None;
    for (i, c) in cps.iter().enumerate() {
        if c.slice != i as i64 {
            return Some(format!("slice {i} is missing"));
        }
        match previous_upper {
            None if c.lower_key.is_some() => {
                return Some("the first slice does not start at the beginning".into())
            }
            Some(up) if up.is_none() || *up != c.lower_key => {
                return Some(format!(
                    "slice {i} does not start where slice {} ends",
                    i - 1
                ))
            }
            _ => {}
        }
        previous_upper = Some(&c.upper_key);
    }
    None
}

/// Refuses a table the run cannot walk (unreadable key, NULL or duplicate keys,
/// a false `checks.before`), then fixes the key range: the largest key now and
/// how many rows lie at or below it.
pub(super) async fn preflight(
    db: &mut Db,
    m: &Migration,
    step: &Step,
    cfg: &DataConfig,
    s: &Shape<'_>,
) -> Result<(Option<Vec<Value>>, i64), Error> {
    let refuse = |reason: String| Error::DataRefused {
        version: step.version.clone(),
        reason,
    };
    let probe = format!("SELECT {} FROM {} WHERE 1 = 0", s.list(), s.table);
    if let Err(e) = crate::conn::query(&probe)
        .fetch_optional(&mut db.conn)
        .await
    {
        return Err(refuse(format!(
            "table {} with key {} cannot be read: {}",
            cfg.table,
            cfg.key.columns().join(", "),
            db_message(&e)
        )));
    }
    // SQLite reads an unknown double-quoted column as a string literal: the
    // probe cannot tell, so each key column is looked up by name.
    for column in cfg.key.columns() {
        let effect = instar_core::effect::Effect::Column {
            table: cfg.table.clone(),
            column: column.clone(),
            exists: true,
        };
        let (sql, binds) = db.engine.effect_sql(&effect);
        let found = crate::conn::query(&sql)
            .bind_texts(binds)
            .fetch_optional(&mut db.conn)
            .await
            .map_err(|e| Error::query("looking up the key column", e))?;
        if found.is_none() {
            return Err(refuse(format!(
                "table {} has no column {column:?} (the [data] key)",
                cfg.table
            )));
        }
    }
    let nulls = s
        .cols
        .iter()
        .map(|c| format!("{c} IS NULL"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let probe_nulls = format!("SELECT {} FROM {} WHERE {nulls} LIMIT 1", s.list(), s.table);
    if fetch_key(&mut db.conn, &probe_nulls, &[], s.cols.len())
        .await?
        .is_some()
    {
        return Err(refuse(format!(
            "key ({}) of {} has NULL values; batches need a unique, non-NULL key",
            cfg.key.columns().join(", "),
            cfg.table
        )));
    }
    let dup = format!(
        "SELECT {} FROM {} GROUP BY {} HAVING count(*) > 1 LIMIT 1",
        s.list(),
        s.table,
        s.plain()
    );
    // A primary key or unique index on exactly the key columns makes the
    // duplicate scan (a pass over the whole table) unnecessary.
    let declared_unique = key_is_declared_unique(db, &cfg.table, &cfg.key.columns()).await?;
    let duplicate = if declared_unique {
        None
    } else {
        fetch_key(&mut db.conn, &dup, &[], s.cols.len()).await?
    };
    if let Some(k) = duplicate {
        return Err(refuse(format!(
            "key ({}) is not unique in {}: {} appears more than once; batches need a unique key",
            cfg.key.columns().join(", "),
            cfg.table,
            key_json(&k)
        )));
    }
    if step.direction == Direction::Up {
        for check in &m.meta.checks.before {
            let (ok, result) = Db::check(&mut db.conn, check).await.map_err(|e| {
                refuse(format!("check before {check:?} failed: {}", db_message(&e)))
            })?;
            if !ok {
                return Err(refuse(format!("check before {check:?} returned {result}")));
            }
        }
    }
    let upper_sql = format!(
        "SELECT {} FROM {} ORDER BY {} LIMIT 1",
        s.list(),
        s.table,
        s.order(true)
    );
    let upper = fetch_key(&mut db.conn, &upper_sql, &[], s.cols.len()).await?;
    let total = match &upper {
        Some(u) => match estimated_rows(db, cfg).await? {
            Some(n) if n >= LARGE_TABLE && !cfg.exact_count => n,
            _ => {
                let mut k = 0;
                let sql = format!(
                    "SELECT count(*) FROM {} WHERE {} <= {}",
                    s.table,
                    s.tuple(),
                    s.marks(&mut k)
                );
                bind_key(crate::conn::query(&sql), u)?
                    .fetch_one(&mut db.conn)
                    .await
                    .and_then(|r| r.try_get::<i64>(0))
                    .map_err(|e| Error::query("counting the rows to migrate", e))?
            }
        },
        None => 0,
    };
    Ok((upper, total))
}

/// From this many rows (by the engine's statistics) a table is not counted
/// before and after a data migration, unless `[data] exact_count` asks.
pub const LARGE_TABLE: i64 = 1_000_000;

/// The engine's estimate of the rows in the migration's table, where it keeps one.
pub async fn estimated_rows(db: &mut Db, cfg: &DataConfig) -> Result<Option<i64>, Error> {
    let Some((sql, binds)) = db.engine.row_estimate_sql(&cfg.table) else {
        return Ok(None);
    };
    let row = crate::conn::query(&sql)
        .bind_texts(binds)
        .fetch_optional(&mut db.conn)
        .await
        .map_err(|e| Error::query("reading the table's statistics", e))?;
    let n = match row {
        Some(r) => r
            .try_get::<Option<i64>>(0)
            .map_err(|e| Error::query("reading the table's statistics", e))?,
        None => None,
    };
    Ok(n.filter(|n| *n >= 0))
}

/// Whether a primary key or unique index of `table` covers exactly `columns`
/// (in any order): then a data migration skips its scan for duplicate keys.
pub async fn key_is_declared_unique(
    db: &mut Db,
    table: &str,
    columns: &[String],
) -> Result<bool, Error> {
    let mut cols = columns.to_vec();
    cols.sort();
    let (sql, binds) = db.engine.unique_index_sql(table, &cols.join(","));
    let q = crate::conn::query(&sql).bind_texts(binds);
    Ok(q.fetch_optional(&mut db.conn)
        .await
        .map_err(|e| Error::query("looking for a unique index on the key", e))?
        .is_some())
}

/// One slice of a key range: exclusive lower bound, inclusive upper bound, rows.
type Range = (Option<Vec<Value>>, Vec<Value>, i64);

/// Splits `(start, upper]` into `slices` ranges of about equal row counts:
/// the keys at row offsets total·i/slices. Returns (lower, upper, rows) per slice.
async fn split(
    db: &mut Db,
    s: &Shape<'_>,
    upper: &[Value],
    total: i64,
    slices: usize,
) -> Result<Vec<Range>, Error> {
    let mut bounds: Vec<(Vec<Value>, i64)> = Vec::new();
    for i in 1..slices as i64 {
        let offset = total * i / slices as i64;
        if offset == 0 || bounds.last().is_some_and(|b| b.1 == offset) {
            continue;
        }
        let sql = s.key_at(false, offset as u64 - 1);
        if let Some(key) = fetch_key(&mut db.conn, &sql, &[upper], s.cols.len()).await? {
            bounds.push((key, offset));
        }
    }
    let mut out = Vec::new();
    let (mut lower, mut done) = (None, 0);
    for (key, offset) in bounds {
        out.push((lower, key.clone(), offset - done));
        lower = Some(key);
        done = offset;
    }
    out.push((lower, upper.to_vec(), total - done));
    Ok(out)
}

/// Checks the table, fixes the key range (split into `slices`), writes the
/// start row and one checkpoint row per slice. Returns the start row's id.
pub(super) async fn begin(
    db: &mut Db,
    m: &Migration,
    step: &Step,
    cfg: &DataConfig,
    s: &Shape<'_>,
    n: &Names,
    (slices, record, sink): (usize, super::Record, &mut dyn instar_core::event::EventSink),
) -> Result<(i64, Vec<Checkpoint>), Error> {
    let (upper, total) = preflight(db, m, step, cfg, s).await?;
    let ranges = match &upper {
        Some(u) => split(db, s, u, total, slices.max(1)).await?,
        None => Vec::new(),
    };
    // Instar's data tables only once the migration has passed every check.
    ensure_tables(db, n).await?;
    let mut row = crate::runner::new_row(m, EventKind::Start, step.direction);
    row.statements_total = 1;
    row.kind = kind_of(m).into();
    let empty = [(None, Vec::new(), 0)];
    let ranges: &[Range] = if ranges.is_empty() { &empty } else { &ranges };
    let cps: Vec<Checkpoint> = ranges
        .iter()
        .enumerate()
        .map(|(i, (lower, up, rows))| Checkpoint {
            version: step.version.clone(),
            direction: step.direction.as_str().into(),
            slice: i as i64,
            checksum: Some(m.checksum.clone()),
            lower_key: lower.as_deref().map(key_json),
            last_key: None,
            upper_key: (!up.is_empty()).then(|| key_json(up)),
            rows_total: *rows,
            rows_done: 0,
            batches: 0,
            errors: 0,
            elapsed_ms: 0,
        })
        .collect();
    // The start row, the removal of a run's stale checkpoints (after `instar
    // repair`) and every slice's checkpoint commit together: a crash between
    // them would leave key ranges no resume ever walks.
    let what = format!("the start of data migration {}", step.version);
    let mut attempt = 0;
    let row_id = loop {
        attempt += 1;
        crate::db::control(&mut db.conn, db.engine.begin()).await?;
        let written = async {
            let row_id = match record {
                super::Record::History => {
                    let (h, conn) = db.parts();
                    h.insert(conn, &row).await?
                }
                super::Record::CheckpointsOnly => 0,
            };
            let stale = delete_sql(db, n);
            crate::conn::query(&stale)
                .bind(step.version.clone())
                .bind(step.direction.as_str())
                .execute(&mut db.conn)
                .await
                .map_err(|e| Error::query("clearing a stale checkpoint", e))?;
            for cp in &cps {
                insert(db, n, cp).await?;
            }
            Ok::<i64, Error>(row_id)
        }
        .await;
        let r = crate::retry::end(db, written).await;
        match crate::retry::again(&r, attempt, &what, sink) {
            Some(pause) => tokio::time::sleep(pause).await,
            None => break r?,
        }
    };
    Ok((row_id, cps))
}

async fn insert(db: &mut Db, n: &Names, cp: &Checkpoint) -> Result<(), Error> {
    let sql = marks(
        db.engine,
        &format!(
            "INSERT INTO {} (version, direction, slice, checksum, lower_key, last_key, upper_key, rows_total, rows_done, batches, errors, elapsed_ms, updated_at) VALUES (?, ?, ?, ?, ?, NULL, ?, ?, 0, 0, 0, 0, ?)",
            n.checkpoints
        ),
    );
    crate::conn::query(&sql)
        .bind(cp.version.clone())
        .bind(cp.direction.clone())
        .bind(cp.slice)
        .bind(cp.checksum.clone())
        .bind(cp.lower_key.clone())
        .bind(cp.upper_key.clone())
        .bind(cp.rows_total)
        .bind(time::now_rfc3339())
        .execute(&mut db.conn)
        .await
        .map(|_| ())
        .map_err(|e| Error::query("writing the checkpoint", e))
}

/// The UPDATE that moves one slice's checkpoint past a batch (binds: last key,
/// rows, errors, elapsed, now, version, direction, slice).
pub(super) fn advance_sql(db: &Db, n: &Names) -> String {
    marks(
        db.engine,
        &format!(
            "UPDATE {} SET last_key = ?, rows_done = rows_done + ?, batches = batches + 1, errors = errors + ?, elapsed_ms = ?, updated_at = ? WHERE version = ? AND direction = ? AND slice = ?",
            n.checkpoints
        ),
    )
}

/// The DELETE of a run's checkpoints (binds: version, direction).
fn delete_sql(db: &Db, n: &Names) -> String {
    marks(
        db.engine,
        &format!(
            "DELETE FROM {} WHERE version = ? AND direction = ?",
            n.checkpoints
        ),
    )
}

/// Totals of a finished run, over its slices.
pub(super) struct Totals {
    /// The table, quoted.
    pub(super) table: String,
    pub(super) rows_total: i64,
    pub(super) rows_done: i64,
    pub(super) batches: i64,
    pub(super) errors: i64,
    pub(super) elapsed_ms: i64,
    pub(super) slices: usize,
    /// `[data] exact_count`.
    pub(super) exact_count: bool,
}

/// Runs the after-checks, records the apply/revert row and drops the checkpoints,
/// the last two in one transaction.
pub(super) async fn finish(
    db: &mut Db,
    m: &Migration,
    step: &Step,
    n: &Names,
    row_id: i64,
    t: &Totals,
    (record, sink): (super::Record, &mut dyn instar_core::event::EventSink),
) -> Result<(), Error> {
    if step.direction == Direction::Up {
        for check in &m.meta.checks.after {
            let (ok, result) = Db::check(&mut db.conn, check)
                .await
                .map_err(|e| Error::query(format!("check after {check:?}"), e))?;
            if !ok {
                let message = format!("check after {check:?} returned {result}");
                let (h, conn) = db.parts();
                h.progress(conn, row_id, 0, Some(&message), None).await?;
                return Err(Error::DataHalted {
                    version: step.version.clone(),
                    reason: format!("{message} after every batch ran; the data stays as migrated. Fix the data, then `instar up` re-checks"),
                });
            }
        }
    }
    // A large table is not counted a second time: its total was an estimate.
    let exact = t.exact_count || t.rows_total < LARGE_TABLE;
    let rows_after = if exact {
        let count_sql = format!("SELECT count(*) FROM {}", t.table);
        let n: i64 = crate::conn::query(&count_sql)
            .scalar(&mut db.conn)
            .await
            .map_err(|e| Error::query("counting the table's rows", e))?;
        format!("table rows before: {}, after: {n}", t.rows_total)
    } else {
        format!(
            "table rows: about {} rows (from the engine's statistics; `exact_count = true` counts them)",
            t.rows_total
        )
    };
    let event = if step.direction == Direction::Up {
        EventKind::Apply
    } else {
        EventKind::Revert
    };
    let mut row = crate::runner::new_row(m, event, step.direction);
    row.kind = kind_of(m).into();
    row.statement_hashes = m
        .lenses
        .as_ref()
        .map(|l| format!("{}{l}", instar_core::history::LENSES));
    row.finished_at = Some(time::now_rfc3339());
    row.duration_ms = Some(t.elapsed_ms);
    row.statements_applied = 1;
    row.statements_total = 1;
    row.rows_affected = Some(t.rows_done);
    row.note = Some(format!(
        "{} rows in {} batches ({:.0} rows/s); {rows_after}{}{}",
        t.rows_done,
        t.batches,
        t.rows_done as f64 / (t.elapsed_ms.max(1) as f64 / 1000.0),
        if t.slices > 1 {
            format!(" in {} parallel slices", t.slices)
        } else {
            String::new()
        },
        if t.errors > 0 {
            format!(", {} rows skipped (see instar_errors)", t.errors)
        } else {
            String::new()
        }
    ));
    let del = delete_sql(db, n);
    let what = format!("recording data migration {} done", step.version);
    let mut attempt = 0;
    loop {
        attempt += 1;
        crate::db::control(&mut db.conn, db.engine.begin()).await?;
        let written = async {
            let (h, conn) = db.parts();
            if record == super::Record::History {
                h.insert(conn, &row).await?;
            }
            crate::conn::query(&del)
                .bind(step.version.clone())
                .bind(step.direction.as_str())
                .execute(conn)
                .await
                .map_err(|e| Error::query("removing the checkpoint", e))?;
            Ok::<(), Error>(())
        }
        .await;
        let r = crate::retry::end(db, written).await;
        match crate::retry::again(&r, attempt, &what, sink) {
            Some(pause) => tokio::time::sleep(pause).await,
            None => return r,
        }
    }
}

/// The history's kind for a batched migration.
fn kind_of(m: &Migration) -> &'static str {
    match m.meta.kind {
        Some(instar_core::meta::Kind::Documents) => "documents",
        _ => "data",
    }
}
