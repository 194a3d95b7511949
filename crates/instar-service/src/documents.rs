//! [`Documents`]: one collection's documents, read and written at any of its
//! versions through its lenses (lazily: each read translates, nothing is
//! rewritten unless `write_back` says so).

use std::collections::BTreeMap;
use std::sync::Arc;

use instar_core::Source;
use instar_db::data::{DocCollection, Validator};
use instar_db::docs::{DocTable, Docs, Expect, Stored};
use instar_db::Db;
use instar_lens::graph::{Complements, Graph};
use instar_lens::schema::Schema;
use serde_json::Value;

use crate::settings::Collection;
use crate::{Error, Service};

/// How far `migrate` has come.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MigrateProgress {
    /// The target version.
    pub to: String,
    /// Documents in the table when the run began.
    pub total: u64,
    /// Documents looked at.
    pub seen: u64,
    /// Documents rewritten at the target version.
    pub moved: u64,
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
fn validator(name: &str, c: &Collection, graph: &Graph) -> Result<Option<Arc<Validator>>, Error> {
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
        let derived = Schema::new(graph.schema(v))
            .map_err(|e| Error::Config(format!("collection {name}: the schema of {v}: {e}")))?;
        list.push((format!("the schema its lenses declare for {v}"), derived));
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
        let graph = Graph::load_dir(&collection.lenses, collection.versions.clone())
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
        for m in &source.migrations {
            let Some(d) = &m.meta.documents else { continue };
            if out.contains_key(&d.collection) {
                continue;
            }
            let docs = self.documents(&d.collection).map_err(|e| {
                Error::Config(format!(
                    "migration {} ({}): {e}",
                    m.version,
                    m.up.path.display()
                ))
            })?;
            out.insert(d.collection.clone(), docs.for_runner());
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

    fn check_version(&self, v: &str, what: &str) -> Result<(), Error> {
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

    /// Moves every stored document to version `to` (default: the current one),
    /// in key order, `batch` documents per read; each document is rewritten in
    /// its own transaction with its complements, so a run that is stopped or
    /// killed leaves every document whole at its old version or at `to`, and
    /// running again goes on where it stopped (documents at `to` are skipped).
    /// Documents written at another version while it runs are read correctly
    /// through the lenses, and moved by the next run.
    pub async fn migrate(
        &self,
        to: Option<&str>,
        batch: usize,
        progress: &mut dyn FnMut(&MigrateProgress),
    ) -> Result<MigrateProgress, Error> {
        let to = to.unwrap_or(self.current()).to_string();
        self.check_version(&to, "the target")?;
        if self.collection.version_column.is_none() && to != self.collection.default_version {
            return Err(Error::Config(format!(
                "collection {}: without a version_column every document is at {}; documents cannot be stored at {to}",
                self.name, self.collection.default_version
            )));
        }
        let mut db = self.db().await?;
        let r = self.migrate_on(&mut db, &to, batch.max(1), progress).await;
        db.close().await?;
        r
    }

    async fn migrate_on(
        &self,
        db: &mut Db,
        to: &str,
        batch: usize,
        progress: &mut dyn FnMut(&MigrateProgress),
    ) -> Result<MigrateProgress, Error> {
        let mut d = Docs::open(db, self.table()).await?;
        let mut p = MigrateProgress {
            to: to.to_string(),
            total: d.count(db).await?,
            ..MigrateProgress::default()
        };
        progress(&p);
        let mut after: Option<String> = None;
        loop {
            let page = d.scan(db, after.as_deref(), batch).await?;
            let Some(last) = page.last() else {
                break;
            };
            after = Some(last.key.clone());
            for s in page {
                p.seen += 1;
                if self.version_of(&s)? == to {
                    continue;
                }
                // Read again, whole (complements too); deleted meanwhile: nothing to move.
                let Some(full) = d.read(db, &s.key).await? else {
                    continue;
                };
                let from = self.version_of(&full)?;
                if from == to {
                    continue;
                }
                let (body, comps) = self.moved(&full, &from, to)?;
                // Written only if the row is still as read: a write by the
                // application meanwhile is kept (and moved by the next run).
                let expect = Expect::Unchanged {
                    version: full.version.as_deref(),
                    raw: &full.raw,
                };
                if Documents::store(&mut d, db, &full.key, &body, to, &comps, expect).await? {
                    p.moved += 1;
                }
            }
            progress(&p);
        }
        Ok(p)
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
                let comps = if back {
                    Documents::complements(d.complements(&mut db, &s.key).await?.as_ref())
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
