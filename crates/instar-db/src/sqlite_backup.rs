//! SQLite backups: a consistent copy of the file, and an atomic restore.

use std::path::{Path, PathBuf};

use crate::conn::Conn;
use crate::sqlite_conn::{Lite, Mode};

use crate::{Db, Error};

/// `VACUUM INTO` a copy in `folder`, checked before it counts.
pub(crate) async fn take(db: &mut Db, folder: &Path) -> Result<(&'static str, PathBuf), Error> {
    if db.url.sqlite_path.is_none() {
        return Err(Error::Backup(
            "an in-memory database cannot be backed up".into(),
        ));
    }
    let path = folder.join("database.sqlite");
    crate::conn::query("VACUUM INTO ?")
        .bind(path.display().to_string())
        .execute(&mut db.conn)
        .await
        .map_err(|e| Error::query("copying the database (VACUUM INTO)", e))?;
    check_sqlite_copy(&path).await?;
    Ok(("vacuum-into", path))
}

/// Replaces the database file with the copy at `file`, reopening the connection.
pub(crate) async fn restore(db: &mut Db, file: &Path) -> Result<(), Error> {
    let target = db
        .url
        .sqlite_path
        .clone()
        .ok_or_else(|| Error::Backup("cannot restore into an in-memory database".into()))?;
    // The copy is written beside the live file and checked there: the live
    // database is only replaced by a copy that passed its integrity check.
    let tmp = copy_beside(file, &target)?;
    if let Err(e) = check_sqlite_copy(&tmp).await {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // Close our connection so no handle points at the file being replaced.
    release_connection(db).await?;
    move_over(&tmp, &target)?;
    db.reconnect().await
}

/// The database as it is, before a restore replaces it: a consistent copy
/// when SQLite can make one, else the file's bytes as they are (a database
/// too damaged to copy is still kept).
pub(crate) async fn set_aside(
    db: &mut Db,
    folder: &Path,
) -> Result<(&'static str, PathBuf), Error> {
    if let Ok(taken) = take(db, folder).await {
        return Ok(taken);
    }
    let live = db
        .url
        .sqlite_path
        .clone()
        .ok_or_else(|| Error::Backup("an in-memory database cannot be set aside".into()))?;
    let path = folder.join("database.sqlite");
    let _ = std::fs::remove_file(&path);
    std::fs::copy(&live, &path).map_err(|e| {
        Error::Backup(format!(
            "cannot keep {} before restoring over it: {e}",
            live.display()
        ))
    })?;
    for suffix in ["-wal", "-journal"] {
        let (mut from, mut to) = (live.as_os_str().to_owned(), path.as_os_str().to_owned());
        from.push(suffix);
        to.push(suffix);
        if Path::new(&from).exists() {
            let _ = std::fs::copy(&from, &to);
        }
    }
    Ok(("file-copy", path))
}

pub(crate) async fn check_sqlite_copy(path: &Path) -> Result<(), Error> {
    let lite = Lite::open(Some(path), Mode::Ro)
        .map_err(|e| Error::Backup(format!("cannot open the copy {}: {e}", path.display())))?;
    let mut conn = Conn::Lite(lite);
    let result: String = crate::conn::query("PRAGMA integrity_check")
        .scalar(&mut conn)
        .await
        .map_err(|e| Error::query("checking the copy", e))?;
    let _ = conn.close().await;
    if result != "ok" {
        return Err(Error::Backup(format!(
            "the copy {} failed its integrity check: {result}",
            path.display()
        )));
    }
    Ok(())
}

/// Closes `db`'s connection, leaving a scratch in-memory one in its place until `reconnect`.
async fn release_connection(db: &mut Db) -> Result<(), Error> {
    let placeholder = Lite::open(None, Mode::Rwc)
        .map(Conn::Lite)
        .map_err(|e| Error::query("opening a scratch connection", e))?;
    let old = std::mem::replace(&mut db.conn, placeholder);
    let _ = old.close().await;
    Ok(())
}

/// Copies `from` beside `target` (same folder, so the rename is atomic), flushed.
fn copy_beside(from: &Path, target: &Path) -> Result<PathBuf, Error> {
    let mut tmp = target.as_os_str().to_owned();
    tmp.push(".instar-restore");
    let tmp = PathBuf::from(tmp);
    let io = |what: &str, e: std::io::Error| Error::Backup(format!("{what}: {e}"));
    std::fs::copy(from, &tmp).map_err(|e| {
        io(
            &format!("cannot copy {} to {}", from.display(), tmp.display()),
            e,
        )
    })?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| io(&format!("cannot flush {}", tmp.display()), e))?;
    Ok(tmp)
}

/// Renames the checked copy `tmp` over `target`, so a restore killed half way
/// leaves the old database or the new one, never a mix.
fn move_over(tmp: &Path, target: &Path) -> Result<(), Error> {
    let io = |what: &str, e: std::io::Error| Error::Backup(format!("{what}: {e}"));
    // The old file's journal must not be applied to the new one.
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut p = target.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    std::fs::rename(tmp, target).map_err(|e| {
        io(
            &format!("cannot move {} over {}", tmp.display(), target.display()),
            e,
        )
    })?;
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        // Make the rename itself durable.
        let _ = std::fs::File::open(parent).and_then(|d| d.sync_all());
    }
    Ok(())
}
