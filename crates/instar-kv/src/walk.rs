//! The batch walk under a key prefix: read a page of records, rewrite them,
//! commit the rewritten records and the walk's checkpoint in one atomic
//! batch. Killed at any moment, every record is whole at its old version or
//! its new one, and the walk resumes after the last committed batch; a
//! record already at the target is never rewritten again.

use std::time::{Duration, Instant};

use instar_core::event::{Event, EventSink};
use instar_core::meta::OnError;
use serde::{Deserialize, Serialize};

use crate::collection::scan_records;
use crate::{keys, Batch, Error, KvStore, Write};

/// How a walk goes.
#[derive(Debug, Clone)]
pub struct WalkOptions {
    /// Records per batch (one atomic write each).
    pub batch_size: usize,
    /// A record that cannot be rewritten stops the walk (nothing of its batch
    /// is written), or is left as it is and recorded.
    pub on_error: OnError,
    /// Stop at a checkpoint after this long.
    pub max_duration: Option<Duration>,
    /// Set to stop at the next batch boundary.
    pub cancel: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Default for WalkOptions {
    fn default() -> Self {
        WalkOptions {
            batch_size: 1000,
            on_error: OnError::Stop,
            max_duration: None,
            cancel: Default::default(),
        }
    }
}

/// Where a walk is, stored under `\0instar/checkpoint/<step>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The last key done (hex), `None` before the first batch.
    pub after: Option<String>,
    /// Records walked so far (all runs).
    pub done: u64,
    /// Records under the prefix when the walk began.
    pub total: u64,
    /// Records rewritten so far.
    pub changed: u64,
    /// Records skipped so far.
    pub skipped: u64,
    /// Records left to the application (changed during the walk).
    pub conflicts: u64,
    /// What the walk moves to; a checkpoint for another target starts over.
    pub target: String,
}

/// How a walk ended.
#[derive(Debug, Clone, PartialEq)]
pub enum WalkEnd {
    /// Every record walked.
    Done(Checkpoint),
    /// Stopped at a checkpoint (time budget or cancel).
    Paused(Checkpoint),
}

/// One record's rewrite: its new writes, none (already at the target), or an error.
pub type Rewritten = Result<Option<Vec<Write>>, Error>;

/// What a walk does to each page of records.
pub trait Rewrite {
    /// The checkpoint name (unique per step).
    fn step(&self) -> String;
    /// What it moves to (a checkpoint for another target is discarded).
    fn target(&self) -> String;
    /// The key prefix walked.
    fn prefix(&self) -> &[u8];
    /// The page's records rewritten, one result per record, in order.
    fn rewrite(&self, store: &dyn KvStore, page: &[(Vec<u8>, Vec<u8>)]) -> Vec<Rewritten>;
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// The walk's checkpoint, if it has one for `target`.
pub fn checkpoint(
    store: &dyn KvStore,
    step: &str,
    target: &str,
) -> Result<Option<Checkpoint>, Error> {
    let Some(raw) = store.get(&keys::checkpoint(step))? else {
        return Ok(None);
    };
    let ck: Checkpoint = serde_json::from_slice(&raw)
        .map_err(|e| Error::Config(format!("checkpoint {step} is damaged: {e}")))?;
    Ok((ck.target == target).then_some(ck))
}

/// Every checkpoint in the store, by step.
pub fn checkpoints(store: &dyn KvStore) -> Result<Vec<(String, Checkpoint)>, Error> {
    let prefix = keys::checkpoint_prefix();
    let mut out = Vec::new();
    for (k, v) in store.scan(&prefix, None, 10_000)? {
        let name = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
        if let Ok(ck) = serde_json::from_slice(&v) {
            out.push((name, ck));
        }
    }
    Ok(out)
}

/// Walks every record under the rewrite's prefix from its checkpoint.
/// `label` names the step in progress events.
pub fn walk(
    store: &dyn KvStore,
    rw: &dyn Rewrite,
    o: &WalkOptions,
    label: &str,
    sink: &mut dyn EventSink,
) -> Result<WalkEnd, Error> {
    let step = rw.step();
    let mut ck = match checkpoint(store, &step, &rw.target())? {
        Some(ck) => ck,
        None => Checkpoint {
            total: count(store, rw.prefix())?,
            target: rw.target(),
            ..Checkpoint::default()
        },
    };
    sink.event(&Event::DataStarted {
        version: label.into(),
        rows_total: ck.total,
        rows_done: ck.done,
    });
    let started = Instant::now();
    let done_before = ck.done;
    let mut batches = 0u64;
    loop {
        let over = o.max_duration.is_some_and(|d| started.elapsed() >= d);
        if over || o.cancel.load(std::sync::atomic::Ordering::SeqCst) {
            sink.event(&Event::DataPaused {
                version: label.into(),
                rows_done: ck.done,
                rows_total: ck.total,
            });
            return Ok(WalkEnd::Paused(ck));
        }
        // Taken before the records are read: see `Batch::read_at`.
        let seen = store.foreign_commits();
        let after = match ck.after.as_deref() {
            None => None,
            Some(h) => Some(unhex(h).ok_or_else(|| {
                Error::Config(format!("checkpoint {step} is damaged (its last key {h:?} is not hex); delete the key \\0instar/checkpoint/{step} to walk from the start"))
            })?),
        };
        let page = scan_records(store, rw.prefix(), after.as_deref(), o.batch_size.max(1))?;
        let Some((last, _)) = page.last() else {
            return Ok(WalkEnd::Done(ck));
        };
        let last = last.clone();
        let mut b = Batch::instar();
        b.read_at = Some(seen);
        let mut changed = 0;
        for (i, ((key, _), r)) in page.iter().zip(rw.rewrite(store, &page)).enumerate() {
            match r {
                Ok(None) => {}
                Ok(Some(writes)) => {
                    changed += 1;
                    b.writes.extend(writes.into_iter().map(|mut w| {
                        w.unit = Some(i as u64 + 1);
                        w
                    }));
                }
                // A record a newer release wrote is never skipped: the run stops.
                Err(e) if o.on_error == OnError::Skip && !matches!(e, Error::Newer(_)) => {
                    ck.skipped += 1;
                    let why = serde_json::json!({ "error": e.to_string(), "at": instar_core::time::now_rfc3339() });
                    b.put(keys::skipped(&step, key), why.to_string());
                }
                Err(e) => return Err(e),
            }
        }
        ck.after = Some(hex(&last));
        ck.done += page.len() as u64;
        ck.changed += changed;
        let mut next = ck.clone();
        // The conflicts are only known after the commit: the checkpoint of
        // the next batch carries them.
        b.put(
            keys::checkpoint(&step),
            serde_json::to_vec(&next).expect("serializes"),
        );
        let conflicts = store.commit(b)?;
        if !conflicts.is_empty() {
            // Only record keys carry guards: count the records.
            let records = conflicts
                .iter()
                .filter(|k| !k.starts_with(keys::RESERVED))
                .count();
            next.conflicts += records as u64;
            next.changed -= (records as u64).min(next.changed);
        }
        ck = next;
        batches += 1;
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        let rate = (ck.done - done_before) as f64 / secs;
        let left = ck.total.saturating_sub(ck.done) as f64;
        sink.event(&Event::BatchFinished {
            version: label.into(),
            batch: batches,
            rows: page.len() as u64,
            rows_done: ck.done,
            rows_total: ck.total.max(ck.done),
            rows_per_sec: rate,
            eta_ms: if rate > 0.0 {
                (left / rate * 1000.0) as u64
            } else {
                0
            },
            last_key: serde_json::Value::from(keys::show(&last)).to_string(),
        });
    }
}

/// Records under `prefix` (Instar's own keys left out).
pub fn count(store: &dyn KvStore, prefix: &[u8]) -> Result<u64, Error> {
    if !keys::RESERVED.starts_with(prefix) {
        return Ok(store.count(prefix)?);
    }
    Ok(store.count(prefix)? - store.count(keys::RESERVED)?)
}
