//! The slices of one run walked by this process's lanes (connections), each
//! lane claiming a slice before walking it, while other processes (workers
//! on other machines) claim others. The run's owner then waits for the slices
//! other processes hold, and walks again any whose worker died (its claim
//! expired); a worker leaves once nothing is left for it to claim.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use instar_core::event::Event;

use super::checkpoint::{self, Checkpoint, Names};
use super::claims::Role;
use super::keys::parse_key;
use super::walk::{walk_slice, Job, Shared, SliceEnd};
use crate::{Db, Error};

/// How the lanes ended.
pub(super) enum End {
    /// Every slice is walked to its end: the final checkpoints.
    Done(Vec<Checkpoint>),
    /// Stopped at a checkpoint (time budget, cancel).
    Stopped,
    /// A worker found nothing left to claim: the rest is other processes'.
    OthersHold,
}

fn complete(c: &Checkpoint) -> Result<bool, Error> {
    let Some(upper) = c.upper_key.as_deref() else {
        return Ok(true);
    };
    match c.last_key.as_deref() {
        Some(last) => Ok(parse_key(last)? == parse_key(upper)?),
        None => Ok(false),
    }
}

/// Walks the run's slices on `lanes` connections until none is left to this process.
pub(super) async fn walk(
    db: &mut Db,
    job: &Job<'_>,
    shared: &Shared<'_>,
    lanes: usize,
    names: &Names,
) -> Result<End, Error> {
    let mut others = Vec::with_capacity(lanes.saturating_sub(1));
    for _ in 1..lanes {
        others.push(db.open_another().await?);
    }
    let result = passes(db, &mut others, job, shared, names).await;
    for o in others {
        o.close().await?;
    }
    result
}

async fn passes(
    db: &mut Db,
    others: &mut [Db],
    job: &Job<'_>,
    shared: &Shared<'_>,
    names: &Names,
) -> Result<End, Error> {
    let claims = job.claims.expect("a run's walk has claims");
    let (v, d) = (job.step.version.as_str(), job.step.direction.as_str());
    let mut last_said = Instant::now() - Duration::from_secs(60);
    loop {
        if claims.role() == Role::Worker && !checkpoint::in_progress(db, job.step, names).await? {
            // The owner recorded the migration while this worker was between slices.
            return Ok(End::OthersHold);
        }
        let cps = checkpoint::resume(db, job.m, job.step, names).await?;
        shared.observe(cps.iter().map(|c| c.rows_done).sum());
        let states = claims.states(db, v, d).await?;
        let mut open = Vec::new();
        for c in &cps {
            if !complete(c)? {
                open.push(c.clone());
            }
        }
        if open.is_empty() {
            return Ok(End::Done(cps));
        }
        let held_elsewhere = |c: &Checkpoint| {
            states.iter().any(|s| {
                s.slice == c.slice
                    && s.live
                    && !s.done
                    && s.holder != claims.holder()
                    && !(claims.role() == Role::Owner && s.holder.starts_with("owner:"))
            })
        };
        let (held, free): (Vec<Checkpoint>, Vec<Checkpoint>) =
            open.into_iter().partition(|c| held_elsewhere(c));
        if free.is_empty() {
            if claims.role() == Role::Worker {
                return Ok(End::OthersHold);
            }
            if shared.should_stop() {
                return Ok(End::Stopped);
            }
            if last_said.elapsed() >= Duration::from_secs(2) {
                last_said = Instant::now();
                let mut holders: Vec<String> = states
                    .iter()
                    .filter(|s| held.iter().any(|c| c.slice == s.slice))
                    .map(|s| format!("slice {}: {}", s.slice, s.holder))
                    .collect();
                holders.dedup();
                shared.event(&Event::SlicesWaiting {
                    version: v.into(),
                    rows_done: shared.rows_done() as u64,
                    rows_total: shared.rows_total as u64,
                    held_by: holders,
                });
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        }
        let queue = Mutex::new(free);
        let mut conns: Vec<&mut Db> = std::iter::once(&mut *db).chain(others.iter_mut()).collect();
        let results = futures_util::future::join_all(
            conns
                .iter_mut()
                .map(|c| lane(c, job, &queue, shared, names)),
        )
        .await;
        let mut stopped = false;
        for r in results {
            stopped |= r? == SliceEnd::Stopped;
        }
        if stopped {
            return Ok(End::Stopped);
        }
        // A slice another process claimed between the read and the claim is
        // looked at again after a pause, not in a busy loop.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One connection: claims the next free slice, walks it from its checkpoint
/// as it is now (another process may have walked part of it before it died),
/// marks it done; until the queue is empty.
async fn lane(
    db: &mut Db,
    job: &Job<'_>,
    queue: &Mutex<Vec<Checkpoint>>,
    shared: &Shared<'_>,
    names: &Names,
) -> Result<SliceEnd, Error> {
    let claims = job.claims.expect("a run's walk has claims");
    let (v, d) = (job.step.version.as_str(), job.step.direction.as_str());
    loop {
        let next = {
            let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
            if q.is_empty() {
                None
            } else {
                Some(q.remove(0))
            }
        };
        let Some(c) = next else {
            return Ok(SliceEnd::Done);
        };
        // Not the time budget: a slice walks at least one batch per run, so a
        // tiny budget still makes progress.
        if shared.stopping() {
            return Ok(SliceEnd::Stopped);
        }
        let slice = c.slice;
        if !claims.claim(db, v, d, slice).await? {
            continue;
        }
        if claims.role() == Role::Worker && !checkpoint::in_progress(db, job.step, names).await? {
            return Ok(SliceEnd::Done);
        }
        let fresh = checkpoint::resume(db, job.m, job.step, names)
            .await?
            .into_iter()
            .find(|x| x.slice == slice)
            .unwrap_or(c);
        match walk_slice(db, job, fresh, shared).await? {
            (SliceEnd::Done, _) => claims.done(db, v, d, slice).await?,
            (SliceEnd::Stopped, _) => return Ok(SliceEnd::Stopped),
        }
    }
}
