//! [`KvStore`]: the few operations Instar needs from a key-value store, and
//! [`MemStore`], an in-memory one for fast tests.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

/// Key-value pairs, in key order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// What went wrong in a store, by kind (the CLI and `Migrator` say what to do next).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// Another process has the store open (RocksDB's `LOCK` file).
    Locked,
    /// The path is not a store of this kind.
    NotAStore,
    /// The store or its folder cannot be written.
    ReadOnly,
    /// The disk is full.
    NoSpace,
    /// A file of the store is damaged.
    Corrupt,
    /// Anything else.
    Other,
}

/// An error of a store: its kind and the backend's message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    /// What kind of failure.
    pub kind: StoreErrorKind,
    /// The message, naming the store.
    pub message: String,
}

impl StoreError {
    /// An error of `kind`.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> StoreError {
        StoreError {
            kind,
            message: message.into(),
        }
    }
}

/// One write of a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The key.
    pub key: Vec<u8>,
    /// The new value; `None` deletes the key.
    pub value: Option<Vec<u8>>,
    /// Written only if the key still holds this value (`Some(None)`: is
    /// absent); `None` writes unconditionally. A record the application
    /// changed after Instar read it is left as the application wrote it.
    pub expect: Option<Option<Vec<u8>>>,
    /// Writes of one unit (a record and its complements) are left out
    /// together when one of their guards fails.
    pub unit: Option<u64>,
}

/// Writes committed at once: all of them (but the guarded ones whose key
/// changed) or none.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// The writes, in order.
    pub writes: Vec<Write>,
    /// Written by Instar's runner (its walks and bookkeeping). Every other
    /// commit — the application's — is counted by [`KvStore::foreign_commits`],
    /// and a run that saw one does not restore its backup over it.
    pub by_instar: bool,
    /// [`KvStore::foreign_commits`] when the guarded values were read: if
    /// no other commit came through the handle since, every guard holds and
    /// the store need not read the keys again.
    pub read_at: Option<u64>,
}

impl Batch {
    /// An empty batch of Instar's own.
    pub fn instar() -> Batch {
        Batch {
            writes: Vec::new(),
            by_instar: true,
            read_at: None,
        }
    }

    /// Puts `value` under `key` unconditionally.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.writes.push(Write {
            key: key.into(),
            value: Some(value.into()),
            expect: None,
            unit: None,
        });
    }

    /// Deletes `key` unconditionally.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.writes.push(Write {
            key: key.into(),
            value: None,
            expect: None,
            unit: None,
        });
    }

    /// Puts `value` under `key` if it still holds `old`.
    pub fn replace(&mut self, key: impl Into<Vec<u8>>, old: Option<Vec<u8>>, value: Vec<u8>) {
        self.writes.push(Write {
            key: key.into(),
            value: Some(value),
            expect: Some(old),
            unit: None,
        });
    }
}

/// A key-value store: ordered byte keys, atomic batches, cheap checkpoints.
///
/// Every write Instar makes goes through [`KvStore::commit`]; an application
/// writing in the same process while a migration runs should write through
/// [`KvStore::commit`] (or [`KvStore::put`]) too, so that a guarded write
/// never overwrites what it wrote.
pub trait KvStore: Send + Sync {
    /// The value under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Up to `limit` pairs whose key starts with `prefix`, after key `after`
    /// (exclusive), in key order.
    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Pairs, StoreError>;

    /// Commits `batch` atomically (durably: it survives a killed process).
    /// Returns the keys of the guarded writes left out because the key no
    /// longer held the expected value.
    fn commit(&self, batch: Batch) -> Result<Vec<Vec<u8>>, StoreError>;

    /// Writes a consistent copy of the store into the new folder `dir`
    /// (RocksDB: a checkpoint, hard-linked where it can be).
    fn checkpoint(&self, dir: &Path) -> Result<(), StoreError>;

    /// Replaces the store's contents with the copy in `dir` (written by
    /// [`KvStore::checkpoint`]); the store stays usable through this handle.
    fn restore(&self, dir: &Path) -> Result<(), StoreError>;

    /// The store, for messages (`rocksdb:path`).
    fn describe(&self) -> String;

    /// How many commits not marked [`Batch::by_instar`] this handle has made
    /// since it was opened (the application's writes).
    fn foreign_commits(&self) -> u64;

    /// Puts one value unconditionally.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut b = Batch::default();
        b.put(key, value);
        self.commit(b).map(|_| ())
    }

    /// How many keys start with `prefix` (walks them).
    fn count(&self, prefix: &[u8]) -> Result<u64, StoreError> {
        let mut n = 0u64;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self.scan(prefix, after.as_deref(), 10_000)?;
            let Some((last, _)) = page.last() else {
                return Ok(n);
            };
            n += page.len() as u64;
            after = Some(last.clone());
        }
    }
}

/// The keys of `batch`'s guarded writes whose key holds another value than
/// expected, read with `get` (the caller holds its write lock, and passes
/// the handle's foreign commit count: when it is still the batch's
/// `read_at`, nobody else wrote since the values were read, and no key is
/// read again).
pub fn conflicts(
    batch: &Batch,
    foreign_commits: u64,
    get: impl Fn(&[u8]) -> Result<Option<Vec<u8>>, StoreError>,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut out = Vec::new();
    if batch.read_at == Some(foreign_commits) {
        return Ok(out);
    }
    for w in &batch.writes {
        if let Some(expect) = &w.expect {
            if get(&w.key)? != *expect {
                out.push(w.key.clone());
            }
        }
    }
    Ok(out)
}

/// The writes of `batch` to apply, given the conflicting keys: a guarded
/// write whose key conflicts is left out, with every write of its unit.
pub fn applicable(batch: Batch, conflicting: &[Vec<u8>]) -> Vec<Write> {
    if conflicting.is_empty() {
        return batch.writes;
    }
    let units: Vec<u64> = batch
        .writes
        .iter()
        .filter(|w| w.expect.is_some() && conflicting.contains(&w.key))
        .filter_map(|w| w.unit)
        .collect();
    batch
        .writes
        .into_iter()
        .filter(|w| {
            let own = w.expect.is_some() && conflicting.contains(&w.key);
            let tied = w.unit.is_some_and(|u| units.contains(&u));
            !own && !tied
        })
        .collect()
}

/// An in-memory store for tests and examples. Its checkpoints are files.
#[derive(Debug, Default)]
pub struct MemStore {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    foreign: std::sync::atomic::AtomicU64,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

const MEM_FILE: &str = "memstore.json";

impl KvStore for MemStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map().get(key).cloned())
    }

    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Pairs, StoreError> {
        use std::ops::Bound;
        let map = self.map();
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_vec()),
            _ => Bound::Included(prefix.to_vec()),
        };
        Ok(map
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn commit(&self, batch: Batch) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut map = self.map();
        let foreign = self.foreign.load(std::sync::atomic::Ordering::SeqCst);
        let skipped = conflicts(&batch, foreign, |k| Ok(map.get(k).cloned()))?;
        if !batch.by_instar {
            self.foreign
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        for w in applicable(batch, &skipped) {
            match w.value {
                Some(v) => map.insert(w.key, v),
                None => map.remove(&w.key),
            };
        }
        Ok(skipped)
    }

    fn checkpoint(&self, dir: &Path) -> Result<(), StoreError> {
        let io = |e: std::io::Error| {
            StoreError::new(StoreErrorKind::Other, format!("{}: {e}", dir.display()))
        };
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = self
            .map()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        std::fs::create_dir_all(dir).map_err(io)?;
        let text = serde_json::to_vec(&pairs).map_err(|e| io(std::io::Error::other(e)))?;
        std::fs::write(dir.join(MEM_FILE), text).map_err(io)
    }

    fn restore(&self, dir: &Path) -> Result<(), StoreError> {
        let path = dir.join(MEM_FILE);
        let bad = |e: String| {
            StoreError::new(StoreErrorKind::Corrupt, format!("{}: {e}", path.display()))
        };
        let text = std::fs::read(&path).map_err(|e| bad(e.to_string()))?;
        let pairs: Vec<(Vec<u8>, Vec<u8>)> =
            serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        *self.map() = pairs.into_iter().collect();
        Ok(())
    }

    fn describe(&self) -> String {
        "memory".into()
    }

    fn foreign_commits(&self) -> u64 {
        self.foreign.load(std::sync::atomic::Ordering::SeqCst)
    }
}
