//! Scratch databases: created for one `instar test`, dropped after it, and
//! found and dropped on a later run when a killed process left one behind.
//!
//! A scratch database is named `instar_scratch_<project>_<host>_<pid>_<n>`:
//! the project (a hash of what the caller names it by), the host (a hash of
//! its name) and the process that made it, so a later run of the project
//! drops only those whose process is gone on this host, never another
//! runner's or another project's.
//! On PostgreSQL and MySQL it is a database on the configured server
//! (PostgreSQL copies `template0`); on SQLite it is a file in a folder of
//! scratch files.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use instar_core::Dialect;
use sqlx::{AnyConnection, Connection};

use crate::engine::engine;
use crate::url::{redact, DbUrl};
use crate::Error;

const PREFIX: &str = "instar_scratch_";
/// Kept scratch databases (`--keep`) are never dropped by a later run.
const KEPT: &str = "instar_kept_";

/// One scratch database. Drop it with [`Scratch::remove`]; a process that
/// dies first leaves it to [`clean_leftovers`].
#[derive(Debug)]
pub struct Scratch {
    /// Its URL.
    pub url: String,
    /// Its name (the file name's stem on SQLite).
    pub name: String,
    admin: Option<String>,
    file: Option<PathBuf>,
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

/// Whether process `pid` of this host is alive.
fn alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc_dir = Path::new("/proc");
    if proc_dir.join("self").exists() {
        return proc_dir.join(pid.to_string()).exists();
    }
    // Without /proc, a name cannot be judged: keep it.
    true
}

/// Whether scratch database `name` of `project` was left by a process that is gone.
fn abandoned(name: &str, project: &str) -> bool {
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return false;
    };
    let mut parts = rest.split('_');
    let (Some(p), Some(host), Some(pid)) = (
        parts.next(),
        parts.next(),
        parts.next().and_then(|p| p.parse().ok()),
    ) else {
        return false;
    };
    p == tag(project) && host == host_tag() && !alive(pid)
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

/// The server's URL for administration: the configured one, or the
/// engine's default database when the configured one does not exist yet.
async fn admin_conn(url: &str) -> Result<(AnyConnection, String), Error> {
    sqlx::any::install_default_drivers();
    let first = AnyConnection::connect(url).await;
    let e = match first {
        Ok(c) => return Ok((c, url.to_string())),
        Err(e) => e,
    };
    let mut u = url::Url::parse(url).map_err(|_| Error::BadUrl {
        url: redact(url),
        reason: "not a URL".into(),
    })?;
    let fallback = if url.starts_with("postgres") {
        "/postgres"
    } else {
        "/"
    };
    u.set_path(fallback);
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

impl Scratch {
    /// A new, empty database of `project` (any text naming it) on the
    /// server of `url` (or, for SQLite, a new file in `sqlite_dir`). The
    /// database `url` names is not touched.
    /// With `keep`, it is named `instar_kept_…` and no later run drops it.
    pub async fn create(
        url: &str,
        sqlite_dir: &Path,
        project: &str,
        keep: bool,
    ) -> Result<Scratch, Error> {
        let parsed = DbUrl::parse(url)?;
        let name = next_name(project, keep);
        let Some(sql) = engine(parsed.dialect).scratch_sql(&name) else {
            std::fs::create_dir_all(sqlite_dir).map_err(|e| Error::Query {
                context: format!("creating {}", sqlite_dir.display()),
                message: e.to_string(),
                code: None,
            })?;
            let file = sqlite_dir.join(format!("{name}.db"));
            return Ok(Scratch {
                url: format!("sqlite:{}", file.display()),
                name,
                admin: None,
                file: Some(file),
            });
        };
        let (mut c, admin) = admin_conn(url).await?;
        let created = crate::db::exec(&mut c, &sql.create).await;
        let _ = c.close().await;
        created.map_err(|e| Error::query(format!("creating scratch database {name}"), e))?;
        Ok(Scratch {
            url: with_database(&admin, &name),
            name,
            admin: Some(admin),
            file: None,
        })
    }

    /// Drops the database (removes the file).
    pub async fn remove(self) -> Result<(), Error> {
        if let Some(file) = &self.file {
            remove_files(file);
            return Ok(());
        }
        let Some(admin) = &self.admin else {
            return Ok(());
        };
        drop_database(admin, &self.name).await
    }
}

fn remove_files(file: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal", ".lock"] {
        let mut p = file.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

async fn drop_database(admin: &str, name: &str) -> Result<(), Error> {
    let parsed = DbUrl::parse(admin)?;
    let Some(sql) = engine(parsed.dialect).scratch_sql(name) else {
        return Ok(());
    };
    let (mut c, _) = admin_conn(admin).await?;
    let mut dropped = crate::db::exec(&mut c, &sql.drop).await;
    if dropped.is_err() && sql.drop.ends_with(" WITH (FORCE)") {
        // PostgreSQL before 13 has no FORCE.
        let plain = sql.drop.trim_end_matches(" WITH (FORCE)");
        dropped = crate::db::exec(&mut c, plain).await;
    }
    let _ = c.close().await;
    dropped
        .map(|_| ())
        .map_err(|e| Error::query(format!("dropping scratch database {name}"), e))
}

/// Drops the scratch databases (files) of `project` on the server of `url`
/// (in `sqlite_dir`) that a process of this host left behind and is gone;
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
            if abandoned(stem, project) {
                remove_files(&file);
                dropped.push(stem.to_string());
            }
        }
        return Ok(dropped);
    }
    let Some(sql) = engine(parsed.dialect).scratch_sql("") else {
        return Ok(dropped);
    };
    let (mut c, admin) = admin_conn(url).await?;
    let names: Result<Vec<String>, sqlx::Error> =
        sqlx::query_scalar(sql.list).fetch_all(&mut c).await;
    let _ = c.close().await;
    let names = names.map_err(|e| Error::query("listing scratch databases", e))?;
    for name in names.into_iter().filter(|n| abandoned(n, project)) {
        drop_database(&admin, &name).await?;
        dropped.push(name);
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_gone_process_of_this_host_abandons_a_name() {
        let p = tag("project");
        let mine = next_name("project", false);
        assert!(next_name("project", true).starts_with(KEPT));
        assert!(!abandoned(&mine, "project"), "this process is alive");
        let gone = format!("{PREFIX}{p}_{}_{}_0", host_tag(), u32::MAX - 7);
        assert!(abandoned(&gone, "project"));
        assert!(!abandoned(&gone, "another project"));
        let elsewhere = format!("{PREFIX}{p}_0badc0de_{}_0", u32::MAX - 7);
        assert!(
            host_tag() == "0badc0de" || !abandoned(&elsewhere, "project"),
            "another host's runner is never judged from here"
        );
        assert!(!abandoned("instar_t_1_2_3", "project"));
        assert!(!abandoned(
            &format!("{PREFIX}{p}_{}_notapid_0", host_tag()),
            "project"
        ));
    }
}
