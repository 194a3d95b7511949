//! Servers that speak PostgreSQL's or MySQL's wire protocol without being
//! PostgreSQL or MySQL: CockroachDB, YugabyteDB, TiDB, Vitess (PlanetScale).
//! None runs on this machine, so each profile is what its vendor's
//! documentation states: which run lock holds there, whether DDL inside a
//! transaction is atomic, which error codes mean "run the transaction
//! again". A profile is detected from the server's version string, or named
//! in the URL (`?instar_profile=cockroachdb`), and a named one that does not
//! match the server is refused before anything runs.

use instar_core::Dialect;
use serde::Serialize;

use crate::lease::LockStrategy;

/// A server family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// PostgreSQL itself.
    Postgres,
    /// CockroachDB (PostgreSQL wire).
    Cockroach,
    /// YugabyteDB's YSQL (PostgreSQL wire).
    Yugabyte,
    /// MySQL or MariaDB itself.
    MySql,
    /// TiDB (MySQL wire).
    Tidb,
    /// Vitess, and PlanetScale built on it (MySQL wire).
    Vitess,
    /// SQLite.
    Sqlite,
}

/// What a profile changes, and where that is written down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Traits {
    /// Its name in URLs and messages.
    pub name: &'static str,
    /// The wire protocol it speaks.
    #[serde(skip)]
    pub wire: Dialect,
    /// The lock `auto` takes there.
    pub lock: LockStrategy,
    /// Whether several DDL statements in one transaction commit or roll back together.
    pub transactional_ddl: bool,
    /// Error codes after which a transaction of Instar's runs again.
    pub retry_codes: &'static [&'static str],
    /// Tested against a real server here (true), or resting on the vendor's documentation.
    pub tested_here: bool,
    /// What the documentation says, in short.
    pub basis: &'static str,
}

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 7] = [
        Profile::Postgres,
        Profile::Cockroach,
        Profile::Yugabyte,
        Profile::MySql,
        Profile::Tidb,
        Profile::Vitess,
        Profile::Sqlite,
    ];

    /// What it changes.
    pub fn traits(self) -> Traits {
        match self {
            Profile::Postgres => Traits {
                name: "postgres",
                wire: Dialect::Postgres,
                lock: LockStrategy::Advisory,
                transactional_ddl: true,
                retry_codes: &["40001", "40P01"],
                tested_here: true,
                basis: "session advisory locks; DDL is transactional",
            },
            Profile::Cockroach => Traits {
                name: "cockroachdb",
                wire: Dialect::Postgres,
                lock: LockStrategy::Lease,
                transactional_ddl: false,
                retry_codes: &["40001"],
                tested_here: false,
                basis: "pg_advisory_lock is accepted and does nothing (or is missing, by version); schema changes run as background jobs, and several in one explicit transaction can fail after part of it committed; every transaction may end in 40001 (restart transaction)",
            },
            Profile::Yugabyte => Traits {
                name: "yugabytedb",
                wire: Dialect::Postgres,
                lock: LockStrategy::Lease,
                transactional_ddl: false,
                retry_codes: &["40001", "40P01"],
                tested_here: false,
                basis: "advisory locks only behind a flag in recent releases; DDL is not transactional (each statement commits by itself) unless transactional DDL is switched on; conflicts end in 40001",
            },
            Profile::MySql => Traits {
                name: "mysql",
                wire: Dialect::MySql,
                lock: LockStrategy::Advisory,
                transactional_ddl: false,
                retry_codes: &["1213", "1205"],
                tested_here: true,
                basis: "GET_LOCK per server (a Galera node: per node, so auto takes a lease there); DDL commits by itself",
            },
            Profile::Tidb => Traits {
                name: "tidb",
                wire: Dialect::MySql,
                lock: LockStrategy::Lease,
                transactional_ddl: false,
                retry_codes: &["9007", "8002", "8022", "1213"],
                tested_here: false,
                basis: "GET_LOCK is supported only with limits that vary by version; DDL commits by itself and runs as an online job; optimistic transactions end in write conflicts (9007, 8002, 8022)",
            },
            Profile::Vitess => Traits {
                name: "vitess",
                wire: Dialect::MySql,
                lock: LockStrategy::Lease,
                transactional_ddl: false,
                retry_codes: &["1213", "1205"],
                tested_here: false,
                basis: "GET_LOCK holds on one reserved connection to one shard only; DDL commits by itself, and PlanetScale refuses direct DDL on a production branch with safe migrations on (use a deploy request)",
            },
            Profile::Sqlite => Traits {
                name: "sqlite",
                wire: Dialect::Sqlite,
                lock: LockStrategy::Advisory,
                transactional_ddl: true,
                retry_codes: &["5", "517"],
                tested_here: true,
                basis: "a lock file beside the database; DDL is transactional",
            },
        }
    }

    /// The profile named `name` (`cockroachdb`, `yugabytedb`, `tidb`, `vitess`,
    /// `planetscale`, `postgres`, `mysql`, `mariadb`).
    pub fn named(name: &str) -> Result<Profile, String> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Profile::Postgres,
            "cockroachdb" | "cockroach" | "crdb" => Profile::Cockroach,
            "yugabytedb" | "yugabyte" | "ysql" => Profile::Yugabyte,
            "mysql" | "mariadb" => Profile::MySql,
            "tidb" => Profile::Tidb,
            "vitess" | "planetscale" => Profile::Vitess,
            "sqlite" => Profile::Sqlite,
            other => {
                return Err(format!(
                    "instar_profile={other}: not a profile (postgres, cockroachdb, yugabytedb, mysql, tidb, vitess)"
                ))
            }
        })
    }

    /// The profile of a server that speaks `wire` and answers `version` to
    /// `SELECT version()`.
    pub fn detect(wire: Dialect, version: &str) -> Profile {
        let v = version.to_ascii_lowercase();
        match wire {
            Dialect::Postgres if v.contains("cockroachdb") => Profile::Cockroach,
            Dialect::Postgres if v.contains("-yb-") || v.contains("yugabyte") => Profile::Yugabyte,
            Dialect::Postgres => Profile::Postgres,
            Dialect::MySql if v.contains("tidb") => Profile::Tidb,
            Dialect::MySql if v.contains("vitess") || v.contains("planetscale") => Profile::Vitess,
            Dialect::MySql => Profile::MySql,
            Dialect::Sqlite => Profile::Sqlite,
        }
    }

    /// The profile for a server: the one the URL names (refused when the
    /// server is another), else the one detected.
    pub fn choose(named: Option<Profile>, wire: Dialect, version: &str) -> Result<Profile, String> {
        let found = Profile::detect(wire, version);
        match named {
            None => Ok(found),
            Some(p) if p.traits().wire != wire => Err(format!(
                "instar_profile={} speaks the {} protocol, but this URL is a {} one",
                p.traits().name,
                dialect_name(p.traits().wire),
                dialect_name(wire)
            )),
            Some(p) if p == found => Ok(p),
            Some(p) => Err(format!(
                "instar_profile={} was named, but the server is {} (it says `{}`); remove the parameter, or point the URL at a {} server",
                p.traits().name,
                found.traits().name,
                version.chars().take(80).collect::<String>(),
                p.traits().name
            )),
        }
    }
}

impl crate::Db {
    /// The server's profile: the one the URL names (refused when the server
    /// is another family), else the one its version string tells.
    pub(crate) async fn read_profile(&mut self) -> Result<Profile, crate::Error> {
        let d = self.dialect();
        if d == instar_core::Dialect::Sqlite {
            return Ok(Profile::Sqlite);
        }
        let version: String = crate::conn::query("SELECT version()")
            .scalar::<Option<String>>(&mut self.conn)
            .await
            .map_err(|e| crate::Error::query("reading the server's version", e))?
            .unwrap_or_default();
        Profile::choose(self.url.profile, d, &version).map_err(crate::Error::Unsupported)
    }

    /// The server's profile.
    pub fn profile(&self) -> Profile {
        self.profile
    }
}

fn dialect_name(d: Dialect) -> &'static str {
    match d {
        Dialect::Postgres => "PostgreSQL",
        Dialect::MySql => "MySQL",
        Dialect::Sqlite => "SQLite",
    }
}

/// `url` without its `instar_profile` parameter, and the profile it names.
pub(crate) fn split_url(url: &str) -> Result<(String, Option<Profile>), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None));
    };
    let mut named = None;
    let mut kept = Vec::new();
    for p in query.split('&').filter(|p| !p.is_empty()) {
        match p.strip_prefix("instar_profile=") {
            Some(v) => named = Some(Profile::named(v)?),
            None => kept.push(p),
        }
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, named))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_strings_name_their_server() {
        let cases = [
            (Dialect::Postgres, "PostgreSQL 16.4 (Debian 16.4-1.pgdg120+2) on x86_64-pc-linux-gnu", Profile::Postgres),
            (Dialect::Postgres, "CockroachDB CCL v23.2.4 (x86_64-pc-linux-gnu, built 2024/04/02 19:10:57, go1.21.9 X:nocoverageredesign)", Profile::Cockroach),
            (Dialect::Postgres, "PostgreSQL 11.2-YB-2.20.1.0-b0 on x86_64-pc-linux-gnu, compiled by clang version 16.0.6", Profile::Yugabyte),
            (Dialect::MySql, "10.11.19-MariaDB-0+deb12u1", Profile::MySql),
            (Dialect::MySql, "8.0.36", Profile::MySql),
            (Dialect::MySql, "8.0.11-TiDB-v7.5.1", Profile::Tidb),
            (Dialect::MySql, "8.0.30-Vitess", Profile::Vitess),
            (Dialect::MySql, "8.0.34-PlanetScale", Profile::Vitess),
        ];
        for (wire, version, want) in cases {
            assert_eq!(Profile::detect(wire, version), want, "{version}");
        }
    }

    #[test]
    fn a_named_profile_must_match_the_server() {
        let crdb = "CockroachDB CCL v23.2.4 (x86_64-pc-linux-gnu)";
        assert_eq!(
            Profile::choose(Some(Profile::Cockroach), Dialect::Postgres, crdb),
            Ok(Profile::Cockroach)
        );
        let e = Profile::choose(
            Some(Profile::Cockroach),
            Dialect::Postgres,
            "PostgreSQL 16.4",
        )
        .unwrap_err();
        assert!(e.contains("the server is postgres"), "{e}");
        let e = Profile::choose(Some(Profile::Tidb), Dialect::Postgres, crdb).unwrap_err();
        assert!(e.contains("speaks the MySQL protocol"), "{e}");
        assert_eq!(
            Profile::choose(None, Dialect::MySql, "8.0.11-TiDB-v7.5.1"),
            Ok(Profile::Tidb)
        );
    }

    #[test]
    fn the_profile_parameter_leaves_the_url() {
        assert_eq!(
            split_url("postgres://u@h:26257/db?sslmode=disable&instar_profile=cockroachdb")
                .unwrap(),
            (
                "postgres://u@h:26257/db?sslmode=disable".to_string(),
                Some(Profile::Cockroach)
            )
        );
        assert_eq!(
            split_url("mysql://u@h/db?instar_profile=planetscale").unwrap(),
            ("mysql://u@h/db".to_string(), Some(Profile::Vitess))
        );
        assert_eq!(
            split_url("mysql://u@h/db").unwrap(),
            ("mysql://u@h/db".to_string(), None)
        );
        assert!(split_url("mysql://u@h/db?instar_profile=oracle")
            .unwrap_err()
            .contains("not a profile"));
    }

    #[test]
    fn profiles_off_this_machine_take_a_lease_and_say_so() {
        for p in Profile::ALL {
            let t = p.traits();
            assert_eq!(Profile::named(t.name), Ok(p));
            if !t.tested_here {
                assert_eq!(t.lock, LockStrategy::Lease, "{}", t.name);
                assert!(!t.transactional_ddl, "{}", t.name);
            }
            assert!(!t.retry_codes.is_empty() && !t.basis.is_empty());
        }
    }
}
