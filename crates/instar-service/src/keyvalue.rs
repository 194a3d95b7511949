//! Key-value stores (`rocksdb:path` database URLs): the same plan, history,
//! lock, backups, progress and lenses as for SQL, over records under key
//! prefixes. A store runs the folder's `kind = "documents"` migrations of
//! its `store = "kv"` collections; history, lock, checkpoints and the
//! store's version live in the store itself (see [`instar_kv::keys`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use instar_core::event::EventSink;
use instar_kv::backup::KvBackup;
use instar_kv::run::{RunOptions, RunReport, Step, StepKind};
use instar_kv::walk::{self, Checkpoint, WalkOptions};
use instar_kv::{history, HistoryEntry, KvCollection, KvStore};
use instar_lens::graph::Graph;
use serde::Serialize;
use serde_json::Value;

use crate::{Error, Service};

impl From<instar_kv::Error> for Error {
    fn from(e: instar_kv::Error) -> Self {
        Error::Kv(e)
    }
}

/// The plan of a store: the folder's documents migrations as steps.
#[derive(Clone)]
pub struct KvPlan {
    /// Every step, in order, with whether it is applied.
    pub steps: Vec<(Step, bool)>,
    /// What refuses `up` (edited, unknown to the files, out of order).
    pub problems: Vec<String>,
}

/// Everything `status` shows of a store.
#[derive(Debug, Clone, Serialize)]
pub struct KvStatusView {
    /// The store.
    pub database: String,
    /// Its schema version (the last migration applied).
    pub version: Option<String>,
    /// Migrations applied, with when and how many records.
    pub applied: Vec<HistoryEntry>,
    /// Migrations `up` would run (`version name`).
    pub pending: Vec<String>,
    /// What refuses `up`.
    pub problems: Vec<String>,
    /// Walks stopped at a checkpoint (a paused or killed run).
    pub checkpoints: Vec<(String, Checkpoint)>,
    /// A run in progress or left by a killed process.
    pub interrupted: Option<String>,
}

/// What `verify` found in one collection.
#[derive(Debug, Clone, Serialize)]
pub struct KvVerified {
    /// The collection.
    pub collection: String,
    /// Its key prefix.
    pub prefix: String,
    /// Records under it now.
    pub records: u64,
    /// Records under it after the last migration that walked it, if one did.
    pub after_last_migration: Option<u64>,
    /// Records per version.
    pub by_version: std::collections::BTreeMap<String, u64>,
    /// Records re-read at the current version (and checked, with `validate`).
    pub sampled: u64,
    /// What failed (`key: why`).
    pub failures: Vec<String>,
}

/// How `up` (and `docs migrate`) run on a store.
#[derive(Debug, Clone, Default)]
pub struct KvRunOptions {
    /// Batches, error policy, time budget, cancel.
    pub walk: WalkOptions,
    /// A failed run is left as it stopped (each batch whole) instead of restored.
    pub no_restore: bool,
    /// Up to this migration version.
    pub to: Option<String>,
}

/// A key-value collection's records, at any of its versions.
pub struct KvDocuments {
    store: Arc<dyn KvStore>,
    collection: Arc<KvCollection>,
}

impl KvDocuments {
    /// The collection.
    pub fn collection(&self) -> &KvCollection {
        &self.collection
    }

    /// The record under `key` (the prefix included) at version `at`.
    pub fn get(&self, key: &str, at: Option<&str>) -> Result<Option<Value>, Error> {
        Ok(self
            .collection
            .get(self.store.as_ref(), key.as_bytes(), at)?)
    }

    /// Stores `doc` written at version `at` (default: its version field).
    pub fn put(&self, key: &str, doc: &Value, at: Option<&str>) -> Result<(), Error> {
        Ok(self
            .collection
            .put(self.store.as_ref(), key.as_bytes(), doc, at)?)
    }

    /// Up to `limit` records after `after`, at version `at`.
    pub fn list(
        &self,
        at: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Value)>, Error> {
        let rows =
            self.collection
                .list(self.store.as_ref(), at, after.map(str::as_bytes), limit)?;
        Ok(rows
            .into_iter()
            .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v))
            .collect())
    }

    /// Moves every record to version `to` (default: the current one) in
    /// checkpointed batches, outside any migration (no history entry, no
    /// store version); stopped or killed, it resumes from its checkpoint.
    pub fn migrate(
        &self,
        to: Option<&str>,
        o: &WalkOptions,
        sink: &mut dyn EventSink,
    ) -> Result<walk::WalkEnd, Error> {
        let to = to.unwrap_or(self.collection.current()).to_string();
        self.collection.check_version(&to, "the target")?;
        let mv = instar_kv::steps::LensMove {
            collection: self.collection.clone(),
            to: to.clone(),
            step: format!("documents:{}", self.collection.name),
        };
        let held = history::Held::take(self.store.as_ref())?;
        let r = walk::walk(
            self.store.as_ref(),
            &mv,
            o,
            &format!("{} → {to}", self.collection.name),
            sink,
        );
        let done = match &r {
            Ok(walk::WalkEnd::Done(_)) => {
                let mut b = instar_kv::Batch::instar();
                b.delete(instar_kv::keys::checkpoint(&walk::Rewrite::step(&mv)));
                self.store.commit(b).map(|_| ()).map_err(Error::from)
            }
            _ => Ok(()),
        };
        let unlocked = held.release();
        let end = r?;
        done?;
        unlocked?;
        Ok(end)
    }

    /// How many records a move to `to` would rewrite, per version; writes nothing.
    pub fn dry_run(
        &self,
        to: Option<&str>,
    ) -> Result<std::collections::BTreeMap<String, u64>, Error> {
        let to = to.unwrap_or(self.collection.current()).to_string();
        self.collection.check_version(&to, "the target")?;
        Ok(by_version(self.store.as_ref(), &self.collection)?.0)
    }
}

impl From<instar_kv::StoreError> for Error {
    fn from(e: instar_kv::StoreError) -> Self {
        Error::Kv(e.into())
    }
}

/// Records per version under the collection's prefix, and the first
/// records that cannot be decoded.
fn by_version(
    store: &dyn KvStore,
    c: &KvCollection,
) -> Result<(std::collections::BTreeMap<String, u64>, Vec<String>), Error> {
    let mut counts = std::collections::BTreeMap::new();
    let mut bad = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = instar_kv::collection::scan_records(store, &c.prefix, after.as_deref(), 10_000)?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (k, v) in page {
            match c.decode(&k, v) {
                Ok(r) => *counts.entry(r.version).or_insert(0) += 1,
                Err(e) if bad.len() < 20 => bad.push(e.to_string()),
                Err(_) => {}
            }
        }
    }
    Ok((counts, bad))
}

impl Service {
    /// Whether the database is a key-value store (`rocksdb:` URL).
    pub fn is_kv(&self) -> bool {
        self.settings().db.url.starts_with("rocksdb:")
    }

    /// Opens the store of a `rocksdb:path[?format_version=N]` URL. Only one
    /// process can have it open: another one gets an error saying so.
    pub fn kv_store(&self) -> Result<Arc<dyn KvStore>, Error> {
        let url = &self.settings().db.url;
        let rest = url.strip_prefix("rocksdb:").ok_or_else(|| {
            Error::Config(format!("{url} is not a key-value store URL (rocksdb:path)"))
        })?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() {
            return Err(Error::Config(
                "rocksdb: URL without a path (rocksdb:path/to/db)".into(),
            ));
        }
        open_rocksdb(PathBuf::from(path), query)
    }

    /// Collection `name`, which must be a `store = "kv"` one.
    pub fn kv_collection(&self, name: &str) -> Result<KvCollection, Error> {
        let c = self.settings().collections.get(name).ok_or_else(|| {
            Error::Config(format!("no collection {name:?} in instar.toml; declare it under [collections.{name}] with store = \"kv\""))
        })?;
        let spec = c.kv.clone().ok_or_else(|| {
            Error::Config(format!("collection {name} is a table (store = \"sql\"); a rocksdb: store holds store = \"kv\" collections"))
        })?;
        let graph = Graph::load_dir_with(&c.lenses, c.versions.clone(), Some(&self.lens_loader()))
            .map_err(|e| Error::Config(format!("collection {name}: {e}")))?;
        let validate = crate::documents::validator(name, c, &graph)?;
        Ok(KvCollection {
            name: name.to_string(),
            prefix: spec.prefix.into_bytes(),
            encoding: spec.encoding,
            version_field: spec.version_field,
            default_version: c.default_version.clone(),
            graph: Arc::new(graph),
            validate: validate.map(|v| v as instar_kv::collection::Validator),
        })
    }

    /// The records of key-value collection `name` in `store`.
    pub fn kv_documents(&self, store: Arc<dyn KvStore>, name: &str) -> Result<KvDocuments, Error> {
        Ok(KvDocuments {
            store,
            collection: Arc::new(self.kv_collection(name)?),
        })
    }

    /// The folder's documents migrations as the store's plan, checked
    /// against its history.
    pub fn kv_plan(&self, store: &dyn KvStore) -> Result<KvPlan, Error> {
        let source = self.load()?;
        let history = history::entries(store)?;
        let applied: Vec<&HistoryEntry> = history.iter().filter(|e| e.kind == "lens").collect();
        let mut steps = Vec::new();
        let mut problems = Vec::new();
        let mut from = String::new();
        let mut opened: std::collections::BTreeMap<String, Arc<KvCollection>> = Default::default();
        for m in &source.migrations {
            let where_ = format!("migration {} ({})", m.version, m.up.path.display());
            let Some(d) = &m.meta.documents else {
                return Err(Error::Config(format!(
                    "{where_} is not a documents migration: a key-value store (rocksdb:) runs only kind = \"documents\" migrations of store = \"kv\" collections"
                )));
            };
            let coll = match opened.get(&d.collection) {
                Some(c) => c.clone(),
                None => {
                    let c = Arc::new(
                        self.kv_collection(&d.collection)
                            .map_err(|e| Error::Config(format!("{where_}: {e}")))?,
                    );
                    opened.insert(d.collection.clone(), c.clone());
                    c
                }
            };
            coll.check_version(&d.to, "the migration's target")
                .map_err(|e| Error::Config(format!("{where_}: {e}")))?;
            let fp = format!("{}+lenses:{}", m.checksum, {
                use sha2::Digest;
                format!(
                    "sha256:{:x}",
                    sha2::Sha256::digest(coll.graph.fingerprint(&d.to))
                )
            });
            let version = m.version.to_string();
            let done = applied.iter().find(|e| e.to == version);
            if let Some(e) = done {
                if e.fingerprint.as_deref().is_some_and(|f| f != fp) {
                    problems.push(format!("{where_} (or its collection's lenses) changed after it was applied on {}; revert the edit, or write a new migration", e.started_at));
                }
            }
            steps.push((
                Step {
                    name: format!("{} {}", m.version, m.name),
                    from: std::mem::replace(&mut from, version.clone()),
                    version,
                    kind: StepKind::Lens {
                        collection: coll,
                        to: d.to.clone(),
                    },
                    fingerprint: Some(fp),
                    walk: Some((d.batch_size.max(1) as usize, d.on_error)),
                },
                done.is_some(),
            ));
        }
        let current = history::version(store)?.map(|v| v.version);
        if let Some(v) = &current {
            match steps.iter().position(|(s, _)| s.version == *v) {
                None => problems.push(format!(
                    "the store is at version {v}, which no migration in the folder has: a newer release migrated it (upgrade), or the folder is not this store's"
                )),
                Some(i) => {
                    for (s, done) in &steps[..i] {
                        if !done {
                            problems.push(format!("migration {} is older than the store's version {v} but was never applied; give it a newer version", s.name));
                        }
                    }
                }
            }
        }
        Ok(KvPlan { steps, problems })
    }

    /// Everything `status` shows of the store. Reads only.
    pub fn kv_status(&self) -> Result<KvStatusView, Error> {
        let store = self.kv_store()?;
        let plan = self.kv_plan(store.as_ref())?;
        Ok(KvStatusView {
            database: store.describe(),
            version: history::version(store.as_ref())?.map(|v| v.version),
            applied: history::entries(store.as_ref())?,
            pending: plan
                .steps
                .iter()
                .filter(|(_, d)| !d)
                .map(|(s, _)| s.name.clone())
                .collect(),
            problems: plan.problems,
            checkpoints: walk::checkpoints(store.as_ref())?,
            interrupted: history::marker(store.as_ref())?
                .map(|m| format!("{}@{} since {}", m.pid, m.host, m.started)),
        })
    }

    /// The steps `up` would run (up to `to`), refused when the plan has problems.
    pub fn kv_pending(&self, store: &dyn KvStore, to: Option<&str>) -> Result<Vec<Step>, Error> {
        let plan = self.kv_plan(store)?;
        if !plan.problems.is_empty() {
            return Err(Error::Config(format!(
                "refused: {}",
                plan.problems.join("; ")
            )));
        }
        let mut out = Vec::new();
        for (s, done) in plan.steps {
            if !done {
                out.push(s.clone());
            }
            if to.is_some_and(|t| t == s.version) {
                break;
            }
        }
        Ok(out)
    }

    /// Runs the pending migrations on the store: a backup first (unless
    /// backups are off), then each collection moved in checkpointed batches;
    /// a failure restores the backup unless `no_restore`.
    pub fn kv_up(&self, o: &KvRunOptions, sink: &mut dyn EventSink) -> Result<RunReport, Error> {
        let store = self.kv_store()?;
        let steps = self.kv_pending(store.as_ref(), o.to.as_deref())?;
        let opts = RunOptions {
            walk: o.walk.clone(),
            backup_dir: (self.settings().backup && !steps.is_empty())
                .then(|| self.settings().backup_dir.clone()),
            no_restore: o.no_restore,
        };
        Ok(instar_kv::run::run(store.as_ref(), &steps, &opts, sink)?)
    }

    /// The store's history. Reads only.
    pub fn kv_history(&self) -> Result<Vec<HistoryEntry>, Error> {
        Ok(history::entries(self.kv_store()?.as_ref())?)
    }

    /// Per key-value collection: records per version, and every record
    /// (up to `sample`) re-read at the current version through the lenses.
    pub fn kv_verify(&self, sample: usize) -> Result<Vec<KvVerified>, Error> {
        let store = self.kv_store()?;
        let entries = history::entries(store.as_ref())?;
        let mut out = Vec::new();
        for (name, c) in &self.settings().collections {
            if c.kv.is_none() {
                continue;
            }
            let coll = self.kv_collection(name)?;
            let (by_version, mut failures) = by_version(store.as_ref(), &coll)?;
            let mut sampled = 0;
            let mut after: Option<Vec<u8>> = None;
            while sampled < sample as u64 {
                let page = instar_kv::collection::scan_records(
                    store.as_ref(),
                    &coll.prefix,
                    after.as_deref(),
                    1000.min(sample),
                )?;
                let Some((last, _)) = page.last() else { break };
                after = Some(last.clone());
                for (k, _) in page {
                    sampled += 1;
                    if let Err(e) = coll.get(store.as_ref(), &k, None) {
                        if !failures.iter().any(|f| *f == e.to_string()) {
                            failures.push(e.to_string());
                        }
                    }
                }
            }
            let prefix = instar_kv::keys::show(&coll.prefix);
            let after_last_migration = entries
                .iter()
                .rev()
                .find_map(|e| e.counts.iter().find(|c| c.0 == prefix).map(|c| c.2));
            out.push(KvVerified {
                collection: name.clone(),
                after_last_migration,
                prefix,
                records: by_version.values().sum(),
                by_version,
                sampled,
                failures,
            });
        }
        Ok(out)
    }

    /// Takes a backup of the store now.
    pub fn kv_backup(&self) -> Result<KvBackup, Error> {
        let store = self.kv_store()?;
        Ok(instar_kv::backup::take(
            store.as_ref(),
            &self.settings().backup_dir,
            "checkpoint",
            "instar backup",
        )?)
    }

    /// The store backups in the backup folder.
    pub fn kv_backups(&self) -> Result<Vec<KvBackup>, Error> {
        Ok(instar_kv::backup::list(&self.settings().backup_dir)?)
    }

    /// Deletes store backups older than `age`.
    pub fn kv_prune(&self, age: Duration) -> Result<Vec<KvBackup>, Error> {
        Ok(instar_kv::backup::prune(&self.settings().backup_dir, age)?)
    }

    /// Puts backup `id` in place (checked whole first); the store as it was
    /// is kept as a backup of its own, returned second (restoring that one
    /// undoes the restore).
    pub fn kv_restore(&self, id: &str) -> Result<(KvBackup, KvBackup), Error> {
        let dir = &self.settings().backup_dir;
        // Check it before anything is touched.
        instar_kv::backup::find(dir, id)?;
        let store = self.kv_store()?;
        let aside = instar_kv::backup::take(
            store.as_ref(),
            dir,
            "checkpoint",
            &format!("before restoring {id}"),
        )?;
        let restored = instar_kv::backup::restore(store.as_ref(), dir, id)?;
        Ok((restored, aside))
    }
}

#[cfg(feature = "rocksdb")]
fn open_rocksdb(path: PathBuf, query: &str) -> Result<Arc<dyn KvStore>, Error> {
    let mut o = instar_rocksdb::RocksOptions::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("format_version", v)) => {
                o.format_version = v.parse().map_err(|_| {
                    Error::Config(format!(
                        "rocksdb: format_version={v} is not a number (2 to 7)"
                    ))
                })?;
            }
            _ => {
                return Err(Error::Config(format!(
                    "rocksdb: unknown URL parameter {pair:?} (format_version=N)"
                )))
            }
        }
    }
    Ok(Arc::new(instar_rocksdb::RocksStore::open(path, o)?))
}

#[cfg(not(feature = "rocksdb"))]
fn open_rocksdb(path: PathBuf, _: &str) -> Result<Arc<dyn KvStore>, Error> {
    Err(Error::Config(format!(
        "rocksdb:{}: this build of Instar has no RocksDB support; install it with `cargo install --path crates/instar-cli --features rocksdb` (needs libclang-dev)",
        path.display()
    )))
}
