//! [`KvCollection`]: records under a key prefix, each carrying its version in
//! a field, read and written at any version through the collection's lenses.

use std::sync::Arc;

use instar_lens::graph::{Complements, Graph};
use serde_json::Value;

use crate::codec::{self, Encoding};
use crate::store::Pairs;
use crate::{keys, Error, KvStore};

/// Checks a translated document against its version's schema.
pub type Validator = Arc<dyn Fn(&str, &Value) -> Result<(), String> + Send + Sync>;

/// A collection of versioned records under a key prefix.
#[derive(Clone)]
pub struct KvCollection {
    /// Its name (messages, bookkeeping keys).
    pub name: String,
    /// The key prefix of its records (`task:`).
    pub prefix: Vec<u8>,
    /// How its records are encoded.
    pub encoding: Encoding,
    /// The record field holding its version (`schema_version`).
    pub version_field: String,
    /// The version of a record without that field.
    pub default_version: String,
    /// The lenses between its versions (the last version is the current one).
    pub graph: Arc<Graph>,
    /// Checks every translated document (`validate = true`).
    pub validate: Option<Validator>,
}

impl std::fmt::Debug for KvCollection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvCollection")
            .field("name", &self.name)
            .field("prefix", &keys::show(&self.prefix))
            .field("encoding", &self.encoding)
            .field("version_field", &self.version_field)
            .finish()
    }
}

/// A stored record, decoded: its body without the version field, and its version.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its key.
    pub key: Vec<u8>,
    /// Its value as stored.
    pub raw: Vec<u8>,
    /// Its fields but the version field.
    pub body: Value,
    /// Its version.
    pub version: String,
}

impl KvCollection {
    /// The versions, oldest first.
    pub fn versions(&self) -> &[String] {
        self.graph.versions()
    }

    /// The version records are stored at: the newest declared.
    pub fn current(&self) -> &str {
        self.versions().last().map_or("", String::as_str)
    }

    pub(crate) fn record_error(&self, key: &[u8], why: impl std::fmt::Display) -> Error {
        Error::Record {
            collection: self.name.clone(),
            key: keys::show(key),
            why: why.to_string(),
        }
    }

    /// Checks that `v` is one of the declared versions.
    pub fn check_version(&self, v: &str, what: &str) -> Result<(), Error> {
        if self.versions().iter().any(|x| x == v) {
            return Ok(());
        }
        Err(Error::Config(format!(
            "collection {}: {what} version {v} is not declared (versions: {}); nothing was read or written",
            self.name,
            self.versions().join(", ")
        )))
    }

    /// Decodes a stored record; its version must be declared (a newer one
    /// says which release to run).
    pub fn decode(&self, key: &[u8], raw: Vec<u8>) -> Result<Record, Error> {
        let value = self
            .encoding
            .decode(&raw)
            .map_err(|e| self.record_error(key, e))?;
        let Value::Object(mut body) = value else {
            return Err(self.record_error(key, "it is not an object (a map of fields)"));
        };
        let version = codec::version_text(body.remove(&self.version_field).as_ref())
            .map_err(|e| self.record_error(key, e))?
            .unwrap_or_else(|| self.default_version.clone());
        if !self.versions().contains(&version) {
            let newer = codec::compare(&version, self.current())
                .is_some_and(|o| o == std::cmp::Ordering::Greater);
            return Err(if newer {
                Error::Newer(format!(
                    "collection {}: record {} is at version {version}, newer than any this release knows (newest {}): a newer release wrote it; upgrade the application (or Instar) instead of migrating back",
                    self.name,
                    keys::show(key),
                    self.current()
                ))
            } else {
                self.record_error(
                    key,
                    format!(
                        "its version {version} is not declared (versions: {})",
                        self.versions().join(", ")
                    ),
                )
            });
        }
        Ok(Record {
            key: key.to_vec(),
            raw,
            body: Value::Object(body),
            version,
        })
    }

    /// The bytes of `body` stored at `version` (the version field set).
    pub fn encode(&self, key: &[u8], mut out: Value, version: &str) -> Result<Vec<u8>, Error> {
        let Value::Object(map) = &mut out else {
            return Err(self.record_error(key, "a lens made it something else than an object"));
        };
        map.insert(self.version_field.clone(), codec::version_value(version));
        self.encoding
            .encode(&out)
            .map_err(|e| self.record_error(key, e))
    }

    /// Checks a translated document (`validate`).
    pub(crate) fn check(&self, key: &[u8], version: &str, doc: &Value) -> Result<(), Error> {
        let Some(check) = &self.validate else {
            return Ok(());
        };
        check(version, doc).map_err(|why| {
            self.record_error(
                key,
                format!("translated to {version}, it does not match the version's schema: {why}; nothing was written"),
            )
        })
    }

    fn lens_error(&self, key: &[u8], e: instar_lens::Error) -> Error {
        self.record_error(key, e)
    }

    /// The complements kept for a record.
    pub(crate) fn complements(
        &self,
        store: &dyn KvStore,
        key: &[u8],
    ) -> Result<(Option<Vec<u8>>, Complements), Error> {
        let raw = store.get(&keys::complements(&self.name, key))?;
        let comps = raw
            .as_deref()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or_default();
        Ok((raw, comps))
    }

    /// The record under `key` (the prefix included), read at `at` (default:
    /// the current version), its version field set to `at`.
    pub fn get(
        &self,
        store: &dyn KvStore,
        key: &[u8],
        at: Option<&str>,
    ) -> Result<Option<Value>, Error> {
        let at = at.unwrap_or(self.current()).to_string();
        self.check_version(&at, "the requested")?;
        let Some(raw) = store.get(key)? else {
            return Ok(None);
        };
        let r = self.decode(key, raw)?;
        self.read_at(store, &r, &at).map(Some)
    }

    fn read_at(&self, store: &dyn KvStore, r: &Record, at: &str) -> Result<Value, Error> {
        let back = self
            .graph
            .path(&r.version, at)
            .is_ok_and(|p| p.iter().any(|st| !st.forward));
        let comps = if back {
            self.complements(store, &r.key)?.1
        } else {
            Complements::new()
        };
        let mut doc = self
            .graph
            .read(&r.body, &r.version, at, &comps)
            .map_err(|e| self.lens_error(&r.key, e))?;
        if r.version != at {
            self.check(&r.key, at, &doc)?;
        }
        if let Value::Object(m) = &mut doc {
            m.insert(self.version_field.clone(), codec::version_value(at));
        }
        Ok(doc)
    }

    /// Stores `doc`, written at version `at` (default: its version field,
    /// else the current one), at the current version with the complements
    /// that read it back at `at` exactly as written.
    pub fn put(
        &self,
        store: &dyn KvStore,
        key: &[u8],
        doc: &Value,
        at: Option<&str>,
    ) -> Result<(), Error> {
        let Value::Object(map) = doc else {
            return Err(self.record_error(key, "a record is a JSON object"));
        };
        let mut body = map.clone();
        let field = codec::version_text(body.remove(&self.version_field).as_ref())
            .map_err(|e| self.record_error(key, e))?;
        let at = at
            .map(str::to_string)
            .or(field)
            .unwrap_or_else(|| self.current().to_string());
        self.check_version(&at, "the written")?;
        if !key.starts_with(&self.prefix) {
            return Err(self.record_error(
                key,
                format!(
                    "the key is outside the collection's prefix {}",
                    keys::show(&self.prefix)
                ),
            ));
        }
        let current = self.current().to_string();
        let (body, kept) = self
            .graph
            .write(&Value::Object(body), &at, &current, &Complements::new())
            .map_err(|e| self.lens_error(key, e))?;
        if at != current {
            self.check(key, &current, &body)?;
        }
        let mut b = crate::Batch::default();
        b.put(key, self.encode(key, body, &current)?);
        let ck = keys::complements(&self.name, key);
        if kept.is_empty() {
            b.delete(ck);
        } else {
            b.put(
                ck,
                serde_json::to_vec(&kept).map_err(|e| Error::Config(e.to_string()))?,
            );
        }
        store.commit(b)?;
        Ok(())
    }

    /// Up to `limit` records after key `after`, read at `at`.
    pub fn list(
        &self,
        store: &dyn KvStore,
        at: Option<&str>,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Value)>, Error> {
        let at = at.unwrap_or(self.current()).to_string();
        self.check_version(&at, "the requested")?;
        let mut out = Vec::new();
        for (k, v) in scan_records(store, &self.prefix, after, limit)? {
            let r = self.decode(&k, v)?;
            out.push((k, self.read_at(store, &r, &at)?));
        }
        Ok(out)
    }
}

/// [`KvStore::scan`] without Instar's own keys (a collection with an empty prefix).
pub fn scan_records(
    store: &dyn KvStore,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Pairs, Error> {
    if !keys::RESERVED.starts_with(prefix) {
        return Ok(store.scan(prefix, after, limit)?);
    }
    // Everything but the reserved keys, page by page (the cursor always moves on).
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut cursor = after.map(<[u8]>::to_vec);
    while out.len() < limit {
        let page = store.scan(prefix, cursor.as_deref(), limit - out.len())?;
        let Some((last, _)) = page.last() else { break };
        cursor = Some(last.clone());
        out.extend(
            page.into_iter()
                .filter(|(k, _)| !k.starts_with(keys::RESERVED)),
        );
    }
    Ok(out)
}
