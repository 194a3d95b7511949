//! PostgreSQL backups: `pg_dump`, and a restore on the session that holds the lock.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::backup::run_tool;
use crate::url::redact;
use crate::{Db, Error};

/// `pg_dump --format=custom` into `folder`.
pub(crate) async fn take(db: &mut Db, folder: &Path) -> Result<(&'static str, PathBuf), Error> {
    let path = folder.join("database.pgdump");
    let mut cmd = Command::new("pg_dump");
    cmd.arg("--format=custom").arg("--file").arg(&path);
    pg_connection_args(&mut cmd, &db.url.driver_url)?;
    run_tool(cmd, "pg_dump", None)?;
    Ok(("pg_dump", path))
}

/// The schema and rows as a plain script (`pg_dump --inserts`), without
/// Instar's tables and without the session settings pg_dump starts with
/// (a migration must not change its session's search path).
pub(crate) async fn dump_sql(db: &mut Db, work_dir: &Path) -> Result<String, Error> {
    let path = work_dir.join("baseline.sql");
    let mut cmd = Command::new("pg_dump");
    cmd.args([
        "--no-owner",
        "--no-privileges",
        "--no-comments",
        "--inserts",
    ])
    .arg(format!("--exclude-table={}*", db.settings.history_table))
    .arg("--exclude-table=instar_*")
    .arg("--file")
    .arg(&path);
    pg_connection_args(&mut cmd, &db.url.driver_url)?;
    run_tool(cmd, "pg_dump", None)?;
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::Backup(format!("reading {}: {e}", path.display())))?;
    let _ = std::fs::remove_file(&path);
    Ok(baseline_text(&text))
}

/// pg_dump's script without the session settings of its header (a
/// migration must not change its session's search path) and without psql's
/// `\restrict` lines; `check_function_bodies = false` stays (functions come
/// before the tables they read). Everything else is kept as it is: a line of
/// a seeded string is never touched.
fn baseline_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut header = true;
    for line in text.lines() {
        let restrict = (line.starts_with("\\restrict ") || line.starts_with("\\unrestrict "))
            && !line.contains('\'');
        let setting = header
            && ((line.starts_with("SET ") && !line.starts_with("SET check_function_bodies"))
                || line.starts_with("SELECT pg_catalog.set_config("));
        if restrict || setting {
            continue;
        }
        if header && !line.is_empty() && !line.starts_with("--") && !line.starts_with("SET ") {
            header = false;
        }
        out += line;
        out.push('\n');
    }
    out
}

/// `pg_restore --list` reads the archive's table of contents: a file that is
/// not a custom-format dump, or one cut short in its header, is refused.
/// (Damage further in is caught by the checksum recorded when it was taken.)
pub(crate) fn verify(file: &Path) -> Result<(), Error> {
    let mut cmd = Command::new("pg_restore");
    cmd.arg("--list")
        .arg(file)
        .stdout(std::process::Stdio::null());
    run_tool(cmd, "pg_restore", None).map_err(|e| {
        Error::Backup(format!(
            "{} is not a readable pg_dump archive: {e}",
            file.display()
        ))
    })
}

/// Objects created after the backup go too: the database is emptied first, on
/// this session, which keeps holding the run lock; then `pg_restore`.
pub(crate) async fn restore(db: &mut Db, file: &Path) -> Result<(), Error> {
    empty_postgres(db).await?;
    let mut cmd = Command::new("pg_restore");
    cmd.args(["--clean", "--if-exists", "--no-owner", "--exit-on-error"]);
    pg_connection_args(&mut cmd, &db.url.driver_url)?;
    cmd.arg(file);
    run_tool(cmd, "pg_restore", None)
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

/// Empties a PostgreSQL database on `db`'s own session (which keeps the run
/// lock): every schema but the system ones is dropped, `public` recreated.
async fn empty_postgres(db: &mut Db) -> Result<(), Error> {
    let schemas: Vec<String> = crate::conn::query(
        "SELECT nspname::text FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' ORDER BY 1",
    )
    .fetch_all(&mut db.conn)
    .await
    .and_then(|rows| rows.iter().map(|r| r.try_get::<String>(0)).collect())
    .map_err(|e| Error::query("listing the schemas to restore", e))?;
    for s in schemas {
        let drop = format!("DROP SCHEMA {} CASCADE", db.engine.quote(&s));
        crate::conn::exec(&mut db.conn, &drop)
            .await
            .map_err(|e| Error::query(format!("dropping schema {s} to restore"), e))?;
    }
    crate::conn::exec(&mut db.conn, "CREATE SCHEMA IF NOT EXISTS public")
        .await
        .map_err(|e| Error::query("recreating schema public to restore", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_header_settings_go_and_everything_else_stays() {
        let dump = "--\n\\restrict abc123\nSET statement_timeout = 0;\nSET check_function_bodies = false;\nSELECT pg_catalog.set_config('search_path', '', false);\n\nCREATE TABLE public.t (x text);\nINSERT INTO public.t VALUES ('line one\n-- not a comment\nSET not a setting\n\n\nend');\n\\unrestrict abc123\n";
        let out = super::baseline_text(dump);
        assert!(
            !out.contains("statement_timeout")
                && !out.contains("set_config")
                && !out.contains("restrict"),
            "{out}"
        );
        assert!(out.contains("SET check_function_bodies = false;"));
        assert!(
            out.contains("('line one\n-- not a comment\nSET not a setting\n\n\nend')"),
            "{out}"
        );
    }
}
