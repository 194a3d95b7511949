//! The RocksDB backend of Instar's key-value collections: [`RocksStore`]
//! implements [`instar_kv::KvStore`] over one RocksDB database (its default
//! column family). This is the only crate of Instar that links RocksDB.
//!
//! - Tables are written with SST `format_version` 5 by default (readable by
//!   RocksDB 6.6 and later), not the linked library's newest, so that an
//!   application on an older RocksDB still opens a store Instar wrote.
//! - Every batch is written with `sync`: a committed batch survives a killed
//!   process and a power cut.
//! - RocksDB's `LOCK` file keeps a second process out while a store is open:
//!   opening it then fails with [`StoreErrorKind::Locked`], which says so.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use instar_kv::store::{applicable, conflicts, Pairs};
use instar_kv::{Batch, KvStore, StoreError, StoreErrorKind};
use rocksdb::{BlockBasedOptions, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};

/// The RocksDB bindings this crate links (for the raw handle, e.g. the
/// benchmark's plain loop).
pub use rocksdb;

/// The SST format version written by default (readable by RocksDB ≥ 6.6).
pub const DEFAULT_FORMAT_VERSION: i32 = 5;

/// How a store is opened.
#[derive(Debug, Clone)]
pub struct RocksOptions {
    /// The SST `format_version` of the tables it writes (2 to 7).
    pub format_version: i32,
    /// Create the store when the path does not exist (or is an empty folder).
    pub create: bool,
}

impl Default for RocksOptions {
    fn default() -> Self {
        RocksOptions {
            format_version: DEFAULT_FORMAT_VERSION,
            create: true,
        }
    }
}

/// A RocksDB database as an Instar key-value store.
pub struct RocksStore {
    path: PathBuf,
    options: RocksOptions,
    db: RwLock<Option<DB>>,
    /// Commits (with their guards) one at a time.
    writes: Mutex<()>,
    /// Commits not made by Instar's runner (the application's).
    foreign: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.path)
            .finish()
    }
}

/// The error of a RocksDB call on the store at `path`, by kind, saying what to do.
fn error(path: &Path, e: &rocksdb::Error) -> StoreError {
    let text = e.to_string();
    let at = format!("rocksdb:{}", path.display());
    let lower = text.to_lowercase();
    if lower.contains("lock")
        && (lower.contains("temporarily unavailable") || lower.contains("no locks available"))
    {
        return StoreError::new(
            StoreErrorKind::Locked,
            format!("{at} is open in another process (RocksDB allows one at a time: its LOCK file is held); stop the application (or the other instar) and run again, or migrate from inside the application with Migrator"),
        );
    }
    if lower.contains("no space left") {
        return StoreError::new(
            StoreErrorKind::NoSpace,
            format!(
                "{at}: the disk is full ({text}); free space and run again (each batch is whole)"
            ),
        );
    }
    if lower.contains("read-only")
        || lower.contains("permission denied")
        || lower.contains("file too large")
    {
        return StoreError::new(
            StoreErrorKind::ReadOnly,
            format!("{at} cannot be written ({text}); nothing was half-written"),
        );
    }
    if matches!(e.kind(), rocksdb::ErrorKind::Corruption) {
        return StoreError::new(StoreErrorKind::Corrupt, format!("{at} is damaged: {text}"));
    }
    StoreError::new(StoreErrorKind::Other, format!("{at}: {text}"))
}

impl RocksStore {
    /// Opens (or creates, where `options.create` allows and nothing is at
    /// `path`) the store at `path`. A path holding something that is not a
    /// RocksDB database is refused, never written to.
    pub fn open(path: impl AsRef<Path>, options: RocksOptions) -> Result<RocksStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        if !(2..=7).contains(&options.format_version) {
            return Err(StoreError::new(
                StoreErrorKind::Other,
                format!(
                    "format_version {} is not one RocksDB writes (2 to 7)",
                    options.format_version
                ),
            ));
        }
        let db = open_db(&path, &options)?;
        Ok(RocksStore {
            path,
            options,
            db: RwLock::new(Some(db)),
            writes: Mutex::new(()),
            foreign: Default::default(),
        })
    }

    /// Its folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with_db<T>(
        &self,
        f: impl FnOnce(&DB) -> Result<T, rocksdb::Error>,
    ) -> Result<T, StoreError> {
        let guard = self.db.read().unwrap_or_else(|p| p.into_inner());
        let db = guard.as_ref().ok_or_else(|| {
            StoreError::new(
                StoreErrorKind::Other,
                format!(
                    "rocksdb:{} was closed by a failed restore",
                    self.path.display()
                ),
            )
        })?;
        f(db).map_err(|e| error(&self.path, &e))
    }
}

fn not_a_store(path: &Path, why: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::NotAStore,
        format!("rocksdb:{} is not a RocksDB database ({why}); give the folder of a RocksDB database, or a path where nothing is yet", path.display()),
    )
}

fn db_options(o: &RocksOptions, create: bool) -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(create);
    let mut table = BlockBasedOptions::default();
    table.set_format_version(o.format_version);
    opts.set_block_based_table_factory(&table);
    opts
}

/// A restore killed between its two renames left the store beside its
/// path (`<name>.before-restore-<pid>`): put it back (the copy that was
/// being put in place, `<name>.restoring-<pid>`, is dropped), so that the
/// store is as it was before the restore and never re-created empty.
fn finish_interrupted_restore(path: &Path) -> Result<(), StoreError> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(());
    };
    let name = name.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let other = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = other.strip_prefix(&name) else {
            continue;
        };
        if rest.starts_with(".restoring-") {
            let _ = std::fs::remove_dir_all(e.path());
        } else if rest.starts_with(".before-restore-") && !path.join("CURRENT").is_file() {
            if path.is_dir() {
                let _ = std::fs::remove_dir_all(path);
            }
            std::fs::rename(e.path(), path).map_err(|err| {
                StoreError::new(
                    StoreErrorKind::Other,
                    format!("rocksdb:{}: a restore was interrupted and {} holds the store as it was; it could not be moved back ({err}): move it to {} by hand", path.display(), e.path().display(), path.display()),
                )
            })?;
        }
    }
    Ok(())
}

fn open_db(path: &Path, o: &RocksOptions) -> Result<DB, StoreError> {
    finish_interrupted_restore(path)?;
    let create = if path.join("CURRENT").is_file() {
        false
    } else if path.is_file() {
        return Err(not_a_store(path, "it is a file"));
    } else if path.is_dir() {
        let empty = std::fs::read_dir(path)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty {
            return Err(not_a_store(path, "a folder without a CURRENT file"));
        }
        true
    } else {
        true
    };
    if create && !o.create {
        return Err(not_a_store(path, "nothing is there"));
    }
    DB::open(&db_options(o, create), path).map_err(|e| error(path, &e))
}

impl KvStore for RocksStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.with_db(|db| db.get(key))
    }

    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Pairs, StoreError> {
        self.with_db(|db| {
            let start: &[u8] = match after {
                Some(a) if a >= prefix => a,
                _ => prefix,
            };
            let mut out = Vec::new();
            for item in db.iterator(IteratorMode::From(start, Direction::Forward)) {
                let (k, v) = item?;
                if !k.starts_with(prefix) || out.len() >= limit {
                    break;
                }
                if after.is_some_and(|a| *k == *a) {
                    continue;
                }
                out.push((k.into_vec(), v.into_vec()));
            }
            Ok(out)
        })
    }

    fn commit(&self, batch: Batch) -> Result<Vec<Vec<u8>>, StoreError> {
        let _one = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        let foreign = self.foreign.load(std::sync::atomic::Ordering::SeqCst);
        let skipped = conflicts(&batch, foreign, |k| self.get(k))?;
        let by_instar = batch.by_instar;
        let mut wb = WriteBatch::default();
        for w in applicable(batch, &skipped) {
            match w.value {
                Some(v) => wb.put(&w.key, &v),
                None => wb.delete(&w.key),
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.with_db(|db| db.write_opt(wb, &wo))?;
        // Counted once its writes are visible: a walk that sees the count
        // (`Batch::read_at`) and then reads records sees those writes too.
        // Counted before, a walk could see the new count, read the old value,
        // and overwrite the application's write (found by `concurrent_writer`).
        if !by_instar {
            self.foreign
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(skipped)
    }

    fn count(&self, prefix: &[u8]) -> Result<u64, StoreError> {
        // Steps over the keys without copying a key or a value.
        self.with_db(|db| {
            let mut it = db.raw_iterator();
            it.seek(prefix);
            let mut n = 0u64;
            while it.valid() && it.key().is_some_and(|k| k.starts_with(prefix)) {
                n += 1;
                it.next();
            }
            it.status().map(|()| n)
        })
    }

    fn checkpoint(&self, dir: &Path) -> Result<(), StoreError> {
        self.with_db(|db| rocksdb::checkpoint::Checkpoint::new(db)?.create_checkpoint(dir))
    }

    fn restore(&self, dir: &Path) -> Result<(), StoreError> {
        let _one = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        let fail = |what: String| {
            StoreError::new(
                StoreErrorKind::Other,
                format!(
                    "cannot restore {} into rocksdb:{}: {what}; the store is as it was",
                    dir.display(),
                    self.path.display()
                ),
            )
        };
        // The copy is made beside the store first: a full disk or a bad
        // copy leaves the store untouched.
        let staging = sibling(&self.path, "restoring");
        let _ = std::fs::remove_dir_all(&staging);
        if let Err(e) = copy_dir(dir, &staging) {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(fail(e.to_string()));
        }
        let mut guard = self.db.write().unwrap_or_else(|p| p.into_inner());
        drop(guard.take());
        let aside = sibling(&self.path, "before-restore");
        let _ = std::fs::remove_dir_all(&aside);
        let swapped = std::fs::rename(&self.path, &aside).and_then(|()| {
            std::fs::rename(&staging, &self.path).inspect_err(|_| {
                let _ = std::fs::rename(&aside, &self.path);
            })
        });
        let opened = swapped.map_err(|e| fail(e.to_string())).and_then(|()| {
            open_db(&self.path, &self.options).inspect_err(|_| {
                // The copy does not open: the store as it was goes back.
                let _ = std::fs::remove_dir_all(&self.path);
                let _ = std::fs::rename(&aside, &self.path);
            })
        });
        match opened {
            Ok(db) => {
                *guard = Some(db);
                let _ = std::fs::remove_dir_all(&aside);
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                *guard = open_db(&self.path, &self.options).ok();
                Err(e)
            }
        }
    }

    fn describe(&self) -> String {
        format!("rocksdb:{}", self.path.display())
    }

    fn foreign_commits(&self) -> u64 {
        self.foreign.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A folder beside the store's: `<name>.<what>-<pid>`.
fn sibling(path: &Path, what: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{what}-{}", std::process::id()));
    path.with_file_name(name)
}

/// Copies a checkpoint: its immutable table files hard-linked where the
/// filesystem allows, everything else (MANIFEST, OPTIONS, logs) copied.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let src = e.path();
        let dst = to.join(e.file_name());
        let sst = src.extension().is_some_and(|x| x == "sst");
        if !(sst && std::fs::hard_link(&src, &dst).is_ok()) {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}
