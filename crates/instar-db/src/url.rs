//! Database URLs: which engine, and the URL the driver gets.

use std::path::PathBuf;

use instar_core::Dialect;

use crate::Error;

/// A database URL, understood.
#[derive(Debug, Clone)]
pub struct DbUrl {
    /// The engine.
    pub dialect: Dialect,
    /// The URL handed to the driver.
    pub driver_url: String,
    /// For SQLite, the database file (`None` for `:memory:`).
    pub sqlite_path: Option<PathBuf>,
}

impl DbUrl {
    /// Parses `sqlite:path`, `sqlite://path`, a bare `*.db` path, `postgres://…`,
    /// `postgresql://…`, `mysql://…` or `mariadb://…`.
    pub fn parse(url: &str) -> Result<DbUrl, Error> {
        let bad = |reason: &str| Error::BadUrl {
            url: redact(url),
            reason: reason.into(),
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DbUrl {
                dialect: Dialect::Postgres,
                driver_url: url.to_string(),
                sqlite_path: None,
            });
        }
        if let Some(rest) = url
            .strip_prefix("mysql://")
            .or_else(|| url.strip_prefix("mariadb://"))
        {
            return Ok(DbUrl {
                dialect: Dialect::MySql,
                driver_url: format!("mysql://{rest}"),
                sqlite_path: None,
            });
        }
        let rest = if let Some(r) = url.strip_prefix("sqlite://") {
            r
        } else if let Some(r) = url.strip_prefix("sqlite:") {
            r
        } else if url.contains("://") {
            return Err(bad("unknown scheme; use sqlite:, postgres:// or mysql://"));
        } else {
            url
        };
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() {
            return Err(bad("no SQLite file given"));
        }
        if path == ":memory:" {
            return Ok(DbUrl {
                dialect: Dialect::Sqlite,
                driver_url: "sqlite::memory:".into(),
                sqlite_path: None,
            });
        }
        let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
        if !params.iter().any(|p| p.starts_with("mode=")) {
            params.push("mode=rwc");
        }
        Ok(DbUrl {
            dialect: Dialect::Sqlite,
            driver_url: format!("sqlite://{path}?{}", params.join("&")),
            sqlite_path: Some(PathBuf::from(path)),
        })
    }
}

/// The URL with any password replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_forms() {
        for u in ["app.db", "sqlite:app.db", "sqlite://app.db"] {
            let p = DbUrl::parse(u).unwrap();
            assert_eq!(p.dialect, Dialect::Sqlite);
            assert_eq!(p.sqlite_path.unwrap(), PathBuf::from("app.db"));
            assert_eq!(p.driver_url, "sqlite://app.db?mode=rwc");
        }
    }

    #[test]
    fn server_forms_and_redaction() {
        assert_eq!(
            DbUrl::parse("mariadb://root@h/db").unwrap().driver_url,
            "mysql://root@h/db"
        );
        assert_eq!(
            DbUrl::parse("postgresql://u@h/db").unwrap().dialect,
            Dialect::Postgres
        );
        assert!(DbUrl::parse("oracle://x").is_err());
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
    }
}
