//! [`Documents`]: one collection's documents, read and written at any of its
//! versions through its lenses (lazily: each read translates, nothing is
//! rewritten unless `write_back` says so).

mod audit;

use std::collections::BTreeMap;
use std::sync::Arc;

use std::time::Duration;

use instar_core::event::{Event, EventSink};
use instar_core::meta::{DocumentsConfig, OnError};
use instar_core::Source;
use instar_db::data::{DocCollection, Validator};
use instar_db::data::{Estimate, MoveEnd};
use instar_db::docs::{DocTable, Docs, Expect, Stored};
use instar_db::runner::RunOptions;
use instar_db::CancelToken;
use instar_db::Db;
use instar_lens::graph::{Complements, Graph};
use instar_lens::schema::Schema;
use serde_json::Value;

use crate::settings::Collection;
use crate::{Error, RunRequest, Service};

/// How [`Documents::migrate`] moves a collection.
#[derive(Debug, Clone)]
pub struct MoveOptions {
    /// The target version (default: the current one).
    pub to: Option<String>,
    /// Documents per batch (one transaction each).
    pub batch_size: u64,
    /// Slices of the key range walked at once (PostgreSQL, MySQL).
    pub parallel: usize,
    /// Stop at a checkpoint after this long.
    pub max_duration: Option<Duration>,
    /// A document that cannot be translated stops the move, or is skipped and recorded.
    pub on_error: OnError,
    /// Push lens paths down to SQL where the engine can (default true).
    pub pushdown: bool,
    /// Stops the move at its next batch boundary.
    pub cancel: CancelToken,
}

impl Default for MoveOptions {
    fn default() -> Self {
        MoveOptions {
            to: None,
            batch_size: 1000,
            parallel: 1,
            max_duration: None,
            on_error: OnError::Stop,
            pushdown: true,
            cancel: CancelToken::new(),
        }
    }
}

/// What [`Documents::migrate`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MoveReport {
    /// The collection.
    pub collection: String,
    /// The version every document was moved to.
    pub to: String,
    /// Done, or paused at a checkpoint (time budget, cancel).
    pub end: MoveEnd,
    /// Documents in the key range when the move (first) began.
    pub documents_total: u64,
    /// Documents moved so far, over every run of this move (those already at
    /// the target, or skipped, are not counted).
    pub documents_moved: u64,
    /// Batches committed by this call.
    pub batches: u64,
}

/// Passes events on and keeps the walk's counts for the report.
struct Tally<'a> {
    inner: &'a mut dyn EventSink,
    rows_total: u64,
    rows_done: u64,
    batches: u64,
}

impl EventSink for Tally<'_> {
    fn event(&mut self, e: &Event) {
        match e {
            Event::DataStarted {
                rows_total,
                rows_done,
                ..
            } => {
                self.rows_total = *rows_total;
                self.rows_done = *rows_done;
            }
            Event::BatchFinished { rows_done, .. } => {
                self.rows_done = *rows_done;
                self.batches += 1;
            }
            _ => {}
        }
        self.inner.event(e);
    }
}

/// A collection's documents, at any of its versions.
pub struct Documents {
    service: Service,
    name: String,
    collection: Collection,
    graph: Arc<Graph>,
    validate: Option<Arc<Validator>>,
}

impl std::fmt::Debug for Documents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Documents")
            .field("name", &self.name)
            .field("collection", &self.collection)
            .field("validate", &self.validate.is_some())
            .finish()
    }
}

/// The check of a translated document at a version (`validate = true`): the
/// schema declared in `schemas/<version>.schema.json` if there is one, then
/// the schema the lenses declare for that version. Declared schemas are read
/// (and their keywords checked) when the collection is opened.
pub(crate) fn validator(
    name: &str,
    c: &Collection,
    graph: &Graph,
) -> Result<Option<Arc<Validator>>, Error> {
    validator_with(name, c, graph, true)
}

/// [`validator`], with the schemas the lenses declare (`derived`) or only
/// the declared files.
pub(crate) fn validator_with(
    name: &str,
    c: &Collection,
    graph: &Graph,
    derived: bool,
) -> Result<Option<Arc<Validator>>, Error> {
    if !c.validate {
        return Ok(None);
    }
    let mut schemas: BTreeMap<String, Vec<(String, Schema)>> = BTreeMap::new();
    for v in &c.versions {
        let mut list = Vec::new();
        for ext in ["schema.json", "schema.yaml"] {
            let path = c.schemas.join(format!("{v}.{ext}"));
            if !path.exists() {
                continue;
            }
            let bad =
                |m: String| Error::Config(format!("collection {name}: {}: {m}", path.display()));
            let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
            let value = instar_lens::read_value(&path, &text)
                .map_err(|e| Error::Config(format!("collection {name}: {e}")))?;
            list.push((path.display().to_string(), Schema::new(value).map_err(bad)?));
        }
        if derived {
            let derived = Schema::new(graph.schema(v))
                .map_err(|e| Error::Config(format!("collection {name}: the schema of {v}: {e}")))?;
            list.push((format!("the schema its lenses declare for {v}"), derived));
        }
        schemas.insert(v.clone(), list);
    }
    Ok(Some(Arc::new(move |version: &str, doc: &Value| {
        for (what, s) in schemas.get(version).into_iter().flatten() {
            s.validate(doc).map_err(|e| format!("{e} ({what})"))?;
        }
        Ok(())
    })))
}

impl Service {
    /// The documents of collection `name`; its lenses are read and checked
    /// (a lens naming an undeclared version, two lenses for one pair of
    /// versions, a version no lens reaches: errors naming the file).
    pub fn documents(&self, name: &str) -> Result<Documents, Error> {
        let collection = self.settings().collections.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = self.settings().collections.keys().map(String::as_str).collect();
            Error::Config(format!(
                "no collection {name:?} in instar.toml (declared: {}); declare it under [collections.{name}]",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ))
        })?;
        if collection.kv.is_some() {
            return Err(Error::Config(format!(
                "collection {name} is a key-value collection (store = \"kv\"): its records are in a rocksdb: store; use a rocksdb: database URL"
            )));
        }
        let graph = Graph::load_dir_with(
            &collection.lenses,
            collection.versions.clone(),
            Some(&self.lens_loader()),
        )
        .map_err(|e| Error::Config(format!("collection {name}: {e}")))?;
        let validate = validator(name, &collection, &graph)?;
        Ok(Documents {
            service: self.clone(),
            name: name.to_string(),
            collection,
            graph: Arc::new(graph),
            validate,
        })
    }

    /// The collections the documents migrations of `source` move, loaded and
    /// checked, for the runner.
    pub(crate) fn doc_collections(
        &self,
        source: &Source,
    ) -> Result<BTreeMap<String, DocCollection>, Error> {
        let mut out = BTreeMap::new();
        // Documents migrations name one; an online migration's
        // `alter_column … lens` ops name theirs.
        let named = source.migrations.iter().flat_map(|m| {
            let lenses = m.meta.ops.iter().filter_map(|op| match op {
                instar_core::online::Op::AlterColumn { lens: Some(c), .. } => Some(c),
                _ => None,
            });
            m.meta
                .documents
                .iter()
                .map(|d| &d.collection)
                .chain(lenses)
                .map(move |c| (m, c))
        });
        for (m, collection) in named {
            if out.contains_key(collection) {
                continue;
            }
            let docs = self.documents(collection).map_err(|e| {
                Error::Config(format!(
                    "migration {} ({}): {e}",
                    m.version,
                    m.up.path.display()
                ))
            })?;
            out.insert(collection.clone(), docs.for_runner());
        }
        Ok(out)
    }
}

impl Documents {
    /// The version documents are stored at: the newest declared; without a
    /// version column, the default version (the only one a row can be at).
    pub fn current(&self) -> &str {
        if self.collection.version_column.is_none() {
            return &self.collection.default_version;
        }
        self.collection.versions.last().map_or("", String::as_str)
    }

    /// The stored document `s` (at `from`) moved to `to`: its body, and its
    /// complements — those of the lenses walked replaced, the others kept.
    fn moved(&self, s: &Stored, from: &str, to: &str) -> Result<(Value, Complements), Error> {
        let comps = Documents::complements(s.complements.as_ref());
        let (body, comps) = self
            .graph
            .moved(&s.body, from, to, comps)
            .map_err(|e| self.lens_error(&s.key, e))?;
        self.check(&s.key, to, &body)?;
        Ok((body, comps))
    }

    /// `validate = true`: a translated document must match its version's schema.
    fn check(&self, key: &str, version: &str, doc: &Value) -> Result<(), Error> {
        let Some(check) = &self.validate else {
            return Ok(());
        };
        check(version, doc).map_err(|why| {
            Error::Config(format!(
                "collection {}, key {key}: translated to {version}, it does not match the version's schema: {why}; nothing was written",
                self.name
            ))
        })
    }

    /// A digest of its lenses and their modules up to version `upto`
    /// ([`Graph::fingerprint`]): `sha256:<hex>`.
    pub fn lens_fingerprint(&self, upto: &str) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.graph.fingerprint(upto));
        format!("sha256:{digest:x}")
    }

    /// The collection as the runner's documents migrations need it.
    pub fn for_runner(&self) -> DocCollection {
        DocCollection {
            table: self.table(),
            graph: self.graph.clone(),
            default_version: self.collection.default_version.clone(),
            validate: self.validate.clone(),
        }
    }

    fn table(&self) -> DocTable {
        DocTable {
            collection: self.name.clone(),
            table: self.collection.table.clone(),
            key: self.collection.key.clone(),
            body: self.collection.body.clone(),
            version: self.collection.version_column.clone(),
        }
    }

    pub(crate) fn check_version(&self, v: &str, what: &str) -> Result<(), Error> {
        if self.collection.versions.iter().any(|x| x == v) {
            return Ok(());
        }
        Err(Error::Config(format!(
            "collection {}: {what} version {v} is not declared (versions: {}); nothing was read or written",
            self.name,
            self.collection.versions.join(", ")
        )))
    }

    /// The version a stored document is at (its column, else the default),
    /// refused when it is not declared (a newer release wrote it, or a typo).
    fn version_of(&self, s: &Stored) -> Result<String, Error> {
        let v = s
            .version
            .clone()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| self.collection.default_version.clone());
        self.check_version(&v, &format!("the document {}'s", s.key))?;
        Ok(v)
    }

    fn lens_error(&self, key: &str, e: instar_lens::Error) -> Error {
        Error::Config(format!("collection {}, key {key}: {e}", self.name))
    }

    fn complements(stored: Option<&Value>) -> Complements {
        stored
            .and_then(|c| serde_json::from_value(c.clone()).ok())
            .unwrap_or_default()
    }

    async fn db(&self) -> Result<Db, Error> {
        self.service.connect().await
    }

    /// The document under `key`, at version `at` (default: the current one).
    pub async fn get(&self, key: &str, at: Option<&str>) -> Result<Option<Value>, Error> {
        let at = at.unwrap_or(self.current()).to_string();
        self.check_version(&at, "the requested")?;
        let mut db = self.db().await?;
        let r = self.get_on(&mut db, key, &at).await;
        db.close().await?;
        r
    }

    async fn get_on(&self, db: &mut Db, key: &str, at: &str) -> Result<Option<Value>, Error> {
        let mut d = Docs::open(db, self.table()).await?;
        let Some(s) = d.read(db, key).await? else {
            return Ok(None);
        };
        let from = self.version_of(&s)?;
        let comps = Documents::complements(s.complements.as_ref());
        let doc = self
            .graph
            .read(&s.body, &from, at, &comps)
            .map_err(|e| self.lens_error(key, e))?;
        if from != at {
            self.check(key, at, &doc)?;
        }
        if self.collection.write_back && at == self.current() && from != at {
            // Only if nobody wrote the row since it was read.
            let (body, comps) = self.moved(&s, &from, at)?;
            let expect = Expect::Unchanged {
                version: s.version.as_deref(),
                raw: &s.raw,
            };
            Documents::store(&mut d, db, &s.key, &body, at, &comps, expect).await?;
        }
        Ok(Some(doc))
    }

    /// Writes `body` at `version` with its complements (`Expect` as for [`Docs::write`]).
    async fn store(
        d: &mut Docs,
        db: &mut Db,
        key: &str,
        body: &Value,
        version: &str,
        kept: &Complements,
        expect: Expect<'_>,
    ) -> Result<bool, Error> {
        let c = (!kept.is_empty())
            .then(|| serde_json::to_value(kept))
            .transpose()
            .map_err(|e| Error::Config(format!("encoding complements: {e}")))?;
        Ok(d.write(db, key, body, version, c.as_ref(), expect).await?)
    }

    /// Stores `doc`, written at version `at` (default: the current one), at
    /// the current version, with the complement that reads it back at `at`
    /// exactly as written.
    pub async fn put(&self, key: &str, doc: &Value, at: Option<&str>) -> Result<(), Error> {
        let at = at.unwrap_or(self.current()).to_string();
        self.check_version(&at, "the written")?;
        if !doc.is_object() {
            return Err(Error::Config(format!(
                "collection {}, key {key}: a document is a JSON object",
                self.name
            )));
        }
        let (body, kept) = self
            .graph
            .write(doc, &at, self.current(), &Complements::new())
            .map_err(|e| self.lens_error(key, e))?;
        if at != self.current() {
            self.check(key, self.current(), &body)?;
        }
        let mut db = self.db().await?;
        let r = async {
            let mut d = Docs::open(&mut db, self.table()).await?;
            let current = self.current();
            Documents::store(&mut d, &mut db, key, &body, current, &kept, Expect::Any).await
        }
        .await;
        db.close().await?;
        r.map(|_| ())
    }

    /// Stores `doc` as it is, at version `version`, without a lens: a
    /// document as a release of that version wrote it (a test's fixture).
    pub async fn put_as_written(&self, key: &str, doc: &Value, version: &str) -> Result<(), Error> {
        self.check_version(version, "the written")?;
        let mut db = self.db().await?;
        let r = async {
            let mut d = Docs::open(&mut db, self.table()).await?;
            let none = Complements::new();
            Documents::store(&mut d, &mut db, key, doc, version, &none, Expect::Any).await
        }
        .await;
        db.close().await?;
        r.map(|_| ())
    }

    /// Moves every stored document to version `o.to` (default: the current
    /// one), older and newer ones alike, through the machinery of a documents
    /// migration ([`instar_db::data::move_documents`]): keyset batches of
    /// `o.batch_size`, each one transaction with its checkpoint, pushed down
    /// to SQL where the lens path allows, `o.parallel` slices, `o.on_error`,
    /// `o.max_duration`, under the run lock, with progress events on `sink`.
    /// Stopped or killed, every document is whole at its old version or at
    /// the target; running again resumes after the last batch. A row the
    /// application writes meanwhile is never overwritten with older text.
    pub async fn migrate(
        &self,
        o: &MoveOptions,
        sink: &mut dyn EventSink,
    ) -> Result<MoveReport, Error> {
        let (cfg, opts) = self.move_plan(o)?;
        let coll = self.for_runner();
        let mut tally = Tally {
            inner: sink,
            rows_total: 0,
            rows_done: 0,
            batches: 0,
        };
        let mut db = self.db().await?;
        let r = instar_db::data::move_documents(&mut db, &coll, &cfg, &opts, &mut tally).await;
        db.close().await?;
        Ok(MoveReport {
            collection: self.name.clone(),
            to: cfg.to,
            end: r?,
            documents_total: tally.rows_total,
            documents_moved: tally.rows_done,
            batches: tally.batches,
        })
    }

    /// What [`migrate`](Documents::migrate) would do: per version, the exact
    /// `UPDATE` that moves its documents or why they move in process, and the
    /// first batch run and rolled back. Writes nothing.
    pub async fn migrate_dry_run(&self, o: &MoveOptions) -> Result<Estimate, Error> {
        let (cfg, opts) = self.move_plan(o)?;
        let coll = self.for_runner();
        let mut db = self.db().await?;
        let r = instar_db::data::estimate_move(&mut db, &coll, &cfg, &opts).await;
        db.close().await?;
        Ok(r?)
    }

    fn move_plan(&self, o: &MoveOptions) -> Result<(DocumentsConfig, RunOptions), Error> {
        let to = o.to.clone().unwrap_or_else(|| self.current().to_string());
        self.check_version(&to, "the target")?;
        if self.collection.version_column.is_none() && to != self.collection.default_version {
            return Err(Error::Config(format!(
                "collection {}: without a version_column every document is at {}; documents cannot be stored at {to}",
                self.name, self.collection.default_version
            )));
        }
        let cfg = DocumentsConfig {
            collection: self.name.clone(),
            to,
            down_to: None,
            batch_size: o.batch_size.max(1),
            pause: None,
            target_batch_time: None,
            on_error: o.on_error,
            pushdown: o.pushdown,
        };
        let req = RunRequest {
            max_duration: o.max_duration,
            parallel: o.parallel,
            ..RunRequest::up()
        };
        let mut opts = self.service.run_options(&req);
        opts.cancel = o.cancel.clone();
        Ok((cfg, opts))
    }

    /// Up to `limit` documents after key `after` (in key order), at version `at`.
    pub async fn list(
        &self,
        at: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Value)>, Error> {
        let at = at.unwrap_or(self.current()).to_string();
        self.check_version(&at, "the requested")?;
        let mut db = self.db().await?;
        let r = async {
            let mut out = Vec::new();
            let d = Docs::open(&mut db, self.table()).await?;
            for s in d.scan(&mut db, after, limit).await? {
                let from = self.version_of(&s)?;
                // Complements matter on the way back only: read them then.
                let back = self
                    .graph
                    .path(&from, &at)
                    .is_ok_and(|p| p.iter().any(|st| !st.forward));
                // Read with the row, in one statement: a move committing
                // meanwhile cannot split a document from its complements.
                let comps = if back {
                    Documents::complements(s.complements.as_ref())
                } else {
                    Complements::new()
                };
                let doc = self
                    .graph
                    .read(&s.body, &from, &at, &comps)
                    .map_err(|e| self.lens_error(&s.key, e))?;
                if from != at {
                    self.check(&s.key, &at, &doc)?;
                }
                out.push((s.key, doc));
            }
            Ok::<_, Error>(out)
        }
        .await;
        db.close().await?;
        r
    }
}
