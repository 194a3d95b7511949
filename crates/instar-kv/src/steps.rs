//! The two kinds of rewrite a step makes: a collection moved by its lenses,
//! and records changed by a Rust [`RecordMigration`].

use std::cmp::Ordering;
use std::sync::Arc;

use instar_lens::graph::Complements;

use crate::codec;
use crate::walk::{Rewrite, Rewritten};
use crate::{keys, Error, KvCollection, KvStore, RecordMigration, Write};

/// Every record of a collection moved to version `to` through its lenses
/// (older and newer ones alike), its complements kept beside it.
pub struct LensMove {
    /// The collection.
    pub collection: Arc<KvCollection>,
    /// The target version.
    pub to: String,
    /// The checkpoint name.
    pub step: String,
}

impl Rewrite for LensMove {
    fn step(&self) -> String {
        self.step.clone()
    }

    fn target(&self) -> String {
        self.to.clone()
    }

    fn prefix(&self) -> &[u8] {
        &self.collection.prefix
    }

    fn rewrite(&self, store: &dyn KvStore, page: &[(Vec<u8>, Vec<u8>)]) -> Vec<Rewritten> {
        let c = &self.collection;
        let mut out: Vec<Option<Rewritten>> = (0..page.len()).map(|_| None).collect();
        // Decode, and keep the ones to move with their complements (read one
        // by one only when the collection keeps any: most never do).
        let any_complements = match store.scan(&keys::complements(&c.name, b""), None, 1) {
            Ok(found) => !found.is_empty(),
            Err(e) => return page.iter().map(|_| Err(e.clone().into())).collect(),
        };
        let (mut todo, mut items) = (Vec::new(), Vec::new());
        for (i, (k, v)) in page.iter().enumerate() {
            let r = match c.decode(k, v.clone()) {
                Ok(r) => r,
                Err(e) => {
                    out[i] = Some(Err(e));
                    continue;
                }
            };
            if r.version == self.to {
                out[i] = Some(Ok(None));
                continue;
            }
            let (old_comps, comps) = if any_complements {
                match c.complements(store, k) {
                    Ok(found) => found,
                    Err(e) => {
                        out[i] = Some(Err(e));
                        continue;
                    }
                }
            } else {
                (None, Complements::new())
            };
            // The body moves into the lens; the stored bytes are the guard.
            todo.push((i, r.key, r.raw, old_comps));
            items.push((r.body, r.version, comps));
        }
        let moved = c.graph.moved_many(items, &self.to);
        for ((i, key, raw, old_comps), m) in todo.into_iter().zip(moved) {
            out[i] = Some(self.writes(key, raw, old_comps, m));
        }
        out.into_iter()
            .map(|o| o.expect("every record answered"))
            .collect()
    }
}

impl LensMove {
    fn writes(
        &self,
        key: Vec<u8>,
        raw: Vec<u8>,
        old_comps: Option<Vec<u8>>,
        moved: Result<(serde_json::Value, Complements), instar_lens::Error>,
    ) -> Rewritten {
        let c = &self.collection;
        let (body, comps) = moved.map_err(|e| c.record_error(&key, e))?;
        c.check(&key, &self.to, &body)?;
        let bytes = c.encode(&key, body, &self.to)?;
        let comps = if comps.is_empty() {
            None
        } else {
            Some(serde_json::to_vec(&comps).map_err(|e| c.record_error(&key, e))?)
        };
        let comps_key =
            (comps.is_some() || old_comps.is_some()).then(|| keys::complements(&c.name, &key));
        let mut writes = vec![Write {
            key,
            value: Some(bytes),
            expect: Some(Some(raw)),
            unit: None,
        }];
        if let Some(comps_key) = comps_key {
            writes.push(Write {
                key: comps_key,
                value: comps,
                expect: Some(old_comps),
                unit: None,
            });
        }
        Ok(Some(writes))
    }
}

/// The records under one [`RecordMigration`]'s prefix, each migrated once
/// from its `from` version to its `to`.
pub struct RecordsMove {
    /// The migration.
    pub migration: Arc<dyn RecordMigration>,
    /// The version of a record without a version field.
    pub default_version: String,
    /// The newest version any migration knows (a record newer than it is refused).
    pub latest: String,
}

impl RecordsMove {
    fn one(&self, key: &[u8], raw: &[u8]) -> Rewritten {
        let m = &self.migration;
        let err = |why: String| Error::Record {
            collection: m.name().to_string(),
            key: keys::show(key),
            why,
        };
        let value = m.encoding().decode(raw).map_err(err)?;
        let serde_json::Value::Object(mut body) = value else {
            return Err(err("it is not an object (a map of fields)".into()));
        };
        let version = codec::version_text(body.remove(m.version_field()).as_ref())
            .map_err(err)?
            .unwrap_or_else(|| self.default_version.clone());
        if codec::compare(&version, &self.latest) == Some(Ordering::Greater) {
            return Err(Error::Newer(format!(
                "record {} is at version {version}, newer than any migration this release has (newest {}): a newer release wrote it; upgrade the application",
                keys::show(key),
                self.latest
            )));
        }
        if matches!(
            codec::compare(&version, m.to()),
            Some(Ordering::Equal | Ordering::Greater)
        ) {
            return Ok(None);
        }
        if codec::compare(&version, m.from()) != Some(Ordering::Equal) {
            return Err(err(format!(
                "it is at version {version}, but {} goes from {} to {}: no migration of this release moves it there",
                m.name(),
                m.from(),
                m.to()
            )));
        }
        let out = m
            .migrate(key, serde_json::Value::Object(body))
            .map_err(|e| err(format!("{} failed: {e}", m.name())))?;
        let serde_json::Value::Object(mut out) = out else {
            return Err(err(format!("{} did not return an object", m.name())));
        };
        out.insert(m.version_field().to_string(), codec::version_value(m.to()));
        let bytes = m
            .encoding()
            .encode(&serde_json::Value::Object(out))
            .map_err(err)?;
        Ok(Some(vec![Write {
            key: key.to_vec(),
            value: Some(bytes),
            expect: Some(Some(raw.to_vec())),
            unit: None,
        }]))
    }
}

impl Rewrite for RecordsMove {
    fn step(&self) -> String {
        let prefix: String = self
            .migration
            .prefix()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!(
            "records:{}:{}:{prefix}",
            self.migration.from(),
            self.migration.name()
        )
    }

    fn target(&self) -> String {
        self.migration.to().to_string()
    }

    fn prefix(&self) -> &[u8] {
        self.migration.prefix()
    }

    fn rewrite(&self, _: &dyn KvStore, page: &[(Vec<u8>, Vec<u8>)]) -> Vec<Rewritten> {
        page.iter().map(|(k, v)| self.one(k, v)).collect()
    }
}
