//! Stage two of argument handling: flags + environment + instar.toml → settings.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::args::Global;

/// instar.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub migrations: MigrationsConfig,
    #[serde(default)]
    pub run: RunConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: Option<String>,
    #[serde(default)]
    pub init_sql: Vec<String>,
    pub history_table: Option<String>,
    pub history_schema: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationsConfig {
    pub dir: Option<PathBuf>,
    pub layout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub lock_timeout: Option<String>,
    pub backup: Option<bool>,
    pub backup_dir: Option<PathBuf>,
}

/// Everything a command needs, resolved.
#[derive(Debug)]
pub struct Settings {
    pub db: instar_db::Settings,
    pub migrations: PathBuf,
    pub layout: Option<instar_core::Layout>,
    pub lock_timeout: Duration,
    pub backup: bool,
    pub backup_dir: PathBuf,
}

/// Parses `500ms`, `30s`, `5m`, `12h`, `30d` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .with_context(|| format!("invalid duration {s:?} (try 30s, 5m, 30d)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => bail!("invalid duration unit in {s:?} (use ms, s, m, h or d)"),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// Reads the config file (explicit, or ./instar.toml when present).
pub fn load(global: &Global) -> Result<(FileConfig, PathBuf)> {
    let (path, explicit) = match &global.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from("instar.toml"), false),
    };
    if !path.is_file() {
        if explicit {
            bail!("config file {} not found", path.display());
        }
        return Ok((FileConfig::default(), PathBuf::from(".")));
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let cfg: FileConfig = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
    let root = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    Ok((cfg, root))
}

/// Resolves the settings: flags, then environment, then the config file, then defaults.
pub fn resolve(global: &Global) -> Result<Settings> {
    let (cfg, root) = load(global)?;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let url = global
        .database
        .clone()
        .or_else(|| env("INSTAR_DATABASE_URL"))
        .or_else(|| env("DATABASE_URL"))
        .or(cfg.database.url.clone())
        .unwrap_or_else(|| format!("sqlite:{}", root.join("instar.db").display()));
    let mut db = instar_db::Settings::new(url);
    db.init_sql = cfg.database.init_sql.clone();
    db.init_sql.extend(global.init_sql.iter().cloned());
    if let Some(t) = cfg.database.history_table {
        db.history_table = t;
    }
    db.history_schema = cfg.database.history_schema;
    let migrations = global
        .migrations
        .clone()
        .unwrap_or_else(|| root.join(cfg.migrations.dir.unwrap_or_else(|| "migrations".into())));
    let layout = match cfg.migrations.layout.as_deref() {
        None => None,
        Some("instar") => Some(instar_core::Layout::Instar),
        Some("diesel") => Some(instar_core::Layout::Diesel),
        Some("sqlx") => Some(instar_core::Layout::Sqlx),
        Some("flyway") => Some(instar_core::Layout::Flyway),
        Some(other) => {
            bail!("instar.toml: unknown layout {other:?} (instar, diesel, sqlx or flyway)")
        }
    };
    let lock_timeout = parse_duration(
        global
            .lock_timeout
            .as_deref()
            .or(cfg.run.lock_timeout.as_deref())
            .unwrap_or("60s"),
    )?;
    Ok(Settings {
        db,
        migrations,
        layout,
        lock_timeout,
        backup: cfg.run.backup.unwrap_or(true),
        backup_dir: root.join(
            cfg.run
                .backup_dir
                .unwrap_or_else(|| PathBuf::from(".instar/backups")),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86400)
        );
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("5 parsecs").is_err());
    }
}
