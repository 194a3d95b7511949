//! Data migrations: one statement applied to a table in keyset batches.
//!
//! The key range is fixed when a run begins (the largest key then is the upper
//! bound), so a table that keeps growing cannot make the run endless; rows
//! inserted during the run are the application's job. Each batch is
//! `key > last AND key <= end` — never OFFSET over the table — and commits in
//! one transaction with its checkpoint row in `instar_checkpoints`, so a killed
//! run resumes after the last committed batch, never redoing or skipping one.

use std::time::{Duration, Instant};

use instar_core::event::{Event, EventSink};
use instar_core::history::{Direction, EventKind};
use instar_core::meta::{DataConfig, OnError, BATCH_PLACEHOLDER};
use instar_core::plan::Step;
use instar_core::{time, Migration};
use serde::Serialize;
use serde_json::Value;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Row};

use crate::engine::{table_ddl, Col, Engine};
use crate::error::db_message;
use crate::{Db, Error};

const CHECKPOINT_COLUMNS: &[(&str, Col, bool)] = &[
    ("version", Col::Short, true),
    ("direction", Col::Short, true),
    ("checksum", Col::Short, false),
    ("last_key", Col::Long, false),
    ("upper_key", Col::Long, false),
    ("rows_total", Col::Int, true),
    ("rows_done", Col::Int, true),
    ("batches", Col::Int, true),
    ("errors", Col::Int, true),
    ("elapsed_ms", Col::Int, true),
    ("updated_at", Col::Short, true),
];

const ERROR_COLUMNS: &[(&str, Col, bool)] = &[
    ("version", Col::Short, true),
    ("row_key", Col::Long, true),
    ("error", Col::Long, true),
    ("at", Col::Short, true),
];

/// Where a data migration stands: its checkpoint row.
#[derive(Debug, Clone, Serialize)]
pub struct Checkpoint {
    /// Version text.
    pub version: String,
    /// Direction of the run.
    pub direction: String,
    /// Checksum of the script when the run began.
    pub checksum: Option<String>,
    /// The last key done (JSON array), or none before the first batch.
    pub last_key: Option<String>,
    /// The largest key when the run began (JSON array); none for an empty table.
    pub upper_key: Option<String>,
    /// Rows in the key range.
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

/// How a data step ended.
pub(crate) enum Outcome {
    /// Every batch is done and the migration is recorded as applied.
    Done,
    /// The time budget was spent; the run stopped at a checkpoint.
    Paused,
}

struct Names {
    checkpoints: String,
    errors: String,
}

fn names(db: &Db) -> Names {
    Names {
        checkpoints: db.sibling_table("instar_checkpoints"),
        errors: db.sibling_table("instar_errors"),
    }
}

/// Every checkpoint of an unfinished data migration; empty when there is none.
pub async fn checkpoints(db: &mut Db) -> Result<Vec<Checkpoint>, Error> {
    let n = names(db);
    let sql = format!(
        "SELECT version, direction, checksum, last_key, upper_key, rows_total, rows_done, batches, errors, elapsed_ms FROM {} ORDER BY id",
        n.checkpoints
    );
    let Ok(rows) = sqlx::query(&sql).fetch_all(&mut db.conn).await else {
        return Ok(Vec::new());
    };
    rows.iter().map(decode_checkpoint).collect()
}

fn text(r: &AnyRow, c: &str) -> Result<Option<String>, Error> {
    match r.try_get::<Option<String>, _>(c) {
        Ok(v) => Ok(v),
        Err(_) => r
            .try_get::<Option<Vec<u8>>, _>(c)
            .map(|b| b.map(|b| String::from_utf8_lossy(&b).into_owned()))
            .map_err(|e| Error::query("reading a checkpoint", e)),
    }
}

fn decode_checkpoint(r: &AnyRow) -> Result<Checkpoint, Error> {
    let n = |c: &str| {
        r.try_get::<i64, _>(c)
            .map_err(|e| Error::query("reading a checkpoint", e))
    };
    Ok(Checkpoint {
        version: text(r, "version")?.unwrap_or_default(),
        direction: text(r, "direction")?.unwrap_or_default(),
        checksum: text(r, "checksum")?,
        last_key: text(r, "last_key")?,
        upper_key: text(r, "upper_key")?,
        rows_total: n("rows_total")?,
        rows_done: n("rows_done")?,
        batches: n("batches")?,
        errors: n("errors")?,
        elapsed_ms: n("elapsed_ms")?,
    })
}

/// The SQL pieces of one data migration, quoted for its engine.
struct Shape<'a> {
    e: &'static dyn Engine,
    table: String,
    cols: Vec<String>,
    statement: &'a str,
}

impl Shape<'_> {
    fn list(&self) -> String {
        self.cols.join(", ")
    }
    fn tuple(&self) -> String {
        if self.cols.len() == 1 {
            self.cols[0].clone()
        } else {
            format!("({})", self.list())
        }
    }
    /// Placeholders for one key, numbered from `*n`.
    fn marks(&self, n: &mut usize) -> String {
        let v: Vec<String> = (0..self.cols.len())
            .map(|_| {
                *n += 1;
                self.e.placeholder(*n)
            })
            .collect();
        if v.len() == 1 {
            v[0].clone()
        } else {
            format!("({})", v.join(", "))
        }
    }
    fn order(&self, desc: bool) -> String {
        let dir = if desc { " DESC" } else { "" };
        self.cols
            .iter()
            .map(|c| format!("{c}{dir}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
    /// `key > last AND key <= upper` (without the lower bound for the first batch).
    fn range(&self, has_lower: bool, n: &mut usize) -> String {
        let t = self.tuple();
        let lower = if has_lower {
            format!("{t} > {} AND ", self.marks(n))
        } else {
            String::new()
        };
        format!("({lower}{t} <= {})", self.marks(n))
    }
    fn exact(&self, n: &mut usize) -> String {
        format!("({} = {})", self.tuple(), self.marks(n))
    }
}

fn bind_key<'q>(
    mut q: Query<'q, Any, AnyArguments<'q>>,
    key: &[Value],
) -> Query<'q, Any, AnyArguments<'q>> {
    for v in key {
        q = match v {
            Value::Number(n) => q.bind(n.as_i64().unwrap_or_default()),
            Value::String(s) => q.bind(s.clone()),
            other => q.bind(other.to_string()),
        };
    }
    q
}

fn decode_key(r: &AnyRow, n: usize) -> Result<Vec<Value>, Error> {
    (0..n)
        .map(|i| {
            if let Ok(None) = r.try_get::<Option<String>, _>(i) {
                return Ok(Value::Null);
            }
            if let Ok(v) = r.try_get::<i64, _>(i) {
                return Ok(Value::from(v));
            }
            if let Ok(v) = r.try_get::<i32, _>(i) {
                return Ok(Value::from(v));
            }
            if let Ok(v) = r.try_get::<String, _>(i) {
                return Ok(Value::from(v));
            }
            r.try_get::<Vec<u8>, _>(i)
                .map(|b| Value::from(String::from_utf8_lossy(&b).into_owned()))
                .map_err(|e| {
                    Error::Unsupported(format!(
                        "key column {i} is neither an integer nor text: {e}"
                    ))
                })
        })
        .collect()
}

fn key_json(k: &[Value]) -> String {
    Value::from(k.to_vec()).to_string()
}

fn parse_key(s: &str) -> Result<Vec<Value>, Error> {
    serde_json::from_str(s)
        .map_err(|e| Error::Unsupported(format!("corrupt checkpoint key {s:?}: {e}")))
}

async fn fetch_key(
    conn: &mut AnyConnection,
    sql: &str,
    binds: &[&[Value]],
    width: usize,
) -> Result<Option<Vec<Value>>, Error> {
    let mut q = sqlx::query(sql);
    for k in binds {
        q = bind_key(q, k);
    }
    let row = q
        .fetch_optional(conn)
        .await
        .map_err(|e| Error::query("finding the next batch", e))?;
    row.map(|r| decode_key(&r, width)).transpose()
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
}

fn shape<'a>(db: &Db, cfg: &DataConfig, statement: &'a str) -> Shape<'a> {
    Shape {
        e: db.engine,
        table: cfg
            .table
            .split('.')
            .map(|p| db.engine.quote(p))
            .collect::<Vec<_>>()
            .join("."),
        cols: cfg
            .key
            .columns()
            .iter()
            .map(|c| db.engine.quote(c))
            .collect(),
        statement,
    }
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
pub async fn estimate(db: &mut Db, m: &Migration, step: &Step) -> Result<Estimate, Error> {
    let cfg = m.meta.data.as_ref().ok_or_else(|| Error::DataRefused {
        version: step.version.clone(),
        reason: "no [data] table".into(),
    })?;
    let s = shape(db, cfg, statement_of(m, step.direction));
    let (upper, total) = preflight(db, m, step, cfg, &s).await?;
    let Some(upper) = upper else {
        return Ok(Estimate {
            rows_total: 0,
            first_batch_rows: 0,
            batch_ms: 0,
            batches: 0,
            estimated_ms: 0,
        });
    };
    let mut k = 0;
    let find = format!(
        "SELECT {} FROM {} WHERE {} ORDER BY {} LIMIT 1 OFFSET {}",
        s.list(),
        s.table,
        s.range(false, &mut k),
        s.order(false),
        cfg.batch_size - 1
    );
    let end = fetch_key(&mut db.conn, &find, &[upper.as_slice()], s.cols.len())
        .await?
        .unwrap_or_else(|| upper.clone());
    let mut k = 0;
    let stmt = s
        .statement
        .replace(BATCH_PLACEHOLDER, &s.range(false, &mut k));
    let begin = begin_sql(db);
    control(&mut db.conn, begin).await?;
    let t = Instant::now();
    let r = bind_key(sqlx::query(&stmt), &end)
        .execute(&mut db.conn)
        .await;
    let took = t.elapsed();
    let _ = sqlx::raw_sql("ROLLBACK").execute(&mut db.conn).await;
    let rows = r
        .map_err(|e| Error::DataRefused {
            version: step.version.clone(),
            reason: format!("its first batch fails: {}", db_message(&e)),
        })?
        .rows_affected();
    let batches = (total as u64).div_ceil(cfg.batch_size);
    Ok(Estimate {
        rows_total: total,
        first_batch_rows: rows,
        batch_ms: took.as_millis() as u64,
        batches,
        estimated_ms: (took.as_secs_f64() * 1000.0 * batches as f64) as u64,
    })
}

/// Runs (or resumes) one data migration step.
pub(crate) async fn run(
    db: &mut Db,
    m: &Migration,
    step: &Step,
    max_duration: Option<Duration>,
    sink: &mut dyn EventSink,
) -> Result<Outcome, Error> {
    let cfg = m.meta.data.as_ref().ok_or_else(|| Error::DataRefused {
        version: step.version.clone(),
        reason: "no [data] table".into(),
    })?;
    let n = names(db);
    for (table, cols) in [
        (&n.checkpoints, CHECKPOINT_COLUMNS),
        (&n.errors, ERROR_COLUMNS),
    ] {
        for ddl in table_ddl(db.engine, table, db.schema(), cols) {
            sqlx::raw_sql(&ddl)
                .execute(&mut db.conn)
                .await
                .map_err(|e| Error::query("creating Instar's data tables", e))?;
        }
    }
    let shape = shape(db, cfg, statement_of(m, step.direction));
    let cp = match step.resume_row {
        Some(row_id) => resume(db, m, step, &n, row_id).await?,
        None => begin(db, m, step, cfg, &shape, &n).await?,
    };
    walk(db, m, step, cfg, &shape, &n, cp, max_duration, sink).await
}

/// The checkpoint of a run being resumed; refuses when the script changed since it began.
async fn resume(
    db: &mut Db,
    m: &Migration,
    step: &Step,
    n: &Names,
    row_id: i64,
) -> Result<(i64, Checkpoint), Error> {
    let sql = format!(
        "SELECT version, direction, checksum, last_key, upper_key, rows_total, rows_done, batches, errors, elapsed_ms FROM {} WHERE version = {} AND direction = {}",
        n.checkpoints,
        db.engine.placeholder(1),
        db.engine.placeholder(2)
    );
    let row = sqlx::query(&sql)
        .bind(step.version.clone())
        .bind(step.direction.as_str())
        .fetch_optional(&mut db.conn)
        .await
        .map_err(|e| Error::query("reading the checkpoint", e))?;
    let Some(row) = row else {
        return Err(Error::DataRefused {
            version: step.version.clone(),
            reason: "it is marked in progress but has no checkpoint; run `instar repair` to start it over".into(),
        });
    };
    let cp = decode_checkpoint(&row)?;
    if step.direction == Direction::Up && cp.checksum.as_deref() != Some(m.checksum.as_str()) {
        return Err(Error::DataRefused {
            version: step.version.clone(),
            reason: format!(
                "its script changed since the run began ({} rows done with the old one); undo the edit to resume, or `instar repair` to start over",
                cp.rows_done
            ),
        });
    }
    Ok((row_id, cp))
}

/// Refuses a table the run cannot walk (unreadable key, NULL or duplicate keys,
/// a false `checks.before`), then fixes the key range: the largest key now and
/// how many rows lie at or below it.
async fn preflight(
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
    if let Err(e) = sqlx::query(&probe).fetch_optional(&mut db.conn).await {
        return Err(refuse(format!(
            "table {} with key {} cannot be read: {}",
            cfg.table,
            cfg.key.columns().join(", "),
            db_message(&e)
        )));
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
        s.list()
    );
    if let Some(k) = fetch_key(&mut db.conn, &dup, &[], s.cols.len()).await? {
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
        Some(u) => {
            let mut k = 0;
            let sql = format!(
                "SELECT count(*) FROM {} WHERE {} <= {}",
                s.table,
                s.tuple(),
                s.marks(&mut k)
            );
            bind_key(sqlx::query(&sql), u)
                .fetch_one(&mut db.conn)
                .await
                .and_then(|r| r.try_get::<i64, _>(0))
                .map_err(|e| Error::query("counting the rows to migrate", e))?
        }
        None => 0,
    };
    Ok((upper, total))
}

/// Checks the table before any batch, fixes the key range, writes the start row and checkpoint.
async fn begin(
    db: &mut Db,
    m: &Migration,
    step: &Step,
    cfg: &DataConfig,
    s: &Shape<'_>,
    n: &Names,
) -> Result<(i64, Checkpoint), Error> {
    let (upper, total) = preflight(db, m, step, cfg, s).await?;
    let mut row = crate::runner::new_row(m, EventKind::Start, step.direction);
    row.statements_total = 1;
    row.kind = "data".into();
    let row_id = {
        let (h, conn) = db.parts();
        h.insert(conn, &row).await?
    };
    let cp = Checkpoint {
        version: step.version.clone(),
        direction: step.direction.as_str().into(),
        checksum: Some(m.checksum.clone()),
        last_key: None,
        upper_key: upper.as_ref().map(|u| key_json(u)),
        rows_total: total,
        rows_done: 0,
        batches: 0,
        errors: 0,
        elapsed_ms: 0,
    };
    // A run started over (after `instar repair`) replaces its stale checkpoint.
    let stale = format!(
        "DELETE FROM {} WHERE version = {} AND direction = {}",
        n.checkpoints,
        db.engine.placeholder(1),
        db.engine.placeholder(2)
    );
    sqlx::query(&stale)
        .bind(cp.version.clone())
        .bind(cp.direction.clone())
        .execute(&mut db.conn)
        .await
        .map_err(|e| Error::query("clearing a stale checkpoint", e))?;
    let p = |i| db.engine.placeholder(i);
    let sql = format!(
        "INSERT INTO {} (version, direction, checksum, last_key, upper_key, rows_total, rows_done, batches, errors, elapsed_ms, updated_at) VALUES ({}, {}, {}, NULL, {}, {}, 0, 0, 0, 0, {})",
        n.checkpoints,
        p(1),
        p(2),
        p(3),
        p(4),
        p(5),
        p(6)
    );
    sqlx::query(&sql)
        .bind(cp.version.clone())
        .bind(cp.direction.clone())
        .bind(cp.checksum.clone())
        .bind(cp.upper_key.clone())
        .bind(total)
        .bind(time::now_rfc3339())
        .execute(&mut db.conn)
        .await
        .map_err(|e| Error::query("writing the checkpoint", e))?;
    Ok((row_id, cp))
}

fn begin_sql(db: &Db) -> &'static str {
    if db.dialect() == instar_core::Dialect::Sqlite {
        "BEGIN IMMEDIATE"
    } else {
        "BEGIN"
    }
}

async fn control(conn: &mut AnyConnection, sql: &str) -> Result<(), Error> {
    sqlx::raw_sql(sql)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(|e| Error::query(format!("running {sql}"), e))
}

/// Walks the key range batch by batch from the checkpoint.
#[allow(clippy::too_many_arguments)]
async fn walk(
    db: &mut Db,
    m: &Migration,
    step: &Step,
    cfg: &DataConfig,
    s: &Shape<'_>,
    n: &Names,
    (row_id, mut cp): (i64, Checkpoint),
    max_duration: Option<Duration>,
    sink: &mut dyn EventSink,
) -> Result<Outcome, Error> {
    let t0 = Instant::now();
    let width = s.cols.len();
    let pause = cfg
        .pause
        .as_deref()
        .map(parse_pause)
        .transpose()?
        .unwrap_or_default();
    let target = cfg
        .target_batch_time
        .as_deref()
        .map(parse_pause)
        .transpose()?;
    let mut batch_size = cfg.batch_size;
    sink.event(&Event::DataStarted {
        version: step.version.clone(),
        rows_total: cp.rows_total as u64,
        rows_done: cp.rows_done as u64,
    });
    let upper = cp.upper_key.as_deref().map(parse_key).transpose()?;
    let mut last = cp.last_key.as_deref().map(parse_key).transpose()?;
    let done_at_start = cp.rows_done;
    let batches_at_start = cp.batches;
    while let Some(upper) = &upper {
        if last.as_ref() == Some(upper) {
            break;
        }
        // At least one batch per run, so a tiny budget still makes progress.
        if cp.batches > batches_at_start && max_duration.is_some_and(|d| t0.elapsed() >= d) {
            sink.event(&Event::DataPaused {
                version: step.version.clone(),
                rows_done: cp.rows_done as u64,
                rows_total: cp.rows_total as u64,
            });
            return Ok(Outcome::Paused);
        }
        // The batch's last key: batch_size rows into the range, or the upper bound.
        let mut k = 0;
        let range_sql = s.range(last.is_some(), &mut k);
        let find = format!(
            "SELECT {} FROM {} WHERE {range_sql} ORDER BY {} LIMIT 1 OFFSET {}",
            s.list(),
            s.table,
            s.order(false),
            batch_size - 1
        );
        let binds: Vec<&[Value]> = last
            .iter()
            .map(Vec::as_slice)
            .chain(std::iter::once(upper.as_slice()))
            .collect();
        let end = fetch_key(&mut db.conn, &find, &binds, width)
            .await?
            .unwrap_or_else(|| upper.clone());
        let batch_started = Instant::now();
        let (rows, errors) = run_batch(db, m, step, cfg, s, n, last.as_deref(), &end, &cp).await?;
        cp.rows_done += rows as i64;
        cp.errors += errors as i64;
        cp.batches += 1;
        let took = batch_started.elapsed();
        cp.elapsed_ms += took.as_millis() as i64;
        if let Some(target) = target {
            batch_size = adapt(batch_size, took, target);
        }
        last = Some(end);
        let rate = (cp.rows_done - done_at_start) as f64 / t0.elapsed().as_secs_f64().max(1e-9);
        let left = (cp.rows_total - cp.rows_done).max(0) as f64;
        sink.event(&Event::BatchFinished {
            version: step.version.clone(),
            batch: cp.batches as u64,
            rows,
            rows_done: cp.rows_done as u64,
            rows_total: cp.rows_total as u64,
            rows_per_sec: rate,
            eta_ms: if rate > 0.0 {
                (left / rate * 1000.0) as u64
            } else {
                0
            },
            last_key: last.as_deref().map(key_json).unwrap_or_default(),
        });
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    finish(db, m, step, n, row_id, &cp).await?;
    sink.event(&Event::MigrationFinished {
        version: step.version.clone(),
        direction: step.direction,
        duration_ms: cp.elapsed_ms as u64,
        rows_affected: cp.rows_done as u64,
    });
    Ok(Outcome::Done)
}

/// The next batch size in adaptive mode: scaled toward `target`, at most doubled
/// or halved per batch (so one slow or fast batch does not swing it), 1 to 1,000,000.
fn adapt(size: u64, took: Duration, target: Duration) -> u64 {
    let ratio = target.as_secs_f64() / took.as_secs_f64().max(1e-6);
    let next = (size as f64 * ratio.clamp(0.5, 2.0)).round() as u64;
    next.clamp(1, 1_000_000)
}

fn parse_pause(s: &str) -> Result<Duration, Error> {
    let (num, unit) = s.trim().split_at(
        s.trim()
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(s.trim().len()),
    );
    let v: u64 = num.parse().map_err(|_| {
        Error::Unsupported(format!(
            "[data] duration {s:?}: use e.g. \"50ms\" or \"1s\""
        ))
    })?;
    match unit {
        "ms" => Ok(Duration::from_millis(v)),
        "" | "s" => Ok(Duration::from_secs(v)),
        _ => Err(Error::Unsupported(format!(
            "[data] duration {s:?}: use ms or s"
        ))),
    }
}

/// One batch and its checkpoint in one transaction. With `on_error = "skip"`,
/// a failing batch is retried row by row and rows that still fail are recorded.
#[allow(clippy::too_many_arguments)]
async fn run_batch(
    db: &mut Db,
    m: &Migration,
    step: &Step,
    cfg: &DataConfig,
    s: &Shape<'_>,
    n: &Names,
    last: Option<&[Value]>,
    end: &[Value],
    cp: &Checkpoint,
) -> Result<(u64, u64), Error> {
    let begin = begin_sql(db);
    let mut k = 0;
    let stmt = s
        .statement
        .replace(BATCH_PLACEHOLDER, &s.range(last.is_some(), &mut k));
    let checkpoint_sql = {
        let p = |i| db.engine.placeholder(i);
        format!(
            "UPDATE {} SET last_key = {}, rows_done = rows_done + {}, batches = batches + 1, errors = errors + {}, elapsed_ms = {}, updated_at = {} WHERE version = {} AND direction = {}",
            n.checkpoints,
            p(1),
            p(2),
            p(3),
            p(4),
            p(5),
            p(6),
            p(7)
        )
    };
    let save = |rows: u64, errors: u64| {
        sqlx::query(&checkpoint_sql)
            .bind(key_json(end))
            .bind(rows as i64)
            .bind(errors as i64)
            .bind(cp.elapsed_ms)
            .bind(time::now_rfc3339())
            .bind(step.version.clone())
            .bind(step.direction.as_str())
    };
    control(&mut db.conn, begin).await?;
    let mut q = sqlx::query(&stmt).persistent(true);
    if let Some(l) = last {
        q = bind_key(q, l);
    }
    let attempt = match bind_key(q, end).execute(&mut db.conn).await {
        Ok(r) => save(r.rows_affected(), 0)
            .execute(&mut db.conn)
            .await
            .map(|_| r.rows_affected()),
        Err(e) => Err(e),
    };
    match attempt {
        Ok(rows) => {
            control(&mut db.conn, "COMMIT").await?;
            Ok((rows, 0))
        }
        Err(e) => {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut db.conn).await;
            if cfg.on_error == OnError::Stop {
                let message = db_message(&e);
                let at = format!(
                    "batch after {} up to {}",
                    last.map_or("start".into(), key_json),
                    key_json(end)
                );
                let id = step_row(db, step).await?;
                let (h, conn) = db.parts();
                h.progress(conn, id, 0, Some(&message), Some(&at)).await?;
                return Err(Error::BatchFailed {
                    version: step.version.clone(),
                    path: m.up.path.clone(),
                    after: last.map_or("start".into(), key_json),
                    upto: key_json(end),
                    message,
                    rows_done: cp.rows_done as u64,
                });
            }
            row_by_row(db, step, s, n, last, end, &checkpoint_sql, cp).await
        }
    }
}

/// The id of the step's `start` row.
async fn step_row(db: &mut Db, step: &Step) -> Result<i64, Error> {
    if let Some(id) = step.resume_row {
        return Ok(id);
    }
    let state = instar_core::history::derive(&db.read_history().await?);
    Ok(state.dirty.get(&step.version).map_or(0, |d| d.row_id))
}

/// Retries a failed batch one row at a time; each row commits alone, failures are recorded.
#[allow(clippy::too_many_arguments)]
async fn row_by_row(
    db: &mut Db,
    step: &Step,
    s: &Shape<'_>,
    n: &Names,
    last: Option<&[Value]>,
    end: &[Value],
    checkpoint_sql: &str,
    cp: &Checkpoint,
) -> Result<(u64, u64), Error> {
    let mut k = 0;
    let keys_sql = format!(
        "SELECT {} FROM {} WHERE {} ORDER BY {}",
        s.list(),
        s.table,
        s.range(last.is_some(), &mut k),
        s.order(false)
    );
    let mut q = sqlx::query(&keys_sql);
    if let Some(l) = last {
        q = bind_key(q, l);
    }
    let keys: Vec<Vec<Value>> = bind_key(q, end)
        .fetch_all(&mut db.conn)
        .await
        .map_err(|e| Error::query("listing the rows of a failed batch", e))?
        .iter()
        .map(|r| decode_key(r, s.cols.len()))
        .collect::<Result<_, _>>()?;
    let mut k = 0;
    let one = s.statement.replace(BATCH_PLACEHOLDER, &s.exact(&mut k));
    let error_sql = {
        let p = |i| db.engine.placeholder(i);
        format!(
            "INSERT INTO {} (version, row_key, error, at) VALUES ({}, {}, {}, {})",
            n.errors,
            p(1),
            p(2),
            p(3),
            p(4)
        )
    };
    let (mut rows, mut errors) = (0u64, 0u64);
    let begin = begin_sql(db);
    for key in &keys {
        control(&mut db.conn, begin).await?;
        match bind_key(sqlx::query(&one), key).execute(&mut db.conn).await {
            Ok(r) => {
                rows += r.rows_affected();
                control(&mut db.conn, "COMMIT").await?;
            }
            Err(e) => {
                control(&mut db.conn, "ROLLBACK").await?;
                errors += 1;
                sqlx::query(&error_sql)
                    .bind(step.version.clone())
                    .bind(key_json(key))
                    .bind(db_message(&e))
                    .bind(time::now_rfc3339())
                    .execute(&mut db.conn)
                    .await
                    .map_err(|e| Error::query("recording a skipped row", e))?;
            }
        }
    }
    // The rows above committed one by one; the checkpoint moves past the batch now.
    // A crash in between redoes this batch's rows, which the statement must tolerate
    // (the row-by-row path is only taken for a batch that already failed once).
    sqlx::query(checkpoint_sql)
        .bind(key_json(end))
        .bind(rows as i64)
        .bind(errors as i64)
        .bind(cp.elapsed_ms)
        .bind(time::now_rfc3339())
        .bind(step.version.clone())
        .bind(step.direction.as_str())
        .execute(&mut db.conn)
        .await
        .map_err(|e| Error::query("writing the checkpoint", e))?;
    Ok((rows, errors))
}

/// Runs the after-checks, records the apply/revert row and drops the checkpoint.
async fn finish(
    db: &mut Db,
    m: &Migration,
    step: &Step,
    n: &Names,
    row_id: i64,
    cp: &Checkpoint,
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
                return Err(Error::DataRefused {
                    version: step.version.clone(),
                    reason: format!("{message} after every batch ran; the data stays as migrated. Fix the data, then `instar up` re-checks"),
                });
            }
        }
    }
    let event = if step.direction == Direction::Up {
        EventKind::Apply
    } else {
        EventKind::Revert
    };
    let mut row = crate::runner::new_row(m, event, step.direction);
    row.kind = "data".into();
    row.finished_at = Some(time::now_rfc3339());
    row.duration_ms = Some(cp.elapsed_ms);
    row.statements_applied = 1;
    row.statements_total = 1;
    row.rows_affected = Some(cp.rows_done);
    row.note = Some(format!(
        "{} rows in {} batches over {} key(s){}",
        cp.rows_done,
        cp.batches,
        cp.rows_total,
        if cp.errors > 0 {
            format!(", {} rows skipped (see instar_errors)", cp.errors)
        } else {
            String::new()
        }
    ));
    let begin = begin_sql(db);
    control(&mut db.conn, begin).await?;
    let del = format!(
        "DELETE FROM {} WHERE version = {} AND direction = {}",
        n.checkpoints,
        db.engine.placeholder(1),
        db.engine.placeholder(2)
    );
    let r = async {
        let (h, conn) = db.parts();
        h.insert(conn, &row).await?;
        sqlx::query(&del)
            .bind(step.version.clone())
            .bind(step.direction.as_str())
            .execute(conn)
            .await
            .map_err(|e| Error::query("removing the checkpoint", e))?;
        Ok::<(), Error>(())
    }
    .await;
    match r {
        Ok(()) => control(&mut db.conn, "COMMIT").await,
        Err(e) => {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut db.conn).await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::adapt;
    use std::time::Duration;

    #[test]
    fn adaptive_batches_move_toward_the_target_in_bounded_steps() {
        let ms = Duration::from_millis;
        assert_eq!(adapt(1000, ms(50), ms(100)), 2000);
        assert_eq!(adapt(1000, ms(10), ms(100)), 2000, "at most doubled");
        assert_eq!(adapt(1000, ms(400), ms(100)), 500, "at most halved");
        assert_eq!(adapt(1000, ms(125), ms(100)), 800);
        assert_eq!(adapt(1, ms(1000), ms(1)), 1);
        assert_eq!(adapt(900_000, ms(1), ms(100)), 1_000_000);
    }
}
