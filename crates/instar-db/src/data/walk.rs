//! Walking one slice of a data migration's key range, batch by batch.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use instar_core::event::{Event, EventSink};
use instar_core::history::Direction;
use instar_core::meta::{DataConfig, OnError, BATCH_PLACEHOLDER};
use instar_core::plan::Step;
use instar_core::{time, Migration};
use serde_json::Value;

use super::checkpoint::{advance_sql, Checkpoint, Names};
use super::keys::{bind_key, decode_key, fetch_key, key_json, parse_key, Shape};
use crate::db::control;
use crate::engine::marks;
use crate::error::db_message;
use crate::runner::RunOptions;
use crate::CancelToken;
use crate::{Db, Error};

/// What the slices of one run share: progress counters, the event sink, the
/// time budget, the run's cancel token, and a stop flag a failing slice raises
/// for the others. Shared by reference between slices that may run on several
/// threads, so everything in it is `Sync`.
pub(super) struct Shared<'s> {
    sink: Mutex<&'s mut dyn EventSink>,
    pub(super) version: String,
    pub(super) rows_total: i64,
    rows_done: AtomicI64,
    batches: AtomicI64,
    done_at_start: i64,
    t0: Instant,
    max_duration: Option<Duration>,
    cancel: CancelToken,
    stop: AtomicBool,
}

impl<'s> Shared<'s> {
    pub(super) fn new(
        sink: &'s mut dyn EventSink,
        version: &str,
        cps: &[Checkpoint],
        opts: &RunOptions,
    ) -> Self {
        let done: i64 = cps.iter().map(|c| c.rows_done).sum();
        Shared {
            sink: Mutex::new(sink),
            version: version.into(),
            rows_total: cps.iter().map(|c| c.rows_total).sum(),
            rows_done: AtomicI64::new(done),
            batches: AtomicI64::new(cps.iter().map(|c| c.batches).sum()),
            done_at_start: done,
            t0: Instant::now(),
            max_duration: opts.max_duration,
            cancel: opts.cancel.clone(),
            stop: AtomicBool::new(false),
        }
    }

    pub(super) fn event(&self, e: &Event) {
        // A sink that panicked poisoned the lock; its events are lost, the run goes on.
        if let Ok(mut sink) = self.sink.lock() {
            sink.event(e);
        }
    }

    pub(super) fn rows_done(&self) -> i64 {
        self.rows_done.load(Ordering::SeqCst)
    }

    /// Progress read from the checkpoints (other processes' slices too).
    pub(super) fn observe(&self, rows_done: i64) {
        self.rows_done.fetch_max(rows_done, Ordering::SeqCst);
    }

    /// Whether the run should stop waiting for other workers.
    pub(super) fn should_stop(&self) -> bool {
        self.stopping() || self.out_of_time()
    }

    fn out_of_time(&self) -> bool {
        self.max_duration.is_some_and(|d| self.t0.elapsed() >= d)
    }

    /// Whether slices should stop at their next checkpoint.
    pub(super) fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || self.cancel.is_cancelled()
    }

    fn batch_done(&self, rows: u64, last: &[Value]) {
        let done = self.rows_done.fetch_add(rows as i64, Ordering::SeqCst) + rows as i64;
        let batch = self.batches.fetch_add(1, Ordering::SeqCst) + 1;
        let rate = (done - self.done_at_start) as f64 / self.t0.elapsed().as_secs_f64().max(1e-9);
        let left = (self.rows_total - done).max(0) as f64;
        self.event(&Event::BatchFinished {
            version: self.version.clone(),
            batch: batch as u64,
            rows,
            rows_done: done as u64,
            rows_total: self.rows_total as u64,
            rows_per_sec: rate,
            eta_ms: if rate > 0.0 {
                (left / rate * 1000.0) as u64
            } else {
                0
            },
            last_key: key_json(last),
        });
    }
}

/// How a slice's walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SliceEnd {
    /// Every batch of the slice is done.
    Done,
    /// Stopped at a checkpoint: the time budget is spent, or another slice failed.
    Stopped,
}

/// Everything a slice's batches need to know about the migration.
pub(super) struct Job<'a> {
    pub(super) m: &'a Migration,
    pub(super) step: &'a Step,
    pub(super) cfg: &'a DataConfig,
    pub(super) shape: &'a Shape<'a>,
    pub(super) names: &'a Names,
    /// The run's `start` row in the history, where a failure is recorded.
    pub(super) row_id: i64,
    /// A documents migration's mover (`None`: the statement of a data migration).
    pub(super) docs: Option<&'a super::documents::Mover<'a>>,
    /// This process's claims on the run's slices (none for a dry run).
    pub(super) claims: Option<&'a super::claims::Claims>,
}

impl Job<'_> {
    /// In a batch's open transaction: renews the run lock's lease (if any) and
    /// this process's claim on the slice, failing when either is lost.
    pub(super) async fn fence(&self, db: &mut Db, slice: i64) -> Result<(), Error> {
        db.fence().await?;
        match self.claims {
            Some(c) => {
                c.fence(db, &self.step.version, self.step.direction.as_str(), slice)
                    .await
            }
            None => Ok(()),
        }
    }

    /// Records on the run's `start` row (a standalone move has none) that the
    /// batch after `last` up to `end` failed with `message`.
    pub(super) async fn record_failure(
        &self,
        db: &mut Db,
        last: Option<&[Value]>,
        end: &[Value],
        message: &str,
    ) -> Result<(), Error> {
        if self.row_id == 0 {
            return Ok(());
        }
        let after = last.map_or("start".into(), key_json);
        let at = format!("batch after {after} up to {}", key_json(end));
        let (h, conn) = db.parts();
        h.progress(conn, self.row_id, 0, Some(message), Some(&at))
            .await
    }

    /// The error of a batch that failed with `on_error = "stop"`.
    pub(super) fn failed(
        &self,
        last: Option<&[Value]>,
        end: &[Value],
        message: String,
        cp: &Checkpoint,
    ) -> Error {
        let step = self.step;
        Error::BatchFailed {
            version: step.version.clone(),
            path: match step.direction {
                Direction::Up => self.m.up.path.clone(),
                Direction::Down => self.m.down.as_ref().unwrap_or(&self.m.up).path.clone(),
            },
            after: last.map_or("start".into(), key_json),
            upto: key_json(end),
            message,
            rows_done: cp.rows_done as u64,
        }
    }
}

/// Walks one slice from its checkpoint to its upper bound.
pub(super) async fn walk_slice(
    db: &mut Db,
    job: &Job<'_>,
    mut cp: Checkpoint,
    shared: &Shared<'_>,
) -> Result<(SliceEnd, Checkpoint), Error> {
    let s = job.shape;
    let pause = job.cfg.pause.as_ref().map(|d| d.value).unwrap_or_default();
    let target = job.cfg.target_batch_time.as_ref().map(|d| d.value);
    let mut batch_size = job.cfg.batch_size;
    let Some(upper) = cp.upper_key.as_deref().map(parse_key).transpose()? else {
        return Ok((SliceEnd::Done, cp));
    };
    let mut last = match cp.last_key.as_deref().or(cp.lower_key.as_deref()) {
        Some(k) => Some(parse_key(k)?),
        None => None,
    };
    let mut batches_here = 0;
    loop {
        if last.as_ref() == Some(&upper) {
            return Ok((SliceEnd::Done, cp));
        }
        if shared.stopping() || (batches_here > 0 && shared.out_of_time()) {
            // At least one batch per run and slice, so a tiny budget still makes progress.
            return Ok((SliceEnd::Stopped, cp));
        }
        // The batch's last key: batch_size rows into the range, or the upper bound.
        let find = s.key_at(last.is_some(), batch_size - 1);
        let binds: Vec<&[Value]> = last
            .iter()
            .map(Vec::as_slice)
            .chain(std::iter::once(upper.as_slice()))
            .collect();
        let end = fetch_key(&mut db.conn, &find, &binds, s.cols.len())
            .await?
            .unwrap_or_else(|| upper.clone());
        let started = Instant::now();
        let (rows, errors) =
            match run_batch_retrying(db, job, last.as_deref(), &end, &cp, shared).await {
                Ok(r) => r,
                Err(e) => {
                    shared.stop.store(true, Ordering::SeqCst);
                    return Err(e);
                }
            };
        let took = started.elapsed();
        cp.rows_done += rows as i64;
        cp.errors += errors as i64;
        cp.batches += 1;
        cp.elapsed_ms += took.as_millis() as i64;
        cp.last_key = Some(key_json(&end));
        batches_here += 1;
        if let Some(target) = target {
            batch_size = adapt(batch_size, took, target);
        }
        shared.batch_done(rows, &end);
        last = Some(end);
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}

/// The next batch size in adaptive mode: scaled toward `target`, at most doubled
/// or halved per batch (so one slow or fast batch does not swing it), 1 to 1,000,000.
fn adapt(size: u64, took: Duration, target: Duration) -> u64 {
    let ratio = target.as_secs_f64() / took.as_secs_f64().max(1e-6);
    let next = (size as f64 * ratio.clamp(0.5, 2.0)).round() as u64;
    next.clamp(1, 1_000_000)
}

/// [`run_batch`], run again when the engine rolled it back for a
/// serialization failure or a deadlock (each retry an event).
async fn run_batch_retrying(
    db: &mut Db,
    job: &Job<'_>,
    last: Option<&[Value]>,
    end: &[Value],
    cp: &Checkpoint,
    shared: &Shared<'_>,
) -> Result<(u64, u64), Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match run_batch(db, job, last, end, cp, attempt < crate::retry::ATTEMPTS).await {
            Err(Batch::Retry(code)) if attempt >= crate::retry::ATTEMPTS => {
                return Err(Error::DataHalted {
                    version: job.step.version.clone(),
                    reason: format!(
                        "the batch after key {} was rolled back by the database {attempt} times ({code}: serialization failures or deadlocks); its rows are as before it and the checkpoint did not move. Run `instar up` again to resume",
                        last.map_or("start".into(), key_json)
                    ),
                });
            }
            Err(Batch::Retry(code)) => {
                let pause = crate::retry::backoff(attempt);
                shared.event(&Event::Retry {
                    what: format!(
                        "batch after key {} of {}",
                        last.map_or("start".into(), key_json),
                        job.step.version
                    ),
                    code,
                    attempt,
                    backoff_ms: pause.as_millis() as u64,
                });
                tokio::time::sleep(pause).await;
            }
            Err(Batch::Failed(e)) => return Err(e),
            Ok(r) => return Ok(r),
        }
    }
}

/// Why a batch did not commit.
enum Batch {
    /// The engine rolled it back and asks to run it again (its error code).
    Retry(String),
    /// It failed.
    Failed(Error),
}

impl From<Error> for Batch {
    fn from(e: Error) -> Batch {
        match e.db_code() {
            // A commit the engine refused (Galera's certification) says so by its code.
            Some(c) if crate::retry::retryable_code(c) && matches!(e, Error::Query { .. }) => {
                Batch::Retry(c.to_string())
            }
            _ => Batch::Failed(e),
        }
    }
}

/// One batch and its checkpoint in one transaction. With `on_error = "skip"`,
/// a failing batch is retried row by row and rows that still fail are recorded.
async fn run_batch(
    db: &mut Db,
    job: &Job<'_>,
    last: Option<&[Value]>,
    end: &[Value],
    cp: &Checkpoint,
    may_retry: bool,
) -> Result<(u64, u64), Batch> {
    let retry = |r: Result<(u64, u64), Error>| match r {
        Ok(v) => Ok(v),
        Err(e) if may_retry => Err(Batch::from(e)),
        Err(e) => Err(Batch::Failed(e)),
    };
    if let Some(mover) = job.docs {
        return retry(mover.batch(db, job, last, end, cp, false).await);
    }
    let (s, step) = (job.shape, job.step);
    let begin = db.engine.begin();
    let mut k = 0;
    let stmt = s
        .statement
        .replace(BATCH_PLACEHOLDER, &s.range(last.is_some(), &mut k));
    let advance = advance_sql(db, job.names);
    control(&mut db.conn, begin).await?;
    if let Err(e) = job.fence(db, cp.slice).await {
        let _ = crate::conn::exec(&mut db.conn, "ROLLBACK").await;
        // A lost lease fails; the fence's own serialization failure retries.
        return Err(if may_retry {
            Batch::from(e)
        } else {
            Batch::Failed(e)
        });
    }
    let mut q = crate::conn::query(&stmt);
    if let Some(l) = last {
        q = bind_key(q, l)?;
    }
    let attempt = match bind_key(q, end)?.execute(&mut db.conn).await {
        Ok(r) => save(&advance, step, cp, end, r.rows_affected, 0)
            .execute(&mut db.conn)
            .await
            .map(|_| r.rows_affected),
        Err(e) => Err(e),
    };
    match attempt {
        Ok(rows) => retry(control(&mut db.conn, "COMMIT").await.map(|()| (rows, 0))),
        Err(e) => {
            let _ = crate::conn::exec(&mut db.conn, "ROLLBACK").await;
            if may_retry && crate::retry::retryable(&e) {
                return Err(Batch::Retry(crate::error::db_code(&e).unwrap_or_default()));
            }
            if job.cfg.on_error == OnError::Stop {
                let message = db_message(&e);
                job.record_failure(db, last, end, &message).await?;
                return Err(Batch::Failed(job.failed(last, end, message, cp)));
            }
            // Rows commit one by one there: never retried as a batch.
            row_by_row(db, job, last, end, &advance, cp)
                .await
                .map_err(Batch::Failed)
        }
    }
}

/// The checkpoint UPDATE of `advance_sql`, bound.
pub(super) fn save<'q>(
    advance: &'q str,
    step: &Step,
    cp: &Checkpoint,
    end: &[Value],
    rows: u64,
    errors: u64,
) -> crate::conn::Query<'q> {
    crate::conn::query(advance)
        .bind(key_json(end))
        .bind(rows as i64)
        .bind(errors as i64)
        .bind(cp.elapsed_ms)
        .bind(time::now_rfc3339())
        .bind(step.version.clone())
        .bind(step.direction.as_str())
        .bind(cp.slice)
}

/// Retries a failed batch one row at a time; each row commits alone, failures are recorded.
async fn row_by_row(
    db: &mut Db,
    job: &Job<'_>,
    last: Option<&[Value]>,
    end: &[Value],
    advance: &str,
    cp: &Checkpoint,
) -> Result<(u64, u64), Error> {
    let (s, step) = (job.shape, job.step);
    let mut k = 0;
    let keys_sql = format!(
        "SELECT {} FROM {} WHERE {} ORDER BY {}",
        s.list(),
        s.table,
        s.range(last.is_some(), &mut k),
        s.order(false)
    );
    let mut q = crate::conn::query(&keys_sql);
    if let Some(l) = last {
        q = bind_key(q, l)?;
    }
    let keys: Vec<Vec<Value>> = bind_key(q, end)?
        .fetch_all(&mut db.conn)
        .await
        .map_err(|e| Error::query("listing the rows of a failed batch", e))?
        .iter()
        .map(|r| decode_key(r, s.cols.len()))
        .collect::<Result<_, _>>()?;
    let mut k = 0;
    let one = s.statement.replace(BATCH_PLACEHOLDER, &s.exact(&mut k));
    let error_sql = marks(
        db.engine,
        &format!(
            "INSERT INTO {} (version, row_key, error, at) VALUES (?, ?, ?, ?)",
            job.names.errors
        ),
    );
    let (mut rows, mut errors) = (0u64, 0u64);
    let begin = db.engine.begin();
    for key in &keys {
        control(&mut db.conn, begin).await?;
        if let Err(e) = job.fence(db, cp.slice).await {
            let _ = crate::conn::exec(&mut db.conn, "ROLLBACK").await;
            return Err(e);
        }
        match bind_key(crate::conn::query(&one), key)?
            .execute(&mut db.conn)
            .await
        {
            Ok(r) => {
                rows += r.rows_affected;
                control(&mut db.conn, "COMMIT").await?;
            }
            Err(e) => {
                control(&mut db.conn, "ROLLBACK").await?;
                errors += 1;
                crate::conn::query(&error_sql)
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
    // The rows above committed one by one; the checkpoint moves past the batch now,
    // fenced in its own transaction (a process that lost its lease or claim meanwhile
    // must not move a checkpoint another walks on from). A crash in between redoes
    // this batch's rows, which the statement must tolerate (the row-by-row path is
    // only taken for a batch that already failed once).
    control(&mut db.conn, begin).await?;
    let saved = async {
        job.fence(db, cp.slice).await?;
        save(advance, step, cp, end, rows, errors)
            .execute(&mut db.conn)
            .await
            .map_err(|e| Error::query("writing the checkpoint", e))?;
        Ok::<(), Error>(())
    }
    .await;
    crate::retry::end(db, saved).await?;
    Ok((rows, errors))
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
