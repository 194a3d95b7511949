//! Backups of a store: a checkpoint ([`KvStore::checkpoint`]) in a folder of
//! its own with a manifest (`kv-backup.json`) listing every file, its size
//! and SHA-256, so a restore refuses a copy that is incomplete or damaged.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::{history, Error, KvStore};

const MANIFEST: &str = "kv-backup.json";

/// A store's backup on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvBackup {
    /// Its id (a UTC timestamp).
    pub id: String,
    /// When it was taken (RFC 3339 UTC).
    pub created_at: String,
    /// The store it is a copy of.
    pub store: String,
    /// The store's schema version then.
    pub version: Option<String>,
    /// How: `rocksdb-checkpoint` or `memory`.
    pub method: String,
    /// Why it was taken.
    pub reason: String,
    /// The copy's folder.
    pub path: PathBuf,
    /// Its files: name, size, `sha256:<hex>`.
    pub files: Vec<(String, u64, String)>,
    /// Their total size.
    pub size_bytes: u64,
}

fn io(what: &Path, e: impl std::fmt::Display) -> Error {
    Error::Backup(format!("{}: {e}", what.display()))
}

fn digest(path: &Path) -> Result<String, Error> {
    let mut f = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| io(path, e))?;
    Ok(format!("sha256:{:x}", h.finalize()))
}

fn files(dir: &Path) -> Result<Vec<(String, u64, String)>, Error> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let e = e.map_err(|e| io(dir, e))?;
        let p = e.path();
        if p.is_file() {
            let size = e.metadata().map_err(|err| io(&p, err))?.len();
            out.push((
                e.file_name().to_string_lossy().into_owned(),
                size,
                digest(&p)?,
            ));
        }
    }
    out.sort();
    Ok(out)
}

/// A new id: the UTC time to the millisecond, unique within `dir`.
fn new_id(dir: &Path) -> String {
    let now = instar_core::time::now_rfc3339();
    let base: String = now.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let mut id = format!("kv-{base}");
    let mut n = 1;
    while dir.join(&id).exists() {
        n += 1;
        id = format!("kv-{base}-{n}");
    }
    id
}

/// Takes a backup of `store` into a new folder under `dir`.
pub fn take(
    store: &dyn KvStore,
    dir: &Path,
    method: &str,
    reason: &str,
) -> Result<KvBackup, Error> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let id = new_id(dir);
    let folder = dir.join(&id);
    let copy = folder.join("store");
    std::fs::create_dir_all(&folder).map_err(|e| io(&folder, e))?;
    if let Err(e) = store.checkpoint(&copy) {
        let _ = std::fs::remove_dir_all(&folder);
        return Err(Error::Backup(format!(
            "cannot take a backup of {} in {}: {e}; nothing was migrated",
            store.describe(),
            folder.display()
        )));
    }
    let files = files(&copy)?;
    let b = KvBackup {
        id,
        created_at: instar_core::time::now_rfc3339(),
        store: store.describe(),
        version: history::version(store)?.map(|v| v.version),
        method: method.into(),
        reason: reason.into(),
        path: copy,
        size_bytes: files.iter().map(|f| f.1).sum(),
        files,
    };
    let text = serde_json::to_vec_pretty(&b).expect("serializes");
    let m = folder.join(MANIFEST);
    std::fs::write(&m, text).map_err(|e| io(&m, e))?;
    Ok(b)
}

/// Every backup under `dir`, oldest first (other files are ignored).
pub fn list(dir: &Path) -> Result<Vec<KvBackup>, Error> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let m = e.path().join(MANIFEST);
        if let Ok(text) = std::fs::read(&m) {
            out.push(serde_json::from_slice(&text).map_err(|err| io(&m, err))?);
        }
    }
    out.sort_by(|a: &KvBackup, b| a.id.cmp(&b.id));
    Ok(out)
}

/// The backup `id`, checked whole: every file of its manifest present with
/// its size and digest. An error says what is missing or damaged.
pub fn find(dir: &Path, id: &str) -> Result<KvBackup, Error> {
    let b = list(dir)?.into_iter().find(|b| b.id == id).ok_or_else(|| {
        Error::Backup(format!(
            "no backup {id:?} in {}; `instar backups` lists them",
            dir.display()
        ))
    })?;
    for (name, size, sum) in &b.files {
        let p = b.path.join(name);
        let meta = std::fs::metadata(&p).map_err(|e| {
            Error::Backup(format!(
                "backup {id} is incomplete: {} is missing ({e}); nothing was restored",
                p.display()
            ))
        })?;
        if meta.len() != *size || digest(&p)? != *sum {
            return Err(Error::Backup(format!(
                "backup {id} is damaged: {} is not the file that was backed up (size or SHA-256 differs); nothing was restored",
                p.display()
            )));
        }
    }
    Ok(b)
}

/// Deletes backups older than `age`; returns what it deleted.
pub fn prune(dir: &Path, age: Duration) -> Result<Vec<KvBackup>, Error> {
    let now = SystemTime::now();
    let mut removed = Vec::new();
    for b in list(dir)? {
        let folder = dir.join(&b.id);
        let modified = std::fs::metadata(folder.join(MANIFEST))
            .and_then(|m| m.modified())
            .unwrap_or(now);
        if now.duration_since(modified).unwrap_or_default() > age {
            std::fs::remove_dir_all(&folder).map_err(|e| io(&folder, e))?;
            removed.push(b);
        }
    }
    Ok(removed)
}

/// Puts backup `id` in place of the store's contents (checked first), and
/// records it in the store's history. The run marker a backup may carry is
/// dropped.
pub fn restore(store: &dyn KvStore, dir: &Path, id: &str) -> Result<KvBackup, Error> {
    let b = find(dir, id)?;
    store.restore(&b.path).map_err(|e| {
        Error::Backup(format!(
            "cannot restore backup {id} into {}: {e}",
            store.describe()
        ))
    })?;
    let mut batch = crate::Batch::instar();
    batch.delete(crate::keys::run());
    let seq = history::next_seq(store)?;
    history::add(
        &mut batch,
        &history::HistoryEntry {
            seq,
            kind: "restore".into(),
            name: format!("backup {id}"),
            from: String::new(),
            to: b.version.clone().unwrap_or_default(),
            prefixes: Vec::new(),
            counts: Vec::new(),
            records_changed: 0,
            records_skipped: 0,
            records_left_to_the_application: 0,
            started_at: instar_core::time::now_rfc3339(),
            duration_ms: 0,
            by: history::me(),
            fingerprint: None,
            backup: Some(id.to_string()),
            error: None,
        },
    );
    store.commit(batch)?;
    Ok(b)
}
