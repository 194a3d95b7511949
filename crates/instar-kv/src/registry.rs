//! Rust migrations of records ([`RecordMigration`]) and the [`Registry`] that
//! chains them from version to version.

use std::cmp::Ordering;
use std::sync::Arc;

use serde_json::Value;

use crate::codec::{self, Encoding};
use crate::Error;

/// A change to every record under a key prefix, from one version to the
/// next, written in Rust. The record arrives decoded (without its version
/// field); the runner sets the version field of what `migrate` returns.
///
/// `migrate` need not be idempotent: each record is migrated once, in a batch
/// committed atomically with its checkpoint, and a record already at `to` is
/// never given to it again.
pub trait RecordMigration: Send + Sync {
    /// The version records are at before.
    fn from(&self) -> &str;
    /// The version they are at after.
    fn to(&self) -> &str;
    /// Its name (history, messages).
    fn name(&self) -> &str;
    /// The key prefix of the records it changes (`task:`).
    fn prefix(&self) -> &[u8];
    /// How the records are encoded (default JSON).
    fn encoding(&self) -> Encoding {
        Encoding::Json
    }
    /// The record field holding the version (default `schema_version`).
    fn version_field(&self) -> &str {
        "schema_version"
    }
    /// The record under `key`, changed; an error names what is wrong with it.
    fn migrate(&self, key: &[u8], record: Value) -> Result<Value, String>;
}

/// A [`RecordMigration`] from a closure.
pub struct FnMigration<F> {
    from: String,
    to: String,
    name: String,
    prefix: Vec<u8>,
    encoding: Encoding,
    f: F,
}

impl<F> FnMigration<F>
where
    F: Fn(&[u8], Value) -> Result<Value, String> + Send + Sync,
{
    /// `f` migrates the records under `prefix` from `from` to `to`.
    pub fn new(from: &str, to: &str, name: &str, prefix: &[u8], f: F) -> FnMigration<F> {
        FnMigration {
            from: from.into(),
            to: to.into(),
            name: name.into(),
            prefix: prefix.to_vec(),
            encoding: Encoding::Json,
            f,
        }
    }

    /// Records are encoded with `encoding`.
    pub fn encoded(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }
}

impl<F> RecordMigration for FnMigration<F>
where
    F: Fn(&[u8], Value) -> Result<Value, String> + Send + Sync,
{
    fn from(&self) -> &str {
        &self.from
    }
    fn to(&self) -> &str {
        &self.to
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn prefix(&self) -> &[u8] {
        &self.prefix
    }
    fn encoding(&self) -> Encoding {
        self.encoding
    }
    fn migrate(&self, key: &[u8], record: Value) -> Result<Value, String> {
        (self.f)(key, record)
    }
}

/// The record migrations an application knows, chained by version.
#[derive(Clone, Default)]
pub struct Registry {
    migrations: Vec<Arc<dyn RecordMigration>>,
    initial: Option<String>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.migrations
                    .iter()
                    .map(|m| format!("{} {}→{}", m.name(), m.from(), m.to())),
            )
            .finish()
    }
}

/// One version step: every migration from one version to the next.
#[derive(Clone)]
pub struct VersionStep {
    /// The version before.
    pub from: String,
    /// The version after.
    pub to: String,
    /// Its migrations (one per prefix, in registration order).
    pub migrations: Vec<Arc<dyn RecordMigration>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds a migration.
    pub fn register(mut self, m: impl RecordMigration + 'static) -> Registry {
        self.migrations.push(Arc::new(m));
        self
    }

    /// The version of a store that records no version yet (default: the
    /// oldest `from`).
    pub fn initial(mut self, version: &str) -> Registry {
        self.initial = Some(version.to_string());
        self
    }

    /// Every version step, oldest first, checked: versions are integers or
    /// semver, each step goes up, and the steps form one chain with no gap
    /// (`1→2` and `3→4` alone is refused, naming the missing step).
    pub fn steps(&self) -> Result<Vec<VersionStep>, Error> {
        let mut steps: Vec<VersionStep> = Vec::new();
        for m in &self.migrations {
            for v in [m.from(), m.to()] {
                if !codec::is_version(v) {
                    return Err(Error::Config(format!(
                        "record migration {}: {v:?} is not a version (a plain integer like 2, or semver like 2.1.0)",
                        m.name()
                    )));
                }
            }
            if codec::compare(m.from(), m.to()) != Some(Ordering::Less) {
                return Err(Error::Config(format!(
                    "record migration {}: goes from {} to {}, which is not a newer version of the same kind",
                    m.name(),
                    m.from(),
                    m.to()
                )));
            }
            match steps.iter_mut().find(|s| s.from == m.from()) {
                Some(s) if s.to == m.to() => s.migrations.push(m.clone()),
                Some(s) => {
                    return Err(Error::Config(format!(
                        "record migrations {} and {} both start at {} but end at {} and {}: one version has one next version",
                        s.migrations[0].name(),
                        m.name(),
                        m.from(),
                        s.to,
                        m.to()
                    )))
                }
                None => steps.push(VersionStep {
                    from: m.from().into(),
                    to: m.to().into(),
                    migrations: vec![m.clone()],
                }),
            }
        }
        for s in &steps {
            for (i, a) in s.migrations.iter().enumerate() {
                if a.prefix().starts_with(crate::keys::RESERVED)
                    || crate::keys::RESERVED.starts_with(a.prefix())
                {
                    return Err(Error::Config(format!(
                        "record migration {}: its prefix {} covers Instar's own keys (\\0instar/); give it the prefix of the application's records",
                        a.name(),
                        crate::keys::show(a.prefix())
                    )));
                }
                for b in &s.migrations[i + 1..] {
                    if a.prefix().starts_with(b.prefix()) || b.prefix().starts_with(a.prefix()) {
                        return Err(Error::Config(format!(
                            "record migrations {} and {} both go from {} to {} over overlapping prefixes ({} and {}): the second would find the records already at {}; make it one migration, or give them disjoint prefixes",
                            a.name(), b.name(), s.from, s.to, crate::keys::show(a.prefix()), crate::keys::show(b.prefix()), s.to
                        )));
                    }
                }
            }
        }
        steps.sort_by(|a, b| codec::compare(&a.from, &b.from).unwrap_or(Ordering::Equal));
        for w in steps.windows(2) {
            if w[0].to != w[1].from {
                let listed: Vec<String> = steps
                    .iter()
                    .map(|s| format!("{}→{}", s.from, s.to))
                    .collect();
                return Err(Error::Gap(format!(
                    "the record migrations leave a gap: nothing migrates {} to {} (registered: {}); add a migration from {} to {}",
                    w[0].to,
                    w[1].from,
                    listed.join(", "),
                    w[0].to,
                    w[1].from
                )));
            }
        }
        Ok(steps)
    }

    /// The version a store without a recorded version is at.
    pub fn first(&self) -> Result<Option<String>, Error> {
        let steps = self.steps()?;
        Ok(self
            .initial
            .clone()
            .or_else(|| steps.first().map(|s| s.from.clone())))
    }

    /// The newest version the migrations reach.
    pub fn latest(&self) -> Result<Option<String>, Error> {
        let steps = self.steps()?;
        Ok(steps
            .last()
            .map(|s| s.to.clone())
            .or_else(|| self.initial.clone()))
    }

    /// The steps from `from` to the newest version.
    pub fn path_from(&self, from: &str) -> Result<Vec<VersionStep>, Error> {
        let steps = self.steps()?;
        if steps.is_empty() || steps.last().is_some_and(|s| s.to == from) {
            return Ok(Vec::new());
        }
        match steps.iter().position(|s| s.from == from) {
            Some(i) => Ok(steps[i..].to_vec()),
            None => Err(Error::Gap(format!(
                "the store is at version {from}, where no record migration starts (they start at {})",
                steps.iter().map(|s| s.from.as_str()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }
}
