//! `lint`: every migration of the folder checked before it runs (see
//! [`instar_core::lint`]), in order, so that a later `ALTER` is judged
//! against the `CREATE TABLE` before it; table sizes from the database's
//! statistics when it can be read.

use std::collections::BTreeSet;

use instar_core::lint::{self, Finding, Schema, Severity};
use instar_core::meta::Kind;
use instar_core::split::Dialect;
use instar_lens::graph::Graph;
use serde::Serialize;

use crate::{Error, Service};

/// What `lint` looks at.
#[derive(Debug, Clone, Default)]
pub struct LintOptions {
    /// Do not read table sizes from the database.
    pub offline: bool,
    /// Report only these versions (every migration is still read, in order).
    pub only: Option<BTreeSet<String>>,
}

/// What `lint` found.
#[derive(Debug, Clone, Serialize)]
pub struct LintReport {
    /// The dialect the files were read as.
    pub dialect: Dialect,
    /// Migrations read.
    pub migrations: usize,
    /// The findings, in migration order.
    pub findings: Vec<Finding>,
    /// Whether table sizes came from the database, or why not.
    pub table_sizes: String,
}

impl LintReport {
    /// Findings of severity error.
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count()
    }
}

impl Service {
    /// Lints every migration of the folder (reads the database only for its
    /// table statistics, unless `offline`; never writes).
    pub async fn lint(&self, o: &LintOptions) -> Result<LintReport, Error> {
        let source = self.load()?;
        let url = instar_db::url::DbUrl::parse(&self.settings().db.url).ok();
        let dialect = url.as_ref().map_or(Dialect::Sqlite, |u| u.dialect);
        let mut schema = Schema::default();
        let table_sizes = if o.offline || url.is_none() {
            "not read (--offline, or not a SQL database)".to_string()
        } else {
            match self
                .reading(async |db: &mut instar_db::Db| Ok(db.table_rows().await?))
                .await
            {
                Ok(rows) => {
                    let n = rows.len();
                    schema.rows = rows;
                    format!("read from the database's statistics ({n} tables)")
                }
                Err(e) => format!("not read: {e}"),
            }
        };
        let mut findings = Vec::new();
        let mut schema_before: Option<semver::Version> = None;
        for m in &source.migrations {
            let wanted = o
                .only
                .as_ref()
                .is_none_or(|v| v.contains(&m.version.to_string()));
            let mut found = Vec::new();
            if let Some(d) = &m.meta.documents {
                found.extend(self.lint_lenses(&d.collection, &d.to)?);
            } else {
                found.extend(lint::lint_script(
                    &m.up.path,
                    &m.readable_sql(),
                    dialect,
                    &mut schema,
                ));
            }
            if m.meta.kind == Some(Kind::Data) && m.meta.checks.after.is_empty() {
                found.push(Finding {
                    rule: "data-migration-without-checks",
                    severity: Severity::Warning,
                    file: m.up.path.clone(),
                    line: 1,
                    message: format!("data migration {} has no checks.after: nothing tells it did what it meant", m.version),
                    instead: "add [checks] after = [\"SELECT count(*) = 0 FROM … WHERE <rows it should have changed>\"] to its migration.toml: a false check rolls the batch back".into(),
                });
            }
            if let Some(v) = &m.meta.schema_version {
                self.releases_broken_by_renames(&mut found, schema_before.as_ref(), v);
                schema_before = Some(v.clone());
            }
            if wanted {
                findings.extend(found);
            }
        }
        Ok(LintReport {
            dialect,
            migrations: source.migrations.len(),
            findings,
            table_sizes,
        })
    }

    /// A rename in a migration reaching schema version `v` breaks a release
    /// of `[compat]` that runs against both `v` and the version before (it
    /// still uses the old name): the warning becomes an error naming it.
    fn releases_broken_by_renames(
        &self,
        found: &mut [Finding],
        before: Option<&semver::Version>,
        v: &semver::Version,
    ) {
        let Some(before) = before else { return };
        let broken: Vec<&str> = self
            .settings()
            .compat
            .iter()
            .filter(|r| r.requires.matches(before) && r.requires.matches(v))
            .map(|r| r.release.as_str())
            .collect();
        if broken.is_empty() {
            return;
        }
        for f in found.iter_mut().filter(|f| f.rule == "rename") {
            f.rule = "rename-used-by-release";
            f.severity = Severity::Error;
            f.message = format!(
                "{}; [compat] says release {} runs against {before} and against {v}, so it still uses the old name after this migration",
                f.message,
                broken.join(", ")
            );
            f.instead = format!("{} Or, if those releases no longer run against {v}, narrow their range in [compat].", f.instead);
        }
    }

    /// A documents migration: the one-way steps of the lens path its
    /// documents take from the collection's first version to `to`.
    pub(crate) fn lint_lenses(&self, collection: &str, to: &str) -> Result<Vec<Finding>, Error> {
        let Some(c) = self.settings().collections.get(collection) else {
            return Ok(Vec::new());
        };
        let graph = Graph::load_dir_with(&c.lenses, c.versions.clone(), Some(&self.lens_loader()))
            .map_err(|e| Error::Config(format!("collection {collection}: {e}")))?;
        let mut out = Vec::new();
        for v in c.versions.iter().filter(|v| *v != to) {
            for st in graph.path(v, to).unwrap_or_default() {
                let one_way = st.lens.one_way();
                let file = st.lens.path.clone();
                if one_way.is_empty() || out.iter().any(|f: &Finding| f.file == file) {
                    continue;
                }
                out.push(Finding {
                    rule: "lens-not-reversible",
                    severity: Severity::Warning,
                    file,
                    line: 1,
                    message: format!("collection {collection}: this lens has one-way steps ({}): documents moved to {to} cannot be read back exactly at older versions", one_way.join(", ")),
                    instead: "give each step its reverse (declarative ops, or a WebAssembly module with an inverse), or accept that older releases read defaults there".into(),
                });
            }
        }
        Ok(out)
    }
}
