//! MySQL/MariaDB backups: `mysqldump` of the database, restored with `mysql`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::backup::run_tool;
use crate::url::redact;
use crate::{Db, Error};

/// `mysqldump --databases … --add-drop-database` into `folder`.
pub(crate) async fn take(db: &mut Db, folder: &Path) -> Result<(&'static str, PathBuf), Error> {
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
    Ok(("mysqldump", path))
}

/// A dump is whole when `mysqldump` wrote its last line (`-- Dump completed`):
/// a dump cut short, or a file that is not a dump, is refused.
pub(crate) fn verify(file: &Path) -> Result<(), Error> {
    use std::io::{Read, Seek, SeekFrom};
    let bad = |why: String| Error::Backup(format!("{} {why}", file.display()));
    let mut f = std::fs::File::open(file).map_err(|e| bad(format!("cannot be read: {e}")))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut tail = Vec::new();
    f.seek(SeekFrom::Start(len.saturating_sub(4096)))
        .and_then(|_| f.read_to_end(&mut tail))
        .map_err(|e| bad(format!("cannot be read: {e}")))?;
    if String::from_utf8_lossy(&tail).contains("-- Dump completed") {
        Ok(())
    } else {
        Err(bad(
            "is not a whole mysqldump dump (its last line, \"-- Dump completed\", is missing: cut short or damaged)".into(),
        ))
    }
}

/// The dump drops and recreates the database; GET_LOCK is server-wide and this
/// session keeps it.
pub(crate) async fn restore(db: &mut Db, file: &Path) -> Result<(), Error> {
    let parts = MySqlParts::parse(&db.url.driver_url)?;
    let mut cmd = Command::new("mysql");
    parts.args(&mut cmd);
    run_tool(cmd, "mysql", Some(file))?;
    let use_db = format!("USE {}", db.engine.quote(&parts.database));
    crate::db::run_sql(&mut db.conn, &use_db, "returning to the restored database").await
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
