//! The store's own records: its schema version, its history, and the run
//! marker that is the lock's record (see [`crate::keys`]).

use serde::{Deserialize, Serialize};

use crate::{keys, Batch, Error, KvStore};

/// One entry of a store's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// 1, 2, 3 … in the order they were written.
    pub seq: u64,
    /// `records` (Rust record migrations), `lens` (a collection moved by its
    /// lenses), `failed` (a run that failed, written after it was undone),
    /// `restore` (a backup put in place).
    pub kind: String,
    /// What ran (the migration's or the step's name).
    pub name: String,
    /// The version before.
    pub from: String,
    /// The version after.
    pub to: String,
    /// The key prefixes it walked.
    pub prefixes: Vec<String>,
    /// Per prefix walked: records before the walk and after it (`[prefix, before, after]`).
    #[serde(default)]
    pub counts: Vec<(String, u64, u64)>,
    /// Records rewritten.
    pub records_changed: u64,
    /// Records left as they were (`on_error = "skip"`).
    pub records_skipped: u64,
    /// Records the application changed under a batch during the run: never
    /// overwritten; one it wrote at the old version was migrated from what it
    /// wrote by a further pass.
    #[serde(default)]
    pub records_left_to_the_application: u64,
    /// When it started (RFC 3339 UTC).
    pub started_at: String,
    /// How long it took.
    pub duration_ms: u64,
    /// Who ran it (`pid@host`).
    pub by: String,
    /// The lens fingerprint or the migrations' names: edited later, `status` says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The backup taken before the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// Why it failed (`failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The store's schema version record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreVersion {
    /// The version.
    pub version: String,
    /// When it was reached.
    pub at: String,
}

/// The record of the run holding the lock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMarker {
    /// Its process.
    pub pid: u32,
    /// Its host.
    pub host: String,
    /// When it started.
    pub started: String,
    /// A token unique to the run.
    pub token: String,
}

/// `pid@host` of this process.
pub fn me() -> String {
    format!("{}@{}", std::process::id(), host())
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".into())
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("bookkeeping records serialize")
}

fn parse<T: for<'de> Deserialize<'de>>(key: &[u8], raw: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(raw).map_err(|e| {
        Error::Config(format!(
            "the store's own record {} is damaged ({e}); it was not written by this Instar",
            keys::show(key)
        ))
    })
}

/// The store's schema version, if one was recorded.
pub fn version(store: &dyn KvStore) -> Result<Option<StoreVersion>, Error> {
    let k = keys::version();
    store.get(&k)?.map(|raw| parse(&k, &raw)).transpose()
}

/// Adds to `b` the write of the store's version.
pub fn set_version(b: &mut Batch, version: &str) {
    b.put(
        keys::version(),
        json(&StoreVersion {
            version: version.into(),
            at: instar_core::time::now_rfc3339(),
        }),
    );
}

/// Every history entry, oldest first.
pub fn entries(store: &dyn KvStore) -> Result<Vec<HistoryEntry>, Error> {
    let prefix = keys::history_prefix();
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.scan(&prefix, after.as_deref(), 1000)?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (k, v) in page {
            out.push(parse(&k, &v)?);
        }
    }
    Ok(out)
}

/// The next history sequence number (reads the last entry only).
pub fn next_seq(store: &dyn KvStore) -> Result<u64, Error> {
    // Keys are fixed-width: the last one is the biggest. Scan from the top
    // of the range by walking pages (history stays small).
    let prefix = keys::history_prefix();
    let mut after: Option<Vec<u8>> = None;
    let mut last_seq = 0;
    loop {
        let page = store.scan(&prefix, after.as_deref(), 1000)?;
        let Some((last, raw)) = page.last() else {
            break;
        };
        last_seq = parse::<HistoryEntry>(last, raw)?.seq;
        after = Some(last.clone());
    }
    Ok(last_seq + 1)
}

/// Adds to `b` the write of history entry `e`.
pub fn add(b: &mut Batch, e: &HistoryEntry) {
    b.put(keys::history(e.seq), json(e));
}

/// The tokens of the runs this process holds now. A marker is live only if
/// its token is here: one with this process's pid but an unknown token was
/// left by an earlier process that had the same pid (a restarted container
/// is often pid 1 again), and is taken over like any other killed run's.
static LIVE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn live() -> std::sync::MutexGuard<'static, Vec<String>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Takes the run lock: writes the run marker unless a live run holds it.
///
/// Across processes, the store itself keeps a second process out (RocksDB's
/// `LOCK` file), so a marker left by another process is one a killed run
/// left: it is taken over (the caller resumes from the checkpoints). A marker
/// of a run of this process still going is refused.
pub fn lock(store: &dyn KvStore) -> Result<(RunMarker, Option<RunMarker>), Error> {
    let k = keys::run();
    let old_raw = store.get(&k)?;
    let old: Option<RunMarker> = old_raw.as_deref().map(|r| parse(&k, r)).transpose()?;
    let mut live = live();
    if let Some(o) = old.as_ref().filter(|o| live.contains(&o.token)) {
        return Err(Error::Locked(format!(
            "{}: another run in this process holds the lock (since {}); wait for it to finish",
            store.describe(),
            o.started
        )));
    }
    let mine = RunMarker {
        pid: std::process::id(),
        host: host(),
        started: instar_core::time::now_rfc3339(),
        token: format!("{:x}", rand_token()),
    };
    let mut b = Batch::instar();
    b.replace(k, old_raw, json(&mine));
    if !store.commit(b)?.is_empty() {
        return Err(Error::Locked(format!(
            "{}: another run took the lock just now; wait for it to finish",
            store.describe()
        )));
    }
    live.push(mine.token.clone());
    Ok((mine, old))
}

/// Releases the run lock taken by [`lock`] (only if still ours).
pub fn unlock(store: &dyn KvStore, mine: &RunMarker) -> Result<(), Error> {
    live().retain(|t| *t != mine.token);
    let mut b = Batch::instar();
    b.writes.push(crate::Write {
        key: keys::run(),
        value: None,
        expect: Some(Some(json(mine))),
        unit: None,
    });
    store.commit(b)?;
    Ok(())
}

/// The run lock, held until [`Held::release`] or dropped (a panic in the
/// run releases it too).
pub struct Held<'a> {
    store: &'a dyn KvStore,
    mine: Option<RunMarker>,
    /// The marker a killed run left, taken over.
    pub taken_over: Option<RunMarker>,
}

impl<'a> Held<'a> {
    /// Takes the lock ([`lock`]).
    pub fn take(store: &'a dyn KvStore) -> Result<Held<'a>, Error> {
        let (mine, taken_over) = lock(store)?;
        Ok(Held {
            store,
            mine: Some(mine),
            taken_over,
        })
    }

    /// Releases it, saying whether that worked.
    pub fn release(mut self) -> Result<(), Error> {
        match self.mine.take() {
            Some(m) => unlock(self.store, &m),
            None => Ok(()),
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(m) = self.mine.take() {
            let _ = unlock(self.store, &m);
        }
    }
}

/// The run marker, if a run holds (or a killed run left) it.
pub fn marker(store: &dyn KvStore) -> Result<Option<RunMarker>, Error> {
    let k = keys::run();
    store.get(&k)?.map(|raw| parse(&k, &raw)).transpose()
}

fn rand_token() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}
