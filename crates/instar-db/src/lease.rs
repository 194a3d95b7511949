//! The run lock as a lease: a row of `instar_lock` naming its holder (run,
//! host, process) and when it expires, renewed by a heartbeat on a
//! connection of its own while the run lasts, and taken over by another
//! runner only once it has expired. For clusters whose advisory lock is not
//! cluster-wide (MariaDB Galera: `GET_LOCK` is local to a node).
//!
//! Expiry is read on the database's clock, never a runner's, so runners on
//! machines whose clocks differ agree. Every history write of the holder
//! first renews the lease in the same transaction ([`Fence`]) and fails when
//! the lease is no longer its own: a runner paused past its lease stops
//! before writing. Two runners writing the row at once find out at commit (a
//! serialization failure, Galera's certification conflict): "held by another".

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::conn::{query, Conn};
use crate::engine::Engine;
use crate::{Db, Error};

/// The lease table, beside the history table.
pub const LEASE_TABLE: &str = "instar_lock";

/// How a run keeps other runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockStrategy {
    /// The engine's advisory lock, or a lease where that is not cluster-wide.
    #[default]
    Auto,
    /// PostgreSQL `pg_advisory_lock`, MySQL `GET_LOCK`, SQLite a lock file.
    Advisory,
    /// A lease row with a heartbeat.
    Lease,
    /// No lock: the platform serialises deploys.
    None,
}

impl LockStrategy {
    /// Parses `auto`, `advisory`, `lease` or `none`.
    pub fn parse(s: &str) -> Result<LockStrategy, String> {
        Ok(match s {
            "auto" => LockStrategy::Auto,
            "advisory" => LockStrategy::Advisory,
            "lease" => LockStrategy::Lease,
            "none" => LockStrategy::None,
            other => return Err(format!("lock {other:?}: auto, advisory, lease or none")),
        })
    }

    /// Its name in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            LockStrategy::Auto => "auto",
            LockStrategy::Advisory => "advisory",
            LockStrategy::Lease => "lease",
            LockStrategy::None => "none",
        }
    }
}

/// A lease as its row says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeaseHolder {
    /// The run holding it (`<run id>:<pid>`).
    pub holder: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id.
    pub pid: i64,
    /// Milliseconds until it expires, on the database's clock (negative: expired).
    pub expires_in_ms: i64,
}

impl LeaseHolder {
    /// Whether it has expired.
    pub fn expired(&self) -> bool {
        self.expires_in_ms < 0
    }
}

impl std::fmt::Display for LeaseHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "run {} on {} (pid {}), ",
            self.holder, self.host, self.pid
        )?;
        if self.expired() {
            write!(f, "expired {:.1}s ago", -self.expires_in_ms as f64 / 1000.0)
        } else {
            write!(f, "expires in {:.1}s", self.expires_in_ms as f64 / 1000.0)
        }
    }
}

/// The lease this run holds: what its history writes check, and its heartbeat.
pub(crate) struct Held {
    fence: Fence,
    /// Tells the heartbeat's thread to stop.
    stop: Arc<AtomicBool>,
}

impl Held {
    pub(crate) fn fence(&self) -> &Fence {
        &self.fence
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // It ends within a beat; after the row is gone, a last renewal finds
        // nothing to renew and ends it too.
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Renews a lease every third of its length until stopped or lost, on a
/// connection of its own (opened again after an error, with `init_sql`).
struct Heartbeat {
    url: String,
    init_sql: Vec<String>,
    every: Duration,
    fence: Fence,
    stop: Arc<AtomicBool>,
}

impl Heartbeat {
    fn run(self) {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            // Without a heartbeat the lease runs out; every write checks it.
            return;
        };
        rt.block_on(async move {
            let mut conn: Option<Conn> = None;
            let mut next = std::time::Instant::now() + self.every;
            while !self.stop.load(Ordering::SeqCst) {
                tokio::time::sleep(self.every.min(Duration::from_millis(50))).await;
                if std::time::Instant::now() < next {
                    continue;
                }
                next = std::time::Instant::now() + self.every;
                if conn.is_none() {
                    conn = self.connect().await;
                }
                let Some(c) = conn.as_mut() else { continue };
                if self.fence.check(c).await.is_err() {
                    if self.fence.lost.load(Ordering::SeqCst) {
                        return;
                    }
                    conn = None;
                }
            }
        });
    }

    async fn connect(&self) -> Option<Conn> {
        use sqlx::Connection;
        let mut c = sqlx::AnyConnection::connect(&self.url).await.ok()?;
        for s in &self.init_sql {
            sqlx::raw_sql(s).execute(&mut c).await.ok()?;
        }
        Some(Conn::Any(c))
    }
}

/// Renews the holder's lease in the caller's transaction, or fails when it
/// is no longer the holder's.
#[derive(Debug, Clone)]
pub(crate) struct Fence {
    sql: String,
    name: String,
    holder: String,
    ttl_ms: i64,
    lost: Arc<AtomicBool>,
    /// `EXISTS (…)`: the holder's lease is valid now (literals inlined).
    condition: String,
}

impl Fence {
    /// The condition a guarded write carries: the write and the check are
    /// one statement, so no pause of this process can fall between them.
    pub(crate) fn condition(&self) -> &str {
        &self.condition
    }

    /// The error of a run whose lease is gone.
    pub(crate) fn lost(&self) -> Error {
        Error::Lock(format!(
            "the run lock's lease {} is no longer this run's (it expired, and another runner may hold it now): stopped before writing. `instar status` shows who holds it; run again when it is free",
            self.name
        ))
    }

    /// Renews the lease (in the open transaction, its row stays locked until
    /// the commit: no runner takes it over meanwhile), or fails when it is
    /// no longer the holder's.
    pub(crate) async fn check(&self, conn: &mut Conn) -> Result<(), Error> {
        let lost = || self.lost();
        if self.lost.load(Ordering::SeqCst) {
            return Err(lost());
        }
        let r = query(&self.sql)
            .bind(self.ttl_ms)
            .bind(self.name.as_str())
            .bind(self.holder.as_str())
            .execute(conn)
            .await
            .map_err(|e| Error::query("renewing the run lock's lease", e))?;
        if r.rows_affected == 0 {
            self.lost.store(true, Ordering::SeqCst);
            return Err(lost());
        }
        Ok(())
    }
}

fn table(db: &Db) -> String {
    db.sibling_table(LEASE_TABLE)
}

/// `UPDATE … SET expires_ms = now + ttl` for the holder's own, unexpired lease.
fn renew_sql(e: &dyn Engine, table: &str) -> String {
    let now = e.now_ms_sql();
    // `beats` changes every time: MySQL counts changed rows, not matched ones.
    crate::engine::marks(
        e,
        &format!("UPDATE {table} SET beats = beats + 1, renewed_ms = {now}, expires_ms = {now} + ? WHERE name = ? AND holder = ? AND expires_ms >= {now}"),
    )
}

/// Whether `e` is the engine saying another transaction got there first.
fn conflict(e: &sqlx::Error) -> bool {
    crate::retry::retryable(e)
}

fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

impl Db {
    pub(crate) async fn ensure_lease_table(&mut self) -> Result<(), Error> {
        // Looked for first: on Galera, DDL runs in total order on every node
        // and would abort the holder's transactions on this table.
        if self.table_exists(LEASE_TABLE).await? {
            return Ok(());
        }
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} (name VARCHAR(255) NOT NULL PRIMARY KEY, holder VARCHAR(255) NOT NULL, host VARCHAR(255) NOT NULL, pid BIGINT NOT NULL, acquired_ms BIGINT NOT NULL, renewed_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL, beats BIGINT NOT NULL DEFAULT 0){}",
            table(self),
            self.engine.table_options()
        );
        // Two first runners at once: PostgreSQL's `IF NOT EXISTS` is not
        // atomic (the loser hits a unique key of its catalog), but the table is there.
        match crate::db::run_sql(&mut self.conn, &sql, "creating the lease table").await {
            Err(_) if self.table_exists(LEASE_TABLE).await? => Ok(()),
            r => r,
        }
    }

    /// One try at the lease: `true` when this run holds it now (a free one
    /// taken, or an expired one taken over).
    pub(crate) async fn try_lease(&mut self) -> Result<bool, Error> {
        let e = self.engine;
        let t = table(self);
        let now = e.now_ms_sql();
        let ttl = self.settings.lease.as_millis() as i64;
        let (name, holder) = (self.lock_name.clone(), self.lease_holder());
        let host = crate::runner::operator();
        let pid = std::process::id() as i64;
        let insert = crate::engine::marks(
            e,
            &format!("INSERT INTO {t} (name, holder, host, pid, acquired_ms, renewed_ms, expires_ms) VALUES (?, ?, ?, ?, {now}, {now}, {now} + ?)"),
        );
        let r = query(&insert)
            .bind(name.as_str())
            .bind(holder.as_str())
            .bind(host.as_str())
            .bind(pid)
            .bind(ttl)
            .execute(&mut self.conn)
            .await;
        match r {
            Ok(_) => return Ok(true),
            Err(x) if unique_violation(&x) || conflict(&x) => {}
            Err(x) => return Err(Error::query("taking the run lock's lease", x)),
        }
        let take_over = crate::engine::marks(
            e,
            &format!("UPDATE {t} SET holder = ?, host = ?, pid = ?, acquired_ms = {now}, renewed_ms = {now}, expires_ms = {now} + ? WHERE name = ? AND expires_ms < {now}"),
        );
        let r = query(&take_over)
            .bind(holder.as_str())
            .bind(host.as_str())
            .bind(pid)
            .bind(ttl)
            .bind(name.as_str())
            .execute(&mut self.conn)
            .await;
        match r {
            Ok(r) => Ok(r.rows_affected == 1),
            Err(x) if conflict(&x) => Ok(false),
            Err(x) => Err(Error::query("taking over an expired lease", x)),
        }
    }

    /// Starts the heartbeat of the lease just taken: renewed every third of
    /// its length on a connection of its own.
    pub(crate) fn hold_lease(&mut self) -> Held {
        let e = self.engine;
        let lost = Arc::new(AtomicBool::new(false));
        let lit = |s: &str| format!("'{}'", s.replace('\'', "''"));
        let fence = Fence {
            sql: renew_sql(e, &table(self)),
            name: self.lock_name.clone(),
            holder: self.lease_holder(),
            ttl_ms: self.settings.lease.as_millis() as i64,
            lost: lost.clone(),
            condition: format!(
                "EXISTS (SELECT 1 FROM {} WHERE name = {} AND holder = {} AND expires_ms >= {})",
                table(self),
                lit(&self.lock_name),
                lit(&self.lease_holder()),
                e.now_ms_sql()
            ),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let beat = Heartbeat {
            url: self.url.driver_url.clone(),
            init_sql: self.settings.init_sql.clone(),
            every: (self.settings.lease / 3).max(Duration::from_millis(50)),
            fence: fence.clone(),
            stop: stop.clone(),
        };
        // A thread and a runtime of its own: a run that blocks its runtime
        // (a backup tool, a long statement on a single-threaded runtime)
        // does not starve the heartbeat.
        let _ = std::thread::Builder::new()
            .name("instar-lease".into())
            .spawn(move || beat.run());
        Held { fence, stop }
    }

    /// Gives the lease back (only this run's).
    pub(crate) async fn release_lease(&mut self) -> Result<(), Error> {
        let sql = crate::engine::marks(
            self.engine,
            &format!("DELETE FROM {} WHERE name = ? AND holder = ?", table(self)),
        );
        query(&sql)
            .bind(self.lock_name.as_str())
            .bind(self.lease_holder().as_str())
            .execute(&mut self.conn)
            .await
            .map_err(|e| Error::query("giving the run lock's lease back", e))?;
        Ok(())
    }

    /// The lease's holder, if there is a lease row.
    pub async fn lease_holder_now(&mut self) -> Result<Option<LeaseHolder>, Error> {
        if !self.table_exists(LEASE_TABLE).await? {
            return Ok(None);
        }
        let sql = crate::engine::marks(
            self.engine,
            &format!(
                "SELECT holder, host, pid, expires_ms - {} FROM {} WHERE name = ?",
                self.engine.now_ms_sql(),
                table(self)
            ),
        );
        let row = query(&sql)
            .bind(self.lock_name.as_str())
            .fetch_optional(&mut self.conn)
            .await
            .map_err(|e| Error::query("reading the run lock's lease", e))?;
        let Some(r) = row else { return Ok(None) };
        let v = crate::db::row_values(&r)?;
        let text = |i: usize| crate::db::text_of(&v, i);
        let int = |i: usize| {
            v.get(i)
                .and_then(|x| {
                    x.as_i64()
                        .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
                })
                .unwrap_or(0)
        };
        Ok(Some(LeaseHolder {
            holder: text(0),
            host: text(1),
            pid: int(2),
            expires_in_ms: int(3),
        }))
    }

    /// Breaks the lease `holder` holds (`instar unlock`): only that one, so a
    /// lease taken meanwhile by another runner stays.
    pub async fn break_lease(&mut self, holder: &LeaseHolder) -> Result<bool, Error> {
        let sql = crate::engine::marks(
            self.engine,
            &format!("DELETE FROM {} WHERE name = ? AND holder = ?", table(self)),
        );
        let r = query(&sql)
            .bind(self.lock_name.as_str())
            .bind(holder.holder.as_str())
            .execute(&mut self.conn)
            .await
            .map_err(|e| Error::query("breaking the run lock's lease", e))?;
        Ok(r.rows_affected == 1)
    }

    /// The strategy of `settings.lock` for this database: `auto` is a lease
    /// on a Galera cluster (whose `GET_LOCK` is local to a node), else the
    /// engine's advisory lock.
    pub(crate) async fn resolve_strategy(&mut self) -> Result<LockStrategy, Error> {
        let s = self.settings.lock;
        let d = self.dialect();
        if d == instar_core::Dialect::Sqlite && s == LockStrategy::Lease {
            return Err(Error::Unsupported(
                "lock = \"lease\" is for a server that runners on several machines reach; a SQLite file's run lock is its lock file: use auto or advisory".into(),
            ));
        }
        if s != LockStrategy::Auto {
            return Ok(s);
        }
        let traits = self.profile.traits();
        if !traits.tested_here {
            return Ok(traits.lock);
        }
        Ok(
            if d == instar_core::Dialect::MySql && self.galera().await? {
                LockStrategy::Lease
            } else {
                LockStrategy::Advisory
            },
        )
    }

    /// Whether this MySQL-family server is a Galera cluster node (`wsrep_on`).
    pub async fn galera(&mut self) -> Result<bool, Error> {
        if self.dialect() != instar_core::Dialect::MySql {
            return Ok(false);
        }
        let rows = query("SHOW VARIABLES LIKE 'wsrep_on'")
            .fetch_all(&mut self.conn)
            .await
            .map_err(|e| Error::query("asking whether the server is a Galera node", e))?;
        Ok(rows.iter().any(|r| {
            crate::db::row_values(r)
                .ok()
                .and_then(|v| {
                    v.get(1)
                        .and_then(|x| x.as_str())
                        .map(|s| s.eq_ignore_ascii_case("ON"))
                })
                .unwrap_or(false)
        }))
    }

    /// Renews this run's lease in the open transaction, or fails when it is
    /// no longer this run's (nothing to do under another strategy).
    pub(crate) async fn fence(&mut self) -> Result<(), Error> {
        match self.current_fence().cloned() {
            Some(f) => f.check(&mut self.conn).await,
            None => Ok(()),
        }
    }

    /// The lease this connection's writes are fenced by: its own, or its
    /// holder's (a worker connection).
    pub(crate) fn current_fence(&self) -> Option<&Fence> {
        self.lease
            .as_ref()
            .map(|l| l.fence())
            .or(self.worker_fence.as_ref())
    }

    /// The lock strategy in force.
    pub fn lock_strategy(&self) -> LockStrategy {
        self.strategy
    }

    /// Breaks `holder`'s lease and writes an `unlock` row to the history
    /// (who broke whose lease, and how stale it was): `instar unlock`.
    pub async fn unlock_stale(&mut self, holder: &LeaseHolder) -> Result<bool, Error> {
        if !self.break_lease(holder).await? {
            return Ok(false);
        }
        self.ensure_history().await?;
        let mut row = crate::runner::step::blank_row(
            String::new(),
            "unlock".into(),
            instar_core::history::EventKind::Unlock,
            instar_core::history::Direction::Up,
            "lock",
        );
        row.finished_at = Some(row.started_at.clone());
        row.note = Some(format!("broke the run lock's lease held by {holder}"));
        let (h, conn) = self.parts();
        h.insert(conn, &row).await?;
        Ok(true)
    }

    /// This run's name in the lease row.
    fn lease_holder(&self) -> String {
        format!("{}:{}", self.run_id(), std::process::id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_parse_and_say_their_name() {
        for s in ["auto", "advisory", "lease", "none"] {
            assert_eq!(LockStrategy::parse(s).unwrap().as_str(), s);
        }
        assert!(LockStrategy::parse("mutex")
            .unwrap_err()
            .contains("auto, advisory, lease or none"));
    }

    #[test]
    fn a_holder_says_when_it_expires() {
        let mut h = LeaseHolder {
            holder: "r1:7".into(),
            host: "web-1".into(),
            pid: 7,
            expires_in_ms: 2500,
        };
        assert_eq!(h.to_string(), "run r1:7 on web-1 (pid 7), expires in 2.5s");
        h.expires_in_ms = -1000;
        assert!(h.expired());
        assert_eq!(h.to_string(), "run r1:7 on web-1 (pid 7), expired 1.0s ago");
    }
}
