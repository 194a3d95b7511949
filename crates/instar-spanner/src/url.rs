//! `spanner://HOST[:PORT]/projects/P/instances/I/databases/D` database URLs.
//!
//! A loopback host (the emulator's REST gateway, default port 9020) is spoken
//! to in plain HTTP; any other host over TLS (default port 443), with the
//! OAuth access token of `INSTAR_SPANNER_TOKEN` (`gcloud auth
//! print-access-token`). `spanner:projects/P/instances/I/databases/D` is
//! Google's endpoint. `?plaintext=true` forces plain HTTP (a gateway on
//! another host of a private network).

use crate::Error;

/// A parsed Spanner URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpannerUrl {
    /// `http://host:port/v1` or `https://host:port/v1`.
    pub base: String,
    /// `host:port`, for messages.
    pub endpoint: String,
    /// `projects/P/instances/I/databases/D`.
    pub database: String,
    /// Whether requests carry `INSTAR_SPANNER_TOKEN` (TLS endpoints only).
    pub tls: bool,
}

impl SpannerUrl {
    /// Parses a `spanner:` URL.
    pub fn parse(url: &str) -> Result<SpannerUrl, Error> {
        let rest = url
            .strip_prefix("spanner:")
            .ok_or_else(|| Error::Url(format!("{url} is not a spanner: URL")))?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (host, path) = match rest.strip_prefix("//") {
            Some(r) => r.split_once('/').unwrap_or((r, "")),
            None => ("spanner.googleapis.com", rest),
        };
        let mut plaintext = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("plaintext", v)) => {
                    plaintext = Some(matches!(v, "true" | "1" | "yes"));
                }
                _ => {
                    return Err(Error::Url(format!(
                        "unknown parameter `{pair}` in the Spanner URL (known: plaintext=true)"
                    )))
                }
            }
        }
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let valid = parts.len() == 6
            && parts[0] == "projects"
            && parts[2] == "instances"
            && parts[4] == "databases"
            && [parts[1], parts[3], parts[5]].iter().all(|p| !p.is_empty());
        if !valid || host.is_empty() {
            return Err(Error::Url(format!(
                "a Spanner URL is spanner://HOST[:PORT]/projects/P/instances/I/databases/D (the emulator: spanner://127.0.0.1:9020/projects/p/instances/i/databases/d); got {url}"
            )));
        }
        let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
        let loopback = matches!(name, "localhost" | "127.0.0.1" | "[::1]");
        let tls = !plaintext.unwrap_or(loopback);
        let endpoint = if host.contains(':') && !host.ends_with(']') {
            host.to_string()
        } else {
            format!("{host}:{}", if tls { 443 } else { 9020 })
        };
        Ok(SpannerUrl {
            base: format!("{}://{endpoint}/v1", if tls { "https" } else { "http" }),
            endpoint,
            database: parts.join("/"),
            tls,
        })
    }

    /// `projects/P/instances/I`.
    pub fn instance(&self) -> &str {
        self.database
            .rsplit_once("/databases/")
            .map_or(&self.database, |(i, _)| i)
    }

    /// The database's id (`D`).
    pub fn database_id(&self) -> &str {
        self.database.rsplit('/').next().unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulator_urls_are_plain_http_on_their_port() {
        let u = SpannerUrl::parse("spanner://127.0.0.1:19020/projects/p/instances/i1/databases/d1")
            .unwrap();
        assert_eq!(u.base, "http://127.0.0.1:19020/v1");
        assert_eq!(u.database, "projects/p/instances/i1/databases/d1");
        assert_eq!(u.instance(), "projects/p/instances/i1");
        assert_eq!(u.database_id(), "d1");
        assert!(!u.tls);
        let u =
            SpannerUrl::parse("spanner://localhost/projects/p/instances/i/databases/d").unwrap();
        assert_eq!(u.endpoint, "localhost:9020");
    }

    #[test]
    fn other_hosts_use_tls_unless_told() {
        let u = SpannerUrl::parse("spanner:projects/p/instances/i/databases/d").unwrap();
        assert_eq!(u.base, "https://spanner.googleapis.com:443/v1");
        assert!(u.tls);
        let u = SpannerUrl::parse(
            "spanner://gw.internal:9020/projects/p/instances/i/databases/d?plaintext=true",
        )
        .unwrap();
        assert_eq!(u.base, "http://gw.internal:9020/v1");
    }

    #[test]
    fn malformed_urls_say_the_shape() {
        for bad in [
            "spanner://127.0.0.1:9020/projects/p/instances/i",
            "spanner://127.0.0.1:9020/projects/p/databases/d/instances/i",
            "spanner:///projects/p/instances/i/databases/d",
            "spanner://h/projects/p/instances/i/databases/d?ssl=1",
        ] {
            let e = SpannerUrl::parse(bad).unwrap_err().to_string();
            assert!(
                e.contains("spanner://") || e.contains("unknown parameter"),
                "{bad}: {e}"
            );
        }
    }
}
