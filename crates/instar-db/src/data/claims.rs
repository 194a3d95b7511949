//! Slices of a data migration claimed by the processes walking them, so that
//! workers on several machines share one run (`instar up --worker` joins the
//! run `instar up --slices N` began).
//!
//! A claim is a row of `instar_claims` (version, direction, slice → holder,
//! expiry on the database's clock, done). A process walks only a slice it
//! claimed; every batch renews the claim in the batch's own transaction and
//! fails when the claim is no longer its own (a worker paused or cut off past
//! its lease never writes after another took the slice over). A slice whose
//! worker died is claimed again once its lease expires. A run's owner holds
//! the run lock, so the claims of an earlier owner (a killed run) are taken
//! over at once.

use serde_json::Value;

use crate::conn::query;
use crate::engine::marks;
use crate::{Db, Error};

/// The claims table, beside the checkpoints.
pub const CLAIMS_TABLE: &str = "instar_claims";

/// Who claims: the run's owner (holding the run lock) or a worker that joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `instar up`: holds the run lock, records the migration when every slice is done.
    Owner,
    /// `instar up --worker`: walks slices, records nothing else.
    Worker,
}

/// This process's claims on one run's slices.
pub(crate) struct Claims {
    table: String,
    holder: String,
    role: Role,
    ttl_ms: i64,
}

/// Where one slice's claim stands.
#[derive(Debug, Clone)]
pub(crate) struct ClaimState {
    pub slice: i64,
    pub holder: String,
    pub live: bool,
    pub done: bool,
}

impl Claims {
    pub(crate) fn new(db: &Db, role: Role) -> Claims {
        let kind = match role {
            Role::Owner => "owner",
            Role::Worker => "worker",
        };
        Claims {
            table: db.sibling_table(CLAIMS_TABLE),
            holder: format!(
                "{kind}:{}:{}@{}",
                db.run_id(),
                std::process::id(),
                crate::runner::operator()
            ),
            role,
            ttl_ms: db.settings.lease.as_millis() as i64,
        }
    }

    /// This process's holder id.
    pub(crate) fn holder(&self) -> &str {
        &self.holder
    }

    /// Owner or worker.
    pub(crate) fn role(&self) -> Role {
        self.role
    }

    /// Creates the table when missing (looked for first: see `ensure_lease_table`).
    pub(crate) async fn ensure(&self, db: &mut Db) -> Result<(), Error> {
        if db.table_exists(CLAIMS_TABLE).await? {
            return Ok(());
        }
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} (version VARCHAR(255) NOT NULL, direction VARCHAR(8) NOT NULL, slice BIGINT NOT NULL, holder VARCHAR(255) NOT NULL, expires_ms BIGINT NOT NULL, beats BIGINT NOT NULL DEFAULT 0, done INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (version, direction, slice)){}",
            self.table,
            db.engine.table_options()
        );
        match crate::db::run_sql(&mut db.conn, &sql, "creating the claims table").await {
            Err(_) if db.table_exists(CLAIMS_TABLE).await? => Ok(()),
            r => r,
        }
    }

    /// Claims `slice` unless another live process holds it or it is done:
    /// `true` when this process holds it now.
    pub(crate) async fn claim(
        &self,
        db: &mut Db,
        version: &str,
        direction: &str,
        slice: i64,
    ) -> Result<bool, Error> {
        let now = db.engine.now_ms_sql();
        let insert = marks(
            db.engine,
            &format!("INSERT INTO {} (version, direction, slice, holder, expires_ms, beats, done) VALUES (?, ?, ?, ?, {now} + ?, 0, 0)", self.table),
        );
        let r = query(&insert)
            .bind(version)
            .bind(direction)
            .bind(slice)
            .bind(self.holder.as_str())
            .bind(self.ttl_ms)
            .execute(&mut db.conn)
            .await;
        match r {
            Ok(_) => return Ok(true),
            Err(e) if unique_or_conflict(&e) => {}
            Err(e) => return Err(Error::query("claiming a slice", e)),
        }
        // An expired claim, this process's own, one marked done on a slice
        // that is not (a claim an earlier run of the same migration left), or
        // (for the run's owner, which holds the run lock) one an earlier owner
        // left when it died. Only unfinished slices are ever claimed.
        let owner_takes = i64::from(self.role == Role::Owner);
        let take = marks(
            db.engine,
            &format!("UPDATE {} SET holder = ?, expires_ms = {now} + ?, beats = beats + 1, done = 0 WHERE version = ? AND direction = ? AND slice = ? AND (done = 1 OR expires_ms < {now} OR holder = ? OR (? = 1 AND holder LIKE 'owner:%'))", self.table),
        );
        let r = query(&take)
            .bind(self.holder.as_str())
            .bind(self.ttl_ms)
            .bind(version)
            .bind(direction)
            .bind(slice)
            .bind(self.holder.as_str())
            .bind(owner_takes)
            .execute(&mut db.conn)
            .await;
        match r {
            Ok(r) => Ok(r.rows_affected == 1),
            Err(e) if crate::retry::retryable(&e) => Ok(false),
            Err(e) => Err(Error::query("claiming a slice", e)),
        }
    }

    /// Renews the claim inside the open transaction, failing when the slice is
    /// no longer this process's (the transaction's writes must not commit).
    pub(crate) async fn fence(
        &self,
        db: &mut Db,
        version: &str,
        direction: &str,
        slice: i64,
    ) -> Result<(), Error> {
        let now = db.engine.now_ms_sql();
        let sql = marks(
            db.engine,
            &format!("UPDATE {} SET expires_ms = {now} + ?, beats = beats + 1 WHERE version = ? AND direction = ? AND slice = ? AND holder = ? AND done = 0 AND expires_ms >= {now}", self.table),
        );
        let r = query(&sql)
            .bind(self.ttl_ms)
            .bind(version)
            .bind(direction)
            .bind(slice)
            .bind(self.holder.as_str())
            .execute(&mut db.conn)
            .await
            .map_err(|e| Error::query("renewing a slice's claim", e))?;
        if r.rows_affected == 1 {
            return Ok(());
        }
        Err(Error::DataHalted {
            version: version.into(),
            reason: format!(
                "slice {slice} is no longer this process's ({}): its claim expired (the process was paused or cut off longer than [run] lease) and another worker may have taken it over; nothing more was written by this process. `instar status` shows where the run stands",
                self.holder
            ),
        })
    }

    /// Marks a slice this process walked to its end as done.
    pub(crate) async fn done(
        &self,
        db: &mut Db,
        version: &str,
        direction: &str,
        slice: i64,
    ) -> Result<(), Error> {
        let sql = marks(
            db.engine,
            &format!("UPDATE {} SET done = 1, beats = beats + 1 WHERE version = ? AND direction = ? AND slice = ? AND holder = ?", self.table),
        );
        query(&sql)
            .bind(version)
            .bind(direction)
            .bind(slice)
            .bind(self.holder.as_str())
            .execute(&mut db.conn)
            .await
            .map_err(|e| Error::query("marking a slice done", e))?;
        Ok(())
    }

    /// Every claim of a run.
    pub(crate) async fn states(
        &self,
        db: &mut Db,
        version: &str,
        direction: &str,
    ) -> Result<Vec<ClaimState>, Error> {
        let now = db.engine.now_ms_sql();
        let sql = marks(
            db.engine,
            &format!("SELECT slice, holder, CASE WHEN expires_ms >= {now} THEN 1 ELSE 0 END, done FROM {} WHERE version = ? AND direction = ? ORDER BY slice", self.table),
        );
        let rows = query(&sql)
            .bind(version)
            .bind(direction)
            .fetch_all(&mut db.conn)
            .await
            .map_err(|e| Error::query("reading the claims of a run", e))?;
        rows.iter()
            .map(|r| {
                let v = crate::db::row_values(r)?;
                let n = |i: usize| v.get(i).and_then(Value::as_i64).unwrap_or(0);
                Ok(ClaimState {
                    slice: n(0),
                    holder: v
                        .get(1)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    live: n(2) == 1,
                    done: n(3) == 1,
                })
            })
            .collect()
    }

    /// Forgets a finished run's claims.
    pub(crate) async fn clear(
        &self,
        db: &mut Db,
        version: &str,
        direction: &str,
    ) -> Result<(), Error> {
        let sql = marks(
            db.engine,
            &format!(
                "DELETE FROM {} WHERE version = ? AND direction = ?",
                self.table
            ),
        );
        query(&sql)
            .bind(version)
            .bind(direction)
            .execute(&mut db.conn)
            .await
            .map_err(|e| Error::query("clearing a run's claims", e))?;
        Ok(())
    }
}

fn unique_or_conflict(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.kind() == sqlx::error::ErrorKind::UniqueViolation)
        || crate::retry::retryable(e)
}
