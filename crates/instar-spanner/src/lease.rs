//! The run lock on Spanner: a lease row in `instar_lock`, read and written on
//! Spanner's clock, renewed by a heartbeat on a session of its own, taken
//! over only after it expires. Every history write renews it in the same
//! transaction ([`Lease::fence`]): a runner paused past its lease finds the
//! row no longer its own and stops before writing. Spanner's transactions are
//! serializable, so two runners taking the row at once cannot both succeed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::client::{Client, Param, Session, Txn};
use crate::Error;

const NAME: &str = "instar";

/// Who holds the lock, as `status` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LockView {
    /// `run_id:pid`.
    pub holder: String,
    /// The holder's `user@host`.
    pub host: Option<String>,
    /// When it took the lock.
    pub acquired_at: String,
    /// When the lease runs out unless renewed.
    pub expires_at: String,
    /// Whether it has run out (on Spanner's clock).
    pub expired: bool,
    /// Heartbeats so far.
    pub beats: i64,
}

/// The lock row, if any.
pub fn view(session: &Session) -> Result<Option<LockView>, Error> {
    if !crate::tables::existing(session)?
        .iter()
        .any(|t| t == crate::tables::LOCK)
    {
        return Ok(None);
    }
    let rows = session.query(
        "SELECT holder, host, CAST(acquired_at AS STRING), CAST(expires_at AS STRING), expires_at < CURRENT_TIMESTAMP(), beats FROM instar_lock WHERE name = @name",
        &[("name", Param::Str(NAME.into()))],
    )?;
    Ok(rows.first().map(|r| view_of(r)))
}

fn view_of(r: &[Value]) -> LockView {
    let s = |i: usize| {
        r.get(i)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    LockView {
        holder: s(0),
        host: r.get(1).and_then(Value::as_str).map(String::from),
        acquired_at: s(2),
        expires_at: s(3),
        expired: r.get(4).and_then(Value::as_bool).unwrap_or(false),
        beats: s(5).parse().unwrap_or(0),
    }
}

/// A lease this process holds, with its heartbeat.
pub struct Lease {
    holder: String,
    millis: i64,
    lost: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    heartbeat: Option<JoinHandle<()>>,
}

enum Take {
    Taken,
    Held(LockView),
}

fn take(txn: &mut Txn, holder: &str, host: &str, millis: i64) -> Result<Take, Error> {
    let (rows, _) = txn.execute(
        "SELECT holder, host, CAST(acquired_at AS STRING), CAST(expires_at AS STRING), expires_at < CURRENT_TIMESTAMP(), beats FROM instar_lock WHERE name = @name",
        &[("name", Param::Str(NAME.into()))],
    )?;
    let params = [
        ("name", Param::Str(NAME.into())),
        ("holder", Param::Str(holder.into())),
        ("host", Param::Str(host.into())),
        ("pid", Param::Int(i64::from(std::process::id()))),
        ("ms", Param::Int(millis)),
    ];
    match rows.first().map(|r| view_of(r)) {
        None => {
            txn.execute(
                "INSERT INTO instar_lock (name, holder, host, pid, acquired_at, renewed_at, expires_at, beats) VALUES (@name, @holder, @host, @pid, CURRENT_TIMESTAMP(), CURRENT_TIMESTAMP(), TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL @ms MILLISECOND), 0)",
                &params,
            )?;
            Ok(Take::Taken)
        }
        Some(v) if v.expired => {
            txn.execute(
                "UPDATE instar_lock SET holder = @holder, host = @host, pid = @pid, acquired_at = CURRENT_TIMESTAMP(), renewed_at = CURRENT_TIMESTAMP(), expires_at = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL @ms MILLISECOND), beats = 0 WHERE name = @name AND expires_at < CURRENT_TIMESTAMP()",
                &params,
            )?;
            Ok(Take::Taken)
        }
        Some(v) => Ok(Take::Held(v)),
    }
}

/// The statement that renews a lease only while it is still this holder's.
const RENEW: &str = "UPDATE instar_lock SET renewed_at = CURRENT_TIMESTAMP(), expires_at = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL @ms MILLISECOND), beats = beats + 1 WHERE name = @name AND holder = @holder AND expires_at > CURRENT_TIMESTAMP()";

fn renew(txn: &mut Txn, holder: &str, millis: i64) -> Result<bool, Error> {
    let (_, n) = txn.execute(
        RENEW,
        &[
            ("name", Param::Str(NAME.into())),
            ("holder", Param::Str(holder.into())),
            ("ms", Param::Int(millis)),
        ],
    )?;
    Ok(n == 1)
}

impl Lease {
    /// Takes the lease, waiting at most `timeout` for a live holder to finish
    /// or its lease to run out, and starts the heartbeat.
    pub fn acquire(
        client: &Client,
        session: &Session,
        run_id: &str,
        lease: Duration,
        timeout: Duration,
    ) -> Result<Lease, Error> {
        let holder = format!("{run_id}:{}", std::process::id());
        let host = instar_db::runner::operator();
        let millis = lease.as_millis().max(1000) as i64;
        let started = Instant::now();
        loop {
            match session.rw(|txn| take(txn, &holder, &host, millis))? {
                Take::Taken => break,
                Take::Held(v) if started.elapsed() >= timeout => {
                    return Err(Error::Locked(format!(
                        "the run lock is held by {} ({}) since {}, its lease runs until {}: another `instar` is running. Wait for it; if it died, its lease expires by itself (then `instar unlock` records breaking it, `--force` breaks a live one)",
                        v.holder,
                        v.host.as_deref().unwrap_or("unknown host"),
                        v.acquired_at,
                        v.expires_at
                    )))
                }
                Take::Held(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
        let lost = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let heartbeat = {
            let (client, holder, lost, stop) =
                (client.clone(), holder.clone(), lost.clone(), stop.clone());
            std::thread::spawn(move || beat(&client, &holder, millis, &lost, &stop))
        };
        Ok(Lease {
            holder,
            millis,
            lost,
            stop,
            heartbeat: Some(heartbeat),
        })
    }

    /// The holder's id.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Renews the lease inside `txn`, failing when it is no longer this
    /// holder's: the writes of the same transaction then never commit.
    pub fn fence(&self, txn: &mut Txn) -> Result<(), Error> {
        if self.lost.load(Ordering::SeqCst) || !renew(txn, &self.holder, self.millis)? {
            self.lost.store(true, Ordering::SeqCst);
            return Err(Error::LostLease(format!(
                "held as {}; it expired or was broken",
                self.holder
            )));
        }
        Ok(())
    }

    /// Stops the heartbeat and deletes the row if it is still this holder's.
    pub fn release(mut self, session: &Session) -> Result<(), Error> {
        self.stop_heartbeat();
        session.rw(|txn| {
            txn.execute(
                "DELETE FROM instar_lock WHERE name = @name AND holder = @holder",
                &[
                    ("name", Param::Str(NAME.into())),
                    ("holder", Param::Str(self.holder.clone())),
                ],
            )
        })?;
        Ok(())
    }

    fn stop_heartbeat(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop_heartbeat();
    }
}

fn beat(client: &Client, holder: &str, millis: i64, lost: &AtomicBool, stop: &AtomicBool) {
    let every = Duration::from_millis((millis / 3).max(100) as u64);
    let mut session = None;
    let mut last = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50).min(every));
        if last.elapsed() < every {
            continue;
        }
        last = Instant::now();
        if session.is_none() {
            session = client.session().ok();
        }
        let Some(s) = &session else { continue };
        match s.rw(|txn| renew(txn, holder, millis)) {
            Ok(true) => {}
            Ok(false) => {
                lost.store(true, Ordering::SeqCst);
                return;
            }
            // A failed renewal is tried again on a new session; if the lease
            // runs out meanwhile, the next fenced write finds it.
            Err(_) => session = None,
        }
    }
}

/// Breaks the lease: an expired one, or any with `force`. Returns what was
/// broken (nothing when there was no lease).
pub fn unlock(session: &Session, force: bool) -> Result<Option<LockView>, Error> {
    let Some(v) = view(session)? else {
        return Ok(None);
    };
    if !v.expired && !force {
        return Err(Error::Locked(format!(
            "the lease of {} ({}) runs until {} and is being renewed: a run is alive. `instar unlock --force` breaks it anyway (that run then stops at its next write)",
            v.holder,
            v.host.as_deref().unwrap_or("unknown host"),
            v.expires_at
        )));
    }
    session.rw(|txn| {
        txn.execute(
            "DELETE FROM instar_lock WHERE name = @name AND holder = @holder",
            &[
                ("name", Param::Str(NAME.into())),
                ("holder", Param::Str(v.holder.clone())),
            ],
        )
    })?;
    Ok(Some(v))
}
