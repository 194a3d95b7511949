//! [`Migrator`]: what an application calls at start-up to bring its store to
//! the version it supports, with Rust record migrations from a [`Registry`].

use std::cmp::Ordering;
use std::path::PathBuf;
use std::sync::Arc;

use instar_core::event::{EventSink, NullSink};

use crate::run::{self, RunOptions, RunReport, Step, StepKind};
use crate::{codec, history, Error, KvStore, Registry};

/// What [`Migrator::status`] sees, reading only the store's own records (its
/// cost does not grow with the number of records).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KvStatus {
    /// The store's version (`None`: never migrated; its records are at the
    /// registry's first version).
    pub version: Option<String>,
    /// The newest version this application's migrations reach.
    pub latest: Option<String>,
    /// The steps `migrate` would run, as `from→to`.
    pub pending: Vec<String>,
    /// A run in progress, or one a killed process left (`pid@host since`).
    pub interrupted: Option<String>,
}

/// Migrates a store's records with Rust [`crate::RecordMigration`]s.
///
/// ```no_run
/// # use instar_kv::{Migrator, Registry, FnMigration, MemStore};
/// # use std::sync::Arc;
/// let registry = Registry::new().register(FnMigration::new("1", "2", "add done flag", b"task:", |_, mut t| {
///     t["done"] = serde_json::json!(false);
///     Ok(t)
/// }));
/// let store = Arc::new(MemStore::new());
/// Migrator::new(store, registry).migrate()?; // refuses a store newer than "2"
/// # Ok::<(), instar_kv::Error>(())
/// ```
pub struct Migrator {
    store: Arc<dyn KvStore>,
    registry: Registry,
    options: RunOptions,
}

impl Migrator {
    /// A migrator of `store` with `registry`'s migrations (no backups).
    pub fn new(store: Arc<dyn KvStore>, registry: Registry) -> Migrator {
        Migrator {
            store,
            registry,
            options: RunOptions::default(),
        }
    }

    /// Takes a backup (a checkpoint) under `dir` before a run that rewrites
    /// records, restored automatically when the run fails.
    pub fn backups(mut self, dir: impl Into<PathBuf>) -> Migrator {
        self.options.backup_dir = Some(dir.into());
        self
    }

    /// Sets the run options (batch size, error policy, time budget, restore),
    /// replacing all of them, the backup folder too: call [`Migrator::backups`] after.
    pub fn options(mut self, options: RunOptions) -> Migrator {
        self.options = options;
        self
    }

    /// The store's version and what `migrate` would do. Refuses nothing.
    pub fn status(&self) -> Result<KvStatus, Error> {
        let version = history::version(self.store.as_ref())?.map(|v| v.version);
        let latest = self.registry.latest()?;
        let pending = match self.newer(version.as_deref(), latest.as_deref()) {
            Some(_) => Vec::new(),
            None => self
                .plan(version.as_deref())?
                .iter()
                .map(|s| format!("{}→{}", s.from, s.version))
                .collect(),
        };
        let interrupted = history::marker(self.store.as_ref())?
            .map(|m| format!("{}@{} since {}", m.pid, m.host, m.started));
        Ok(KvStatus {
            version,
            latest,
            pending,
            interrupted,
        })
    }

    /// The store is newer than this application: the message to refuse with.
    fn newer(&self, version: Option<&str>, latest: Option<&str>) -> Option<String> {
        let v = version?;
        let Some(l) = latest else {
            return Some(format!(
                "{} is at schema version {v}, and this application has no record migrations: a newer release migrated it; upgrade the application (nothing was changed)",
                self.store.describe()
            ));
        };
        (codec::compare(v, l) == Some(Ordering::Greater) || codec::compare(v, l).is_none() && v != l).then(|| {
            format!(
                "{} is at schema version {v}, newer than this application supports (up to {l}): a newer release migrated it; upgrade the application (nothing was changed)",
                self.store.describe()
            )
        })
    }

    fn plan(&self, version: Option<&str>) -> Result<Vec<Step>, Error> {
        let first = self.registry.first()?;
        let Some(from) = version.map(str::to_string).or(first.clone()) else {
            return Ok(Vec::new());
        };
        let latest = self.registry.latest()?.unwrap_or_default();
        Ok(self
            .registry
            .path_from(&from)?
            .into_iter()
            .map(|s| Step {
                name: s
                    .migrations
                    .iter()
                    .map(|m| m.name())
                    .collect::<Vec<_>>()
                    .join(", "),
                fingerprint: None,
                walk: None,
                kind: StepKind::Records {
                    migrations: s.migrations.clone(),
                    default_version: first.clone().unwrap_or_default(),
                    latest: latest.clone(),
                },
                version: s.to,
                from: s.from,
            })
            .collect())
    }

    /// Refuses a store this application cannot run on (newer than it
    /// supports, or a registry with a gap), without migrating.
    pub fn check(&self) -> Result<KvStatus, Error> {
        let st = self.status()?;
        if let Some(msg) = self.newer(st.version.as_deref(), st.latest.as_deref()) {
            return Err(Error::Newer(msg));
        }
        Ok(st)
    }

    /// Brings the store to the newest version, reporting progress to nobody.
    pub fn migrate(&self) -> Result<RunReport, Error> {
        self.migrate_with(&mut NullSink)
    }

    /// Brings the store to the newest version, with progress events on
    /// `sink`. A store already there costs a few reads; a newer store is
    /// refused (upgrade the application); a failed run is undone from the
    /// backup (when backups are on) and says so.
    pub fn migrate_with(&self, sink: &mut dyn EventSink) -> Result<RunReport, Error> {
        let st = self.check()?;
        if st.pending.is_empty() && st.interrupted.is_none() {
            return Ok(RunReport {
                version: st.version,
                ..RunReport::default()
            });
        }
        let steps = self.plan(st.version.as_deref())?;
        run::run(self.store.as_ref(), &steps, &self.options, sink)
    }
}
