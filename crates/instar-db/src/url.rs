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
    /// The server profile the URL names (`?instar_profile=…`, removed from `driver_url`).
    pub profile: Option<crate::profile::Profile>,
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
            let (driver_url, profile) = crate::profile::split_url(url).map_err(|e| bad(&e))?;
            return Ok(DbUrl {
                dialect: Dialect::Postgres,
                driver_url,
                sqlite_path: None,
                profile,
            });
        }
        if let Some(rest) = url
            .strip_prefix("mysql://")
            .or_else(|| url.strip_prefix("mariadb://"))
        {
            let (rest, profile) = crate::profile::split_url(rest).map_err(|e| bad(&e))?;
            return Ok(DbUrl {
                dialect: Dialect::MySql,
                driver_url: format!("mysql://{rest}"),
                sqlite_path: None,
                profile,
            });
        }
        let rest = if let Some(r) = url.strip_prefix("sqlite://") {
            r
        } else if let Some(r) = url.strip_prefix("sqlite:") {
            r
        } else if url.is_empty() {
            return Err(bad("no SQLite file given"));
        } else if url.contains("://") || has_scheme(url) {
            return Err(bad("unknown scheme; use sqlite:, postgres:// or mysql://"));
        } else if looks_like_a_file(url) {
            url
        } else {
            // `mydb` or `localhost/app` is more likely a mistyped URL than a
            // SQLite file to create.
            return Err(bad(&format!(
                "not a database URL; for a SQLite file write sqlite:{url} (a bare path must end in .db, .sqlite or .sqlite3, or start with / or ./), for a server postgres://… or mysql://…"
            )));
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
                profile: None,
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
            profile: None,
        })
    }
}

/// Whether `url` starts with a scheme (`word:`), as `postgres:/x` or `mysql:db` do.
fn has_scheme(url: &str) -> bool {
    url.split_once(':').is_some_and(|(scheme, _)| {
        scheme.len() > 1
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    })
}

/// Whether a bare `url` reads as a SQLite file's path.
fn looks_like_a_file(url: &str) -> bool {
    let path = url.split_once('?').map_or(url, |(p, _)| p);
    path == ":memory:"
        || ["/", "./", "../"].iter().any(|p| path.starts_with(p))
        || [".db", ".sqlite", ".sqlite3", ".db3"]
            .iter()
            .any(|e| path.ends_with(e))
}

/// The URL with any password replaced by `***`, for messages. URLs that do
/// not parse are masked from the user name's colon to the last `@`, so a
/// password holding `@` or `/` never shows either.
pub fn redact(url: &str) -> String {
    if let Ok(mut u) = url::Url::parse(url) {
        if u.password().is_some() && u.set_password(Some("***")).is_ok() {
            return u.to_string();
        }
        if u.password().is_none() && !u.cannot_be_a_base() {
            return url.to_string();
        }
    }
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let Some(at) = url.rfind('@').filter(|&at| at > start) else {
        return url.to_string();
    };
    match url[start..at].find(':') {
        Some(colon) => format!("{}:***{}", &url[..start + colon], &url[at..]),
        None => url.to_string(),
    }
}

/// `text` with every URL in it redacted (see [`redact`]): for messages that
/// quote input, such as a parser's excerpt of a config file.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        // The URL starts at its scheme: the letters just before "://".
        let start = rest[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.'))
            .map_or(0, |p| p + 1);
        let end = rest[i..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .map_or(rest.len(), |p| i + p);
        out.push_str(&rest[..start]);
        out.push_str(&redact(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The percent-decoded user name and password of a URL's user info.
pub(crate) fn credentials(u: &url::Url) -> (String, Option<String>) {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    (decode(u.username()), u.password().map(decode))
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

    /// A bare word or a server address without its scheme is a mistyped URL,
    /// not a SQLite file to create beside the project.
    #[test]
    fn mistyped_urls_are_refused_not_created_as_files() {
        for u in [
            "garbage",
            "localhost:5432/app",
            "postgres:/h/db",
            "mysql:db",
            "app",
        ] {
            assert!(DbUrl::parse(u).is_err(), "{u}");
        }
        for u in [
            "./app",
            "/tmp/app",
            "x.sqlite",
            "x.sqlite3?mode=ro",
            ":memory:",
        ] {
            assert_eq!(DbUrl::parse(u).unwrap().dialect, Dialect::Sqlite, "{u}");
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

    #[test]
    fn passwords_with_reserved_characters_never_show() {
        // Unencoded `@` in the password: the URL does not parse as intended.
        assert_eq!(
            redact("postgres://u:p@ss@host/db"),
            "postgres://u:***@host/db"
        );
        let encoded = "mysql://root:a%2Bb%40c%3Dd%26e%25f%3Ag%2Fh@127.0.0.1:3306/db";
        let r = redact(encoded);
        assert!(!r.contains("a%2Bb") && r.contains("***"), "{r}");
        let u = url::Url::parse(encoded).unwrap();
        assert_eq!(
            credentials(&u),
            ("root".into(), Some("a+b@c=d&e%f:g/h".into()))
        );
        let text = "3 | url = \"postgres://u:hunter2@h/db\"\n  | ^";
        let r = redact_text(text);
        assert!(
            !r.contains("hunter2") && r.contains("postgres://u:***@h/db"),
            "{r}"
        );
        assert_eq!(redact_text("no url here"), "no url here");
    }
}
