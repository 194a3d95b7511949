//! Backups: taken before risky runs, listed, restored, pruned.
//!
//! - SQLite: `VACUUM INTO` a consistent copy of the file, then `PRAGMA
//!   integrity_check` on the copy. Restoring copies it back over the file.
//! - PostgreSQL: `pg_dump --format=custom` when the client tools are on PATH;
//!   restored with `pg_restore --clean --if-exists`. Runs are transactional, so
//!   no automatic backup is taken. Restoring drops and recreates the
//!   database (`pg_restore --clean --create`, via the `postgres` database).
//! - MySQL/MariaDB: `mysqldump --databases … --add-drop-database` (routines,
//!   events and triggers included), taken automatically before a run because
//!   MySQL cannot roll DDL back; restoring drops and recreates the database,
//!   so it is exactly as it was.
//!
//! Each backup is a folder `<dir>/<id>/` holding the copy and `manifest.json`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use instar_core::{time, Dialect};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Connection};

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
}

fn tool_exists(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

/// Whether an automatic backup is taken before a run on `db`.
pub(crate) fn wanted(db: &Db, any_non_transactional: bool) -> bool {
    match db.dialect() {
        Dialect::Sqlite => db.url.sqlite_path.is_some(),
        Dialect::MySql => any_non_transactional && tool_exists("mysqldump"),
        Dialect::Postgres => false,
    }
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
    let id = new_id(dir);
    let folder = dir.join(&id);
    std::fs::create_dir_all(&folder)
        .map_err(|e| Error::Backup(format!("cannot create {}: {e}", folder.display())))?;
    let (method, path) = match db.dialect() {
        Dialect::Sqlite => {
            if db.url.sqlite_path.is_none() {
                return Err(Error::Backup(
                    "an in-memory database cannot be backed up".into(),
                ));
            }
            let path = folder.join("database.sqlite");
            sqlx::query("VACUUM INTO ?")
                .bind(path.display().to_string())
                .execute(&mut db.conn)
                .await
                .map_err(|e| Error::query("copying the database (VACUUM INTO)", e))?;
            check_sqlite_copy(&path).await?;
            ("vacuum-into", path)
        }
        Dialect::Postgres => {
            let path = folder.join("database.pgdump");
            let mut cmd = Command::new("pg_dump");
            cmd.arg("--format=custom").arg("--file").arg(&path);
            pg_connection_args(&mut cmd, &db.url.driver_url)?;
            run_tool(cmd, "pg_dump", None)?;
            ("pg_dump", path)
        }
        Dialect::MySql => {
            let path = folder.join("database.sql");
            let parts = MySqlParts::parse(&db.url.driver_url)?;
            let mut cmd = Command::new("mysqldump");
            parts.args(&mut cmd);
            cmd.args([
                "--single-transaction",
                "--routines",
                "--events",
                "--triggers",
                "--add-drop-database",
                "--databases",
            ])
            .arg(&parts.database);
            let out = std::fs::File::create(&path)
                .map_err(|e| Error::Backup(format!("{}: {e}", path.display())))?;
            cmd.stdout(out);
            run_tool(cmd, "mysqldump", None)?;
            ("mysqldump", path)
        }
    };
    let info = BackupInfo {
        id,
        created_at: time::now_rfc3339(),
        dialect: db.dialect().to_string(),
        method: method.into(),
        size_bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
        path,
        reason: reason.into(),
        database: redact(&db.url.driver_url),
    };
    let manifest = serde_json::to_string_pretty(&info).map_err(|e| Error::Backup(e.to_string()))?;
    std::fs::write(folder.join("manifest.json"), manifest)
        .map_err(|e| Error::Backup(format!("{}: {e}", folder.display())))?;
    Ok(Some(info))
}

async fn check_sqlite_copy(path: &Path) -> Result<(), Error> {
    let url = format!("sqlite://{}?mode=ro", path.display());
    let mut conn = AnyConnection::connect(&url)
        .await
        .map_err(|e| Error::Backup(format!("cannot open the copy {}: {e}", path.display())))?;
    let result: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
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

fn run_tool(mut cmd: Command, name: &str, stdin: Option<&Path>) -> Result<(), Error> {
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

/// `--dbname <URL without its password>` for a PostgreSQL client tool; the
/// password goes through the environment (`PGPASSWORD`), never the process list.
fn pg_connection_args(cmd: &mut Command, driver_url: &str) -> Result<(), Error> {
    let mut u = url::Url::parse(driver_url).map_err(|e| Error::BadUrl {
        url: redact(driver_url),
        reason: e.to_string(),
    })?;
    let (_, password) = crate::url::credentials(&u);
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
        let _ = u.set_password(None);
    }
    cmd.arg("--dbname").arg(u.as_str());
    Ok(())
}

/// Host, port, user, password and database of a MySQL URL, for the client tools.
struct MySqlParts {
    host: String,
    port: u16,
    user: String,
    password: String,
    database: String,
}

impl MySqlParts {
    fn parse(u: &str) -> Result<Self, Error> {
        let url = url::Url::parse(u).map_err(|e| Error::BadUrl {
            url: redact(u),
            reason: e.to_string(),
        })?;
        let (user, password) = crate::url::credentials(&url);
        Ok(MySqlParts {
            host: url.host_str().unwrap_or("localhost").to_string(),
            port: url.port().unwrap_or(3306),
            user,
            password: password.unwrap_or_default(),
            database: url.path().trim_start_matches('/').to_string(),
        })
    }

    fn args(&self, cmd: &mut Command) {
        cmd.arg(format!("--host={}", self.host))
            .arg(format!("--port={}", self.port))
            .arg("--protocol=tcp");
        if !self.user.is_empty() {
            cmd.arg(format!("--user={}", self.user));
        }
        // The password goes through the environment, never the process list.
        cmd.env("MYSQL_PWD", &self.password);
    }
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

/// Closes `db`'s connection, leaving a scratch in-memory one in its place until `reconnect`.
async fn release_connection(db: &mut Db) -> Result<(), Error> {
    let placeholder = AnyConnection::connect("sqlite::memory:")
        .await
        .map_err(|e| Error::query("opening a scratch connection", e))?;
    let old = std::mem::replace(&mut db.conn, placeholder);
    let _ = old.close().await;
    Ok(())
}

/// Replaces the SQLite file `target` with the copy at `from`: written beside it,
/// flushed, then renamed over it, so a restore killed half way leaves the old
/// database or the new one, never a mix.
fn replace_sqlite_file(from: &Path, target: &Path) -> Result<(), Error> {
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
    // The old file's journal must not be applied to the new one.
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut p = target.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    std::fs::rename(&tmp, target).map_err(|e| {
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

/// Empties a PostgreSQL database on `db`'s own session (which keeps the run
/// lock): every schema but the system ones is dropped, `public` recreated.
async fn empty_postgres(db: &mut Db) -> Result<(), Error> {
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' ORDER BY 1",
    )
    .fetch_all(&mut db.conn)
    .await
    .map_err(|e| Error::query("listing the schemas to restore", e))?;
    for s in schemas {
        let drop = format!("DROP SCHEMA {} CASCADE", db.engine.quote(&s));
        crate::db::exec(&mut db.conn, &drop)
            .await
            .map_err(|e| Error::query(format!("dropping schema {s} to restore"), e))?;
    }
    crate::db::exec(&mut db.conn, "CREATE SCHEMA IF NOT EXISTS public")
        .await
        .map_err(|e| Error::query("recreating schema public to restore", e))?;
    Ok(())
}

/// Restores backup `id` from `dir` over the database of `db`. `db`'s session
/// is kept on PostgreSQL and MySQL (so a run lock it holds stays held); on
/// SQLite it is reopened after the file is replaced (the lock is a sidecar file).
///
/// # Warning
/// Everything written to the database since the backup is lost. Stop the
/// applications that use it first: a SQLite file is replaced under them, and
/// a PostgreSQL or MySQL database is emptied and refilled from the dump.
pub async fn restore(db: &mut Db, dir: &Path, id: &str) -> Result<BackupInfo, Error> {
    let info = find(dir, id)?;
    if info.dialect != db.dialect().to_string() {
        return Err(Error::Backup(format!(
            "backup {id} is of a {} database, this is {}",
            info.dialect,
            db.dialect()
        )));
    }
    match db.dialect() {
        Dialect::Sqlite => {
            let target =
                db.url.sqlite_path.clone().ok_or_else(|| {
                    Error::Backup("cannot restore into an in-memory database".into())
                })?;
            // Close our connection so no handle points at the file being replaced.
            release_connection(db).await?;
            replace_sqlite_file(&info.path, &target)?;
            db.reconnect().await?;
        }
        Dialect::Postgres => {
            // Objects created after the backup go too: the database is emptied
            // first, on this session, which keeps holding the run lock.
            empty_postgres(db).await?;
            let mut cmd = Command::new("pg_restore");
            cmd.args(["--clean", "--if-exists", "--no-owner", "--exit-on-error"]);
            pg_connection_args(&mut cmd, &db.url.driver_url)?;
            cmd.arg(&info.path);
            run_tool(cmd, "pg_restore", None)?;
        }
        Dialect::MySql => {
            // The dump drops and recreates the database; GET_LOCK is server-wide
            // and this session keeps it.
            let parts = MySqlParts::parse(&db.url.driver_url)?;
            let mut cmd = Command::new("mysql");
            parts.args(&mut cmd);
            run_tool(cmd, "mysql", Some(&info.path))?;
            let use_db = format!("USE {}", db.engine.quote(&parts.database));
            crate::db::exec(&mut db.conn, &use_db)
                .await
                .map_err(|e| Error::query("returning to the restored database", e))?;
        }
    }
    Ok(info)
}
