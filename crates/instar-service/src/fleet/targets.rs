//! The fleet's targets: from the static list, a glob of SQLite files, a
//! command's lines and a query's rows, in that order, each once.

use std::path::Path;

use serde::Serialize;

use super::config::FleetConfig;
use crate::{Error, Service, Settings};

/// One database (or schema) of the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// How it is shown and recorded: a schema or database name, a file's
    /// path relative to the project, or the URL (without a password).
    pub name: String,
    /// Its database URL.
    #[serde(skip)]
    pub url: String,
    /// A PostgreSQL schema on `url` (schema per tenant).
    pub schema: Option<String>,
}

fn bad(source: &str, m: String) -> Error {
    Error::Config(format!("instar.toml [fleet] {source}: {m}"))
}

/// A target from one entry of a list, a command's line or a query's row.
fn entry(cfg: &FleetConfig, source: &str, text: &str) -> Result<Target, Error> {
    let t = text.trim();
    if t.is_empty() || t.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad(
            source,
            format!("{text:?} is not a target (a URL or a name, one per line or row)"),
        ));
    }
    if t.contains(':') {
        let shown = instar_db::url::redact(t);
        return Ok(Target {
            name: shown,
            url: t.to_string(),
            schema: None,
        });
    }
    if t.ends_with(".db") || t.ends_with(".sqlite") || t.ends_with(".sqlite3") || t.contains('/') {
        let path = cfg.root.join(t);
        return Ok(Target {
            name: t.into(),
            url: format!("sqlite:{}", path.display()),
            schema: None,
        });
    }
    if !t
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(bad(
            source,
            format!("{t:?} is not a schema or database name (letters, digits, _ and -)"),
        ));
    }
    let Some(server) = &cfg.server else {
        return Err(bad(source, format!("{t:?} is a bare name: set [fleet] server (the server its schema or database is on), or give a URL")));
    };
    if server.starts_with("postgres") {
        Ok(Target {
            name: t.into(),
            url: server.clone(),
            schema: Some(t.into()),
        })
    } else if server.starts_with("mysql") || server.starts_with("mariadb") {
        let mut u = url::Url::parse(server).map_err(|e| bad("server", e.to_string()))?;
        u.set_path(&format!("/{t}"));
        Ok(Target {
            name: t.into(),
            url: u.to_string(),
            schema: None,
        })
    } else {
        Err(bad(
            "server",
            format!(
                "{} is neither PostgreSQL (schemas) nor MySQL (databases)",
                instar_db::url::redact(server)
            ),
        ))
    }
}

/// `dir/pat*.db`: the files of `dir` whose name matches (`*` and `?`).
fn glob(root: &Path, pattern: &str) -> Result<Vec<String>, Error> {
    let (dir, file) = pattern.rsplit_once('/').unwrap_or((".", pattern));
    if dir.contains(['*', '?']) {
        return Err(bad(
            "glob",
            format!("{pattern:?}: wildcards go in the file name only (tenants/*.db)"),
        ));
    }
    let read =
        std::fs::read_dir(root.join(dir)).map_err(|e| bad("glob", format!("{pattern:?}: {e}")))?;
    let mut out = Vec::new();
    for e in read.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if matches(file.as_bytes(), name.as_bytes()) && e.path().is_file() {
            out.push(if dir == "." {
                name
            } else {
                format!("{dir}/{name}")
            });
        }
    }
    out.sort();
    Ok(out)
}

fn matches(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => matches(&p[1..], s) || (!s.is_empty() && matches(p, &s[1..])),
        (Some(b'?'), Some(_)) => matches(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => matches(&p[1..], &s[1..]),
        _ => false,
    }
}

/// Kills a process group when dropped, unless disarmed: what a cancelled
/// rollout leaves of its list command (the shell and whatever it started).
struct Group(Option<u32>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = std::process::Command::new("sh")
                .args(["-c", &format!("kill -KILL -{pgid}")])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// Runs the list command without blocking the runtime (a server goes on
/// answering while it runs), in a process group of its own with no input;
/// dropped — a cancelled rollout — the whole group is killed.
async fn command(cfg: &FleetConfig, cmd: &str) -> Result<Vec<String>, Error> {
    let could_not = |e: std::io::Error| bad("command", format!("{cmd:?} could not run: {e}"));
    let child = tokio::process::Command::new("sh")
        .args(["-c", cmd])
        .current_dir(&cfg.root)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(could_not)?;
    let mut group = Group(child.id());
    let out = child.wait_with_output().await.map_err(could_not)?;
    group.0 = None;
    if !out.status.success() {
        return Err(bad("command", {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stderr = stderr.trim();
            if stderr.is_empty() {
                format!(
                    "{cmd:?} failed ({}), printing nothing on stderr",
                    out.status
                )
            } else {
                format!("{cmd:?} failed ({}): {stderr}", out.status)
            }
        }));
    }
    let text = String::from_utf8(out.stdout).map_err(|_| {
        bad(
            "command",
            format!("{cmd:?} printed bytes that are not UTF-8"),
        )
    })?;
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect())
}

impl Service {
    /// The fleet's targets, each once, in the order their sources give them.
    pub async fn fleet_targets(&self) -> Result<Vec<Target>, Error> {
        let cfg = self.fleet_config()?;
        let mut out: Vec<Target> = Vec::new();
        let mut push = |t: Target, source: &str| -> Result<(), Error> {
            if out.iter().any(|o| o.url == t.url && o.schema == t.schema) {
                return Err(bad(source, format!("{} is listed twice", t.name)));
            }
            out.push(t);
            Ok(())
        };
        for t in &cfg.targets {
            push(entry(cfg, "targets", t)?, "targets")?;
        }
        if let Some(g) = &cfg.glob {
            for f in glob(&cfg.root, g)? {
                push(entry(cfg, "glob", &f)?, "glob")?;
            }
        }
        if let Some(c) = &cfg.command {
            for line in command(cfg, c).await? {
                push(entry(cfg, "command", &line)?, "command")?;
            }
        }
        if let Some(q) = &cfg.query {
            let url = cfg
                .catalogue
                .clone()
                .unwrap_or_else(|| self.settings().db.url.clone());
            let mut settings = self.settings().clone();
            settings.db.url = url;
            // Only read: a missing catalogue is an error, never made.
            settings.db.create_missing = false;
            let mut db = Service::new(settings).connect().await?;
            let rows = db.rows(q, "running [fleet] query").await;
            let _ = db.close().await;
            for (i, r) in rows?.iter().enumerate() {
                let Some(serde_json::Value::String(v)) = r.first() else {
                    return Err(bad(
                        "query",
                        format!(
                            "row {} is {:?}, not one text column (a URL or a name)",
                            i + 1,
                            r
                        ),
                    ));
                };
                push(entry(cfg, "query", v)?, "query")?;
            }
        }
        Ok(out)
    }

    /// The settings of one target: this project's, on its database.
    pub(crate) fn target_settings(&self, t: &Target) -> Settings {
        let mut s = self.settings().clone();
        s.db.url = t.url.clone();
        if let Some(schema) = &t.schema {
            s.use_schema(schema);
        }
        s.backup_dir = s.backup_dir.join(t.name.replace(['/', ':', '\\'], "_"));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_names() {
        assert!(matches(b"*.db", b"acme.db"));
        assert!(matches(b"t-??.db", b"t-01.db"));
        assert!(!matches(b"*.db", b"acme.db-wal"));
        assert!(!matches(b"t-?.db", b"t-10.db"));
    }

    #[test]
    fn entries_are_urls_files_or_names_on_a_server() {
        let mut cfg = FleetConfig {
            root: "/p".into(),
            ..FleetConfig::default()
        };
        assert_eq!(
            entry(&cfg, "t", "tenants/a.db").unwrap().url,
            "sqlite:/p/tenants/a.db"
        );
        assert!(entry(&cfg, "t", "acme")
            .unwrap_err()
            .to_string()
            .contains("set [fleet] server"));
        assert!(entry(&cfg, "t", "a b").is_err());
        cfg.server = Some("postgres://u@h/app".into());
        let t = entry(&cfg, "t", "acme").unwrap();
        assert_eq!(t.schema.as_deref(), Some("acme"));
        cfg.server = Some("mysql://root@h/x".into());
        assert_eq!(entry(&cfg, "t", "acme").unwrap().url, "mysql://root@h/acme");
        assert!(entry(&cfg, "t", "acme;drop").is_err());
    }
}
