//! `instar up --worker`: joins the data migration another process's run is
//! walking, without the run lock. It claims free slices (each with a lease
//! in `instar_claims`) and walks them batch by batch, each batch committed
//! with its checkpoint and the claim's renewal; it leaves when nothing is
//! left for it to claim. The run's owner (holding the run lock) records the
//! migration applied once every slice is done.

use std::time::{Duration, Instant};

use instar_core::event::EventSink;
use instar_core::history::derive;
use instar_core::plan::{self, Target};
use instar_core::Source;
use serde::Serialize;

use super::{batched, plan_options, RunOptions};
use crate::{Db, Error};

/// What a worker did.
#[derive(Debug, Clone, Serialize)]
pub struct Joined {
    /// The data migration it joined, if one was in progress.
    pub version: Option<String>,
    /// Why it joined none.
    pub reason: Option<String>,
}

/// Waits (at most `opts.lock_timeout`) for a data migration in progress that
/// the files agree with, and walks the slices it can claim.
pub async fn join(
    db: &mut Db,
    source: &Source,
    opts: &RunOptions,
    sink: &mut dyn EventSink,
) -> Result<Joined, Error> {
    if let Some(why) = db.engine.parallel_refusal() {
        return Err(Error::Unsupported(format!(
            "--worker needs PostgreSQL or MySQL: {why}"
        )));
    }
    let opts = RunOptions {
        worker: true,
        ..opts.clone()
    };
    let deadline = Instant::now() + opts.lock_timeout;
    loop {
        let state = derive(&db.read_history().await?);
        // The files must agree with the history: a worker of another
        // migration set is refused here, or when its script's checksum
        // differs from the run's checkpoints.
        let p = plan::plan(
            &source.migrations,
            &state,
            &plan_options(db, Target::Up { to: None }, &opts),
        )?;
        let first = p.steps.first();
        match first {
            Some(step) if step.resume_row.is_some() && batched(&source.migrations[step.index]) => {
                let m = &source.migrations[step.index];
                crate::data::run(db, m, step, &opts, sink).await?;
                return Ok(Joined {
                    version: Some(step.version.clone()),
                    reason: None,
                });
            }
            _ if Instant::now() >= deadline => {
                let reason = match first {
                    None => "the database is up to date: no data migration to join".to_string(),
                    Some(s) => format!(
                        "the next step is {} {}, not a data migration in progress (start one with `instar up --slices N`; workers join it)",
                        s.version, source.migrations[s.index].name
                    ),
                };
                return Ok(Joined {
                    version: None,
                    reason: Some(reason),
                });
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}
