//! `[fleet]` of `instar.toml`: where the targets come from, and how a
//! rollout goes (canary, waves, parallelism, failures allowed).
//!
//! ```toml
//! [fleet]
//! glob = "tenants/*.db"            # SQLite files (relative to instar.toml)
//! targets = ["sqlite:extra.db"]    # URLs, or bare names on `server`
//! command = "scripts/tenants.sh"   # prints one target per line
//! query = "SELECT schema_name FROM tenants ORDER BY 1"   # one target per row
//! catalogue = "postgres://…/catalogue"  # where `query` runs (default: [database] url)
//! server = "postgres://…/app"      # bare names: schemas here (PostgreSQL), databases (MySQL)
//! canary = ["acme", "globex"]      # or a count (2) or a share ("5%")
//! waves = ["25%", "100%"]          # cumulative shares or counts of the fleet
//! parallel = 4                     # targets at once
//! max_failures = 0                 # failures a wave may have before the rollout stops
//! state = ".instar/fleet.db"       # the fleet's state (SQLite, beside the project)
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Error;

/// `[fleet]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetFile {
    /// Target URLs or names.
    #[serde(default)]
    pub targets: Vec<String>,
    /// A glob of SQLite files.
    pub glob: Option<String>,
    /// A command printing one target per line.
    pub command: Option<String>,
    /// An SQL query returning one target per row.
    pub query: Option<String>,
    /// Where `query` runs.
    pub catalogue: Option<String>,
    /// Where bare names live (schemas on PostgreSQL, databases on MySQL).
    pub server: Option<String>,
    /// The canary group.
    pub canary: Option<Amount>,
    /// The waves after the canary.
    pub waves: Option<Vec<Amount>>,
    /// Targets at once.
    pub parallel: Option<usize>,
    /// Failures a wave may have before the rollout stops.
    pub max_failures: Option<usize>,
    /// The state file.
    pub state: Option<String>,
}

/// A count, a share (`"25%"`), or names.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Amount {
    /// This many targets.
    Count(usize),
    /// `"25%"`, or one name.
    Text(String),
    /// These targets, by name.
    Names(Vec<String>),
}

/// How many targets of `total` an amount is (names are counted apart).
pub(crate) fn share(a: &Amount, total: usize) -> Result<usize, String> {
    match a {
        Amount::Count(n) => Ok((*n).min(total)),
        Amount::Text(t) => match t.trim().strip_suffix('%') {
            Some(p) => {
                let p: f64 = p
                    .trim()
                    .parse()
                    .map_err(|_| format!("{t:?} is not a share (write \"25%\")"))?;
                if !(0.0..=100.0).contains(&p) {
                    return Err(format!("{t:?} is not between 0% and 100%"));
                }
                Ok(((total as f64 * p / 100.0).ceil() as usize).min(total))
            }
            None => Err(format!(
                "{t:?} is neither a count nor a share (write 2 or \"25%\"; a list of names for a canary)"
            )),
        },
        Amount::Names(_) => Err("a list of names is only for `canary`".into()),
    }
}

/// Waves are cumulative: each share (or count) must be above the one
/// before it of the same kind — one that is not adds nothing, which is
/// never what was meant.
fn increasing(waves: &[Amount]) -> Result<(), String> {
    let (mut count, mut percent): (Option<usize>, Option<usize>) = (None, None);
    for w in waves {
        let (last, now) = match w {
            Amount::Count(n) => (&mut count, *n),
            // In 1/100,000ths of the fleet: shares compare exactly enough.
            Amount::Text(_) => (&mut percent, share(w, 100_000)?),
            Amount::Names(_) => return Err("a list of names is only for `canary`".into()),
        };
        let shown = match w {
            Amount::Text(t) => format!("{t:?}"),
            Amount::Count(n) => n.to_string(),
            Amount::Names(_) => String::new(),
        };
        if now == 0 {
            return Err(format!("{shown} is an empty wave"));
        }
        if last.is_some_and(|l| now <= l) {
            return Err(format!(
                "{shown} is not above the wave before it (waves are cumulative: [\"25%\", \"100%\"])"
            ));
        }
        *last = Some(now);
    }
    Ok(())
}

/// `[fleet]` resolved against the project's folder.
#[derive(Debug, Clone, Default)]
pub struct FleetConfig {
    /// As written.
    pub targets: Vec<String>,
    /// The glob, relative to `root`.
    pub glob: Option<String>,
    /// The command, run in `root`.
    pub command: Option<String>,
    /// The query.
    pub query: Option<String>,
    /// Where the query runs (default: the project's database).
    pub catalogue: Option<String>,
    /// Where bare names live.
    pub server: Option<String>,
    /// The canary group.
    pub canary: Option<Amount>,
    /// The waves (default: everything at once after the canary).
    pub waves: Vec<Amount>,
    /// Targets at once (default 1).
    pub parallel: usize,
    /// Failures a wave may have (default 0: the first stops the rollout).
    pub max_failures: usize,
    /// The state file.
    pub state: PathBuf,
    /// The folder of `instar.toml`.
    pub root: PathBuf,
}

impl FleetFile {
    /// Resolved against `root`; shares and counts checked.
    pub fn resolve(self, root: &Path) -> Result<FleetConfig, Error> {
        let bad = |m: String| Error::Config(format!("instar.toml [fleet]: {m}"));
        let waves = self
            .waves
            .unwrap_or_else(|| vec![Amount::Text("100%".into())]);
        for w in &waves {
            share(w, 100).map_err(|e| bad(format!("waves: {e}")))?;
        }
        increasing(&waves).map_err(|e| bad(format!("waves: {e}")))?;
        if let Some(c) = &self.canary {
            if !matches!(c, Amount::Names(_)) {
                share(c, 100).map_err(|e| bad(format!("canary: {e}")))?;
            }
        }
        if self.parallel == Some(0) {
            return Err(bad("parallel = 0: give at least 1".into()));
        }
        if self.targets.is_empty()
            && self.glob.is_none()
            && self.command.is_none()
            && self.query.is_none()
        {
            return Err(bad(
                "no source of targets: give targets, glob, command or query".into(),
            ));
        }
        Ok(FleetConfig {
            targets: self.targets,
            glob: self.glob,
            command: self.command,
            query: self.query,
            catalogue: self.catalogue,
            server: self.server,
            canary: self.canary,
            waves,
            parallel: self.parallel.unwrap_or(1),
            max_failures: self.max_failures.unwrap_or(0),
            state: root.join(self.state.as_deref().unwrap_or(".instar/fleet.db")),
            root: root.to_path_buf(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_round_up_and_stay_within_the_fleet() {
        assert_eq!(share(&Amount::Text("25%".into()), 10), Ok(3));
        assert_eq!(share(&Amount::Text("100%".into()), 10), Ok(10));
        assert_eq!(share(&Amount::Count(50), 10), Ok(10));
        assert!(share(&Amount::Text("120%".into()), 10).is_err());
        assert!(share(&Amount::Text("half".into()), 10).is_err());
    }

    #[test]
    fn waves_must_grow() {
        let t = |s: &str| Amount::Text(s.into());
        assert!(increasing(&[t("25%"), t("100%")]).is_ok());
        assert!(increasing(&[Amount::Count(2), t("50%"), Amount::Count(10)]).is_ok());
        assert!(increasing(&[t("50%"), t("25%")])
            .unwrap_err()
            .contains("not above the wave before it"));
        assert!(increasing(&[t("50%"), t("50%")]).is_err());
        assert!(increasing(&[Amount::Count(5), Amount::Count(5)]).is_err());
        assert!(increasing(&[t("0%")]).unwrap_err().contains("empty wave"));
    }
}
