//! Backups: taken before risky runs, listed, restored, pruned.
//!
//! How each engine copies and restores itself is in its own module
//! (`sqlite::backup`, `postgres::backup`, `mysql::backup`), behind the
//! `Engine` trait; this module names, lists, prunes and finds backups.
//! - SQLite: `VACUUM INTO` a consistent copy, checked with `integrity_check`;
//!   restored by writing beside the file and renaming over it.
//! - PostgreSQL: `pg_dump --format=custom`; restored by emptying every schema on
//!   the session that holds the lock, then `pg_restore`. Runs are transactional,
//!   so no automatic backup is taken.
//! - MySQL/MariaDB: `mysqldump --databases … --add-drop-database` (routines,
//!   events and triggers included), taken automatically before a run because
//!   MySQL cannot roll DDL back; restoring drops and recreates the database.
//!
//! Each backup is a folder `<dir>/<id>/` holding the copy and `manifest.json`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use instar_core::time;
use serde::{Deserialize, Serialize};

use crate::url::redact;
use crate::{Db, Error};

/// A backup on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupInfo {
    /// Its id (a UTC timestamp).
    pub id: String,
    /// When it was taken (RFC 3339 UTC).
    pub created_at: String,
    /// The engine.
    pub dialect: String,
    /// How it was taken: `vacuum-into`, `pg_dump` or `mysqldump`.
    pub method: String,
    /// The copy or dump file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// Why it was taken.
    pub reason: String,
    /// The database it is a copy of (password removed).
    pub database: String,
    /// SHA-256 of the file when it was taken (`sha256:<hex>`); a restore checks it.
    /// Backups taken before Instar 0.2 have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// What a restore did: the backup restored, and the database as it was before,
/// kept as a backup of its own (restoring that one undoes the restore).
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    /// The backup now in place.
    pub restored: BackupInfo,
    /// The database as it was just before, set aside.
    pub set_aside: BackupInfo,
}

pub(crate) fn tool_exists(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

/// Whether an automatic backup is taken before a run on `db`.
pub(crate) fn wanted(db: &Db, any_non_transactional: bool) -> bool {
    db.engine.wants_backup(db, any_non_transactional)
}

fn new_id(dir: &Path) -> String {
    let stamp: String = time::now_rfc3339()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let mut id = stamp.clone();
    let mut n = 1;
    while dir.join(&id).exists() {
        n += 1;
        id = format!("{stamp}-{n}");
    }
    id
}

/// Takes a backup of `db` into a new folder under `dir`.
pub async fn take(db: &mut Db, dir: &Path, reason: &str) -> Result<Option<BackupInfo>, Error> {
    let (id, folder) = new_folder(dir)?;
    let engine = db.engine;
    let (method, path) = engine.take_backup(db, &folder).await?;
    record(db, id, method, path, reason).map(Some)
}

fn new_folder(dir: &Path) -> Result<(String, PathBuf), Error> {
    let id = new_id(dir);
    let folder = dir.join(&id);
    std::fs::create_dir_all(&folder)
        .map_err(|e| Error::Backup(format!("cannot create {}: {e}", folder.display())))?;
    Ok((id, folder))
}

/// Writes the manifest of a backup just taken, with the file's size and checksum.
fn record(
    db: &Db,
    id: String,
    method: &str,
    path: PathBuf,
    reason: &str,
) -> Result<BackupInfo, Error> {
    let folder = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let info = BackupInfo {
        id,
        created_at: time::now_rfc3339(),
        dialect: db.dialect().to_string(),
        method: method.into(),
        size_bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
        sha256: Some(file_sha256(&path)?),
        path,
        reason: reason.into(),
        database: redact(&db.url.driver_url),
    };
    let manifest = serde_json::to_string_pretty(&info).map_err(|e| Error::Backup(e.to_string()))?;
    std::fs::write(folder.join("manifest.json"), manifest)
        .map_err(|e| Error::Backup(format!("{}: {e}", folder.display())))?;
    Ok(info)
}

/// `sha256:<hex>` of a file, read in pieces (a backup can be large).
fn file_sha256(path: &Path) -> Result<String, Error> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path)
        .map_err(|e| Error::Backup(format!("cannot read {}: {e}", path.display())))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::Backup(format!("cannot read {}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("sha256:{hex}"))
}

/// Checks backup `info` before anything is restored from it: the file is
/// there, has the size and checksum recorded when it was taken, and the
/// engine can read it whole.
pub async fn verify(db: &mut Db, info: &BackupInfo) -> Result<(), Error> {
    let engine = db.engine;
    let bad = |why: String| {
        Error::Backup(format!(
            "backup {} failed verification, nothing was restored: {why}",
            info.id
        ))
    };
    let size = std::fs::metadata(&info.path)
        .map_err(|e| bad(format!("{} cannot be read: {e}", info.path.display())))?
        .len();
    if info.size_bytes != 0 && size != info.size_bytes {
        return Err(bad(format!(
            "{} is {size} bytes, {} when it was taken",
            info.path.display(),
            info.size_bytes
        )));
    }
    if let Some(want) = &info.sha256 {
        let got = file_sha256(&info.path)?;
        if &got != want {
            return Err(bad(format!(
                "{} changed since it was taken (its checksum is {got}, {want} then)",
                info.path.display()
            )));
        }
    }
    engine
        .verify_backup(&info.path)
        .await
        .map_err(|e| bad(e.to_string()))
}

/// Runs a client tool, its stderr kept for the error.
pub(crate) fn run_tool(mut cmd: Command, name: &str, stdin: Option<&Path>) -> Result<(), Error> {
    if !tool_exists(name) {
        return Err(Error::Backup(format!(
            "{name} is not installed; install the database's client tools to back up this engine"
        )));
    }
    if let Some(p) = stdin {
        let f =
            std::fs::File::open(p).map_err(|e| Error::Backup(format!("{}: {e}", p.display())))?;
        cmd.stdin(f);
    } else {
        cmd.stdin(Stdio::null());
    }
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| Error::Backup(format!("cannot run {name}: {e}")))?;
    if !out.status.success() {
        return Err(Error::Backup(format!(
            "{name} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Every backup under `dir`, oldest first.
pub fn list(dir: &Path) -> Result<Vec<BackupInfo>, Error> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let manifest = e.path().join("manifest.json");
        if let Ok(text) = std::fs::read_to_string(&manifest) {
            let info: BackupInfo = serde_json::from_str(&text)
                .map_err(|err| Error::Backup(format!("{}: {err}", manifest.display())))?;
            out.push(info);
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Deletes backups older than `age`; returns what it deleted.
///
/// # Warning
/// Deleted backups are gone for good.
pub fn prune(dir: &Path, age: Duration) -> Result<Vec<BackupInfo>, Error> {
    let mut removed = Vec::new();
    let now = SystemTime::now();
    for b in list(dir)? {
        let folder = dir.join(&b.id);
        let modified = std::fs::metadata(folder.join("manifest.json"))
            .and_then(|m| m.modified())
            .unwrap_or(now);
        if now.duration_since(modified).unwrap_or_default() > age {
            std::fs::remove_dir_all(&folder)
                .map_err(|e| Error::Backup(format!("cannot remove {}: {e}", folder.display())))?;
            removed.push(b);
        }
    }
    Ok(removed)
}

/// The backup `id` in `dir`, or an error saying how to list them.
pub fn find(dir: &Path, id: &str) -> Result<BackupInfo, Error> {
    list(dir)?.into_iter().find(|b| b.id == id).ok_or_else(|| {
        Error::Backup(format!(
            "no backup {id:?} in {}; `instar backups` lists them",
            dir.display()
        ))
    })
}

/// Restores backup `id` from `dir` over the database of `db`, after checking
/// the backup (see [`verify`]) and keeping the database as it is now as a new
/// backup (reason "set aside before restoring …"). `db`'s session
/// is kept on PostgreSQL and MySQL (so a run lock it holds stays held); on
/// SQLite it is reopened after the file is replaced (the lock is a sidecar file).
///
/// # Warning
/// Everything written to the database since the backup is lost. Stop the
/// applications that use it first: a SQLite file is replaced under them, and
/// a PostgreSQL or MySQL database is emptied and refilled from the dump.
pub async fn restore(db: &mut Db, dir: &Path, id: &str) -> Result<Restored, Error> {
    let info = find(dir, id)?;
    if info.dialect != db.dialect().to_string() {
        return Err(Error::Backup(format!(
            "backup {id} is of a {} database, this is {}",
            info.dialect,
            db.dialect()
        )));
    }
    verify(db, &info).await?;
    // The database as it is now is kept before anything replaces it.
    let (aside_id, folder) = new_folder(dir)?;
    let engine = db.engine;
    let (method, path) = engine.set_aside(db, &folder).await.map_err(|e| {
        let _ = std::fs::remove_dir_all(&folder);
        Error::Backup(format!(
            "cannot keep the database as it is before restoring {id} over it, nothing was restored: {e}"
        ))
    })?;
    let set_aside = record(
        db,
        aside_id,
        method,
        path,
        &format!("set aside before restoring {id}"),
    )?;
    engine.restore_backup(db, &info.path).await?;
    Ok(Restored {
        restored: info,
        set_aside,
    })
}
