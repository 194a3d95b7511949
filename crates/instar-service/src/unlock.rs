//! `instar unlock`: breaking a run lock's lease that its run left behind.

use instar_db::lease::{LeaseHolder, LockStrategy};
use instar_db::Db;

use crate::{Error, Service};

/// What `unlock` did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "unlocked", rename_all = "snake_case")]
pub enum Unlocked {
    /// No lease row: nothing to break (an advisory lock ends with its session).
    Nothing {
        /// The strategy in force.
        strategy: LockStrategy,
    },
    /// The lease was broken, and an `unlock` row written to the history.
    Broken {
        /// Whose it was.
        holder: LeaseHolder,
    },
    /// The lease changed hands while it was being broken: left alone.
    Changed,
}

impl Service {
    /// Breaks the run lock's lease once it has expired (its run is gone: a
    /// live run renews it), or at once with `force` (only for a run known to
    /// be dead); writes an audit row naming whose lease it was.
    pub async fn unlock(&self, force: bool) -> Result<Unlocked, Error> {
        self.with_db(async |db: &mut Db| {
            let Some(h) = db.lease_holder_now().await? else {
                return Ok(Unlocked::Nothing {
                    strategy: db.lock_strategy(),
                });
            };
            if !h.expired() && !force {
                return Err(Error::Db(instar_db::Error::Lock(format!(
                    "the run lock's lease is held by {h}; its run renews it while it lasts, so it is not stale. Wait for it, or pass --force if that run is known to be dead"
                ))));
            }
            Ok(if db.unlock_stale(&h).await? {
                Unlocked::Broken { holder: h }
            } else {
                Unlocked::Changed
            })
        })
        .await
    }
}
