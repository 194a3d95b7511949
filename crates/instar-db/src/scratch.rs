//! Scratch databases: created for one `instar test` (or a squash), dropped
//! after it, and found and dropped on a later run when a killed process left
//! one behind.
//!
//! A scratch database is named `instar_scratch_<project>_<host>_<pid>_<n>`
//! (the project a hash of what the caller names it by; host and process for
//! people reading the list). Its owner holds a lock for as long as it lives —
//! a session lock on the server (PostgreSQL advisory lock, MySQL
//! `GET_LOCK`), a file lock beside a SQLite file — which the server or the
//! kernel releases when the owner dies, however it dies. A later run of the
//! project drops only the scratch databases whose lock it can take: never
//! one another runner is using, on this host or any other, in a container or
//! not. PostgreSQL scratch databases copy `template0`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use instar_core::Dialect;
use sqlx::{AnyConnection, Connection};

use crate::engine::{engine, ScratchSql};
use crate::url::{redact, DbUrl};
use crate::Error;

const PREFIX: &str = "instar_scratch_";
/// Kept scratch databases (`--keep`) are never dropped by a later run.
const KEPT: &str = "instar_kept_";

/// What keeps a scratch database's lock: the server session, or the file.
#[derive(Debug)]
enum Owner {
    Session(AnyConnection, String),
    File(File),
}

/// One scratch database. Drop it with [`Scratch::remove`]; a process that
/// dies first leaves it to [`clean_leftovers`].
#[derive(Debug)]
pub struct Scratch {
    /// Its URL.
    pub url: String,
    /// Its name (the file name's stem on SQLite).
    pub name: String,
    file: Option<PathBuf>,
    owner: Option<Owner>,
}

/// 8 hex digits of FNV-1a: stable across processes and builds.
fn tag(text: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in text.bytes() {
        h = (h ^ b as u32).wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// This host, as a tag of its name.
fn host_tag() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".into());
    tag(name.trim())
}

/// Whether `name` is a (not kept) scratch database of `project`.
fn of_project(name: &str, project: &str) -> bool {
    name.strip_prefix(PREFIX)
        .and_then(|rest| rest.split('_').next())
        .is_some_and(|p| p == tag(project))
}

fn next_name(project: &str, keep: bool) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}{}_{}_{}_{}",
        if keep { KEPT } else { PREFIX },
        tag(project),
        host_tag(),
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A connection to the server of `url` for administration: the configured
/// database, or the engine's default one when it does not exist yet.
async fn admin_conn(url: &str) -> Result<(AnyConnection, String), Error> {
    sqlx::any::install_default_drivers();
    let e = match AnyConnection::connect(url).await {
        Ok(c) => return Ok((c, url.to_string())),
        Err(e) => e,
    };
    let mut u = url::Url::parse(url).map_err(|_| Error::BadUrl {
        url: redact(url),
        reason: "not a URL".into(),
    })?;
    u.set_path(if url.starts_with("postgres") {
        "/postgres"
    } else {
        "/"
    });
    let other = u.to_string();
    AnyConnection::connect(&other)
        .await
        .map(|c| (c, other))
        .map_err(|_| Error::Connect {
            url: redact(url),
            message: format!(
                "{} (needed to create scratch databases on its server)",
                crate::error::db_message(&e)
            ),
        })
}

fn with_database(url: &str, name: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.set_path(&format!("/{name}"));
            u.to_string()
        }
        Err(_) => url.to_string(),
    }
}

fn io(what: String, e: std::io::Error) -> Error {
    Error::Query {
        context: what,
        message: e.to_string(),
        code: None,
    }
}

/// The lock file beside a SQLite scratch file.
fn owner_file(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".owner");
    PathBuf::from(p)
}

/// Takes the owner's lock of `name` on `c` without waiting; `true` when taken.
async fn try_lock(c: &mut AnyConnection, sql: &ScratchSql, name: &str) -> Result<bool, Error> {
    let taken: i64 = sqlx::query_scalar(&sql.try_lock)
        .fetch_one(&mut *c)
        .await
        .map_err(|e| Error::query(format!("locking scratch database {name}"), e))?;
    Ok(taken == 1)
}

impl Scratch {
    /// A new, empty database of `project` (any text naming it) on the
    /// server of `url` (or, for SQLite, a new file in `sqlite_dir`), locked
    /// as this process's until [`Scratch::remove`]. The database `url` names
    /// is not touched. With `keep`, it is named `instar_kept_…` and no later
    /// run drops it.
    pub async fn create(
        url: &str,
        sqlite_dir: &Path,
        project: &str,
        keep: bool,
    ) -> Result<Scratch, Error> {
        let parsed = DbUrl::parse(url)?;
        let name = next_name(project, keep);
        let Some(sql) = engine(parsed.dialect).scratch_sql(&name) else {
            std::fs::create_dir_all(sqlite_dir)
                .map_err(|e| io(format!("creating {}", sqlite_dir.display()), e))?;
            let file = sqlite_dir.join(format!("{name}.db"));
            let lock = File::create(owner_file(&file))
                .map_err(|e| io(format!("creating the lock of {}", file.display()), e))?;
            lock.lock()
                .map_err(|e| io(format!("locking {}", file.display()), e))?;
            return Ok(Scratch {
                url: format!("sqlite:{}", file.display()),
                name,
                file: Some(file),
                owner: Some(Owner::File(lock)),
            });
        };
        let (mut c, admin) = admin_conn(url).await?;
        // The lock first: a cleanup that lists the new database finds it held.
        try_lock(&mut c, &sql, &name).await?;
        let created = crate::db::exec(&mut c, &sql.create).await;
        if let Err(e) = created {
            let _ = c.close().await;
            return Err(Error::query(format!("creating scratch database {name}"), e));
        }
        Ok(Scratch {
            url: with_database(&admin, &name),
            name,
            file: None,
            owner: Some(Owner::Session(c, admin)),
        })
    }

    /// Drops the database (removes the file), then lets its lock go.
    pub async fn remove(mut self) -> Result<(), Error> {
        match self.owner.take() {
            Some(Owner::File(lock)) => {
                if let Some(file) = &self.file {
                    remove_files(file);
                }
                drop(lock);
                Ok(())
            }
            Some(Owner::Session(mut c, admin)) => {
                let r = drop_database(&mut c, &admin, &self.name).await;
                let _ = c.close().await;
                r
            }
            None => Ok(()),
        }
    }
}

fn remove_files(file: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal", ".instar-lock", ".owner"] {
        let mut p = file.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

async fn drop_database(c: &mut AnyConnection, admin: &str, name: &str) -> Result<(), Error> {
    let parsed = DbUrl::parse(admin)?;
    let Some(sql) = engine(parsed.dialect).scratch_sql(name) else {
        return Ok(());
    };
    let mut dropped = crate::db::exec(c, &sql.drop).await;
    if dropped.is_err() && sql.drop.ends_with(" WITH (FORCE)") {
        // PostgreSQL before 13 has no FORCE.
        let plain = sql.drop.trim_end_matches(" WITH (FORCE)");
        dropped = crate::db::exec(c, plain).await;
    }
    let _ = crate::db::exec(c, &sql.unlock).await;
    dropped
        .map(|_| ())
        .map_err(|e| Error::query(format!("dropping scratch database {name}"), e))
}

/// Drops the scratch databases (files) of `project` on the server of `url`
/// (in `sqlite_dir`) whose owner's lock is free — their owner is gone —;
/// returns their names.
pub async fn clean_leftovers(
    url: &str,
    sqlite_dir: &Path,
    project: &str,
) -> Result<Vec<String>, Error> {
    let parsed = DbUrl::parse(url)?;
    let mut dropped = Vec::new();
    if parsed.dialect == Dialect::Sqlite {
        let Ok(entries) = std::fs::read_dir(sqlite_dir) else {
            return Ok(dropped);
        };
        for entry in entries.flatten() {
            let file = entry.path();
            let Some(stem) = file
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".db"))
            else {
                continue;
            };
            if !of_project(stem, project) {
                continue;
            }
            // A missing lock file: its owner never got as far as locking.
            let free = match File::open(owner_file(&file)) {
                Ok(f) => f.try_lock().is_ok(),
                Err(_) => true,
            };
            if free {
                remove_files(&file);
                dropped.push(stem.to_string());
            }
        }
        return Ok(dropped);
    }
    let Some(list) = engine(parsed.dialect).scratch_sql("") else {
        return Ok(dropped);
    };
    let (mut c, admin) = admin_conn(url).await?;
    let r = async {
        let names: Vec<String> = sqlx::query_scalar(list.list)
            .fetch_all(&mut c)
            .await
            .map_err(|e| Error::query("listing scratch databases", e))?;
        for name in names.into_iter().filter(|n| of_project(n, project)) {
            let Some(sql) = engine(parsed.dialect).scratch_sql(&name) else {
                continue;
            };
            if try_lock(&mut c, &sql, &name).await? {
                drop_database(&mut c, &admin, &name).await?;
                dropped.push(name);
            }
        }
        Ok(())
    }
    .await;
    let _ = c.close().await;
    r.map(|()| dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_tell_their_project_and_kept_ones_are_nobodys() {
        let mine = next_name("project", false);
        assert!(of_project(&mine, "project"));
        assert!(!of_project(&mine, "another project"));
        let kept = next_name("project", true);
        assert!(kept.starts_with(KEPT) && !of_project(&kept, "project"));
        assert!(!of_project("instar_t_1_2_3", "project"));
    }

    #[test]
    fn a_sqlite_scratch_file_is_dropped_only_when_its_owner_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let s = Scratch::create("sqlite:x.db", dir.path(), "p", false)
                .await
                .unwrap();
            std::fs::write(dir.path().join(format!("{}.db", s.name)), b"").unwrap();
            // Its owner (this process, through the open lock) is alive.
            let cleaned = clean_leftovers("sqlite:x.db", dir.path(), "p")
                .await
                .unwrap();
            assert!(cleaned.is_empty(), "{cleaned:?}");
            // The owner gone (its lock released without a remove, as a kill does).
            let name = s.name.clone();
            drop(s);
            let cleaned = clean_leftovers("sqlite:x.db", dir.path(), "p")
                .await
                .unwrap();
            assert_eq!(cleaned, vec![name]);
        });
    }
}
