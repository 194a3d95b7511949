//! `compat`: which release of the application runs against which schema
//! version (`[compat]` of `instar.toml`), and whether each migration's
//! semver bump matches what it does (MAJOR: incompatible; MINOR: additive,
//! older releases keep working; PATCH: no schema change).

use instar_core::lint::{self, Schema, Severity};
use instar_core::split::Dialect;
use serde::Serialize;

use crate::settings::CompatRelease;
use crate::{Error, Service};

/// One schema version of the folder: the migration that reaches it, its
/// bump, which releases run against it, and what breaks the versioning rule.
#[derive(Debug, Clone, Serialize)]
pub struct CompatRow {
    /// The schema version.
    pub schema_version: String,
    /// The migration that declares it (`version name`).
    pub migration: String,
    /// `major`, `minor`, `patch`, or `first`.
    pub bump: String,
    /// Per release (in [`CompatMatrix::releases`] order): whether it runs against this version.
    pub runs: Vec<bool>,
    /// Releases this migration moves off their range (they ran against the version before).
    pub moves_off: Vec<String>,
    /// For a documents migration: whether the lens path keeps the collection
    /// readable at the older version (every step reversible).
    pub lens_readable: Option<bool>,
    /// Where the migration breaks the versioning rule (a MINOR that drops a column …).
    pub rule: Vec<String>,
}

/// The matrix: releases × schema versions.
#[derive(Debug, Clone, Serialize)]
pub struct CompatMatrix {
    /// The releases, oldest first.
    pub releases: Vec<String>,
    /// Each schema version, in migration order.
    pub rows: Vec<CompatRow>,
}

/// What `compat check --app V` found.
#[derive(Debug, Clone, Serialize)]
pub struct CompatCheck {
    /// The release matched.
    pub release: String,
    /// The schema versions it runs against.
    pub requires: String,
    /// The database's schema version now (`None`: none recorded, or not read).
    pub current: Option<String>,
    /// Whether the release runs against it.
    pub current_ok: Option<bool>,
    /// The schema version `up` would produce.
    pub after_up: Option<String>,
    /// Whether the release runs against that.
    pub after_up_ok: Option<bool>,
}

impl CompatCheck {
    /// Whether the release can run (now and after `up`, where known).
    pub fn ok(&self) -> bool {
        self.current_ok != Some(false) && self.after_up_ok != Some(false)
    }
}

fn bump(prev: Option<&semver::Version>, v: &semver::Version) -> &'static str {
    match prev {
        None => "first",
        Some(p) if v.major != p.major => "major",
        Some(p) if v.minor != p.minor => "minor",
        Some(_) => "patch",
    }
}

/// Rules a MINOR bump must not break (older releases keep working).
const NOT_ADDITIVE: &[&str] = &[
    "drop-table",
    "drop-column",
    "narrowing-type",
    "type-change",
    "rename",
    "add-not-null-without-default",
];

/// The release `app` (`1.4.2`) matches: the declared one with the same
/// major and minor (and patch, when the declaration names one).
fn find<'a>(releases: &'a [CompatRelease], app: &semver::Version) -> Option<&'a CompatRelease> {
    releases.iter().rev().find(|r| {
        let word = r.release.split_whitespace().last().unwrap_or("");
        let exact = word.split('.').count() >= 3;
        r.version.major == app.major
            && r.version.minor == app.minor
            && (!exact || r.version.patch == app.patch)
    })
}

impl Service {
    /// The compatibility matrix of the folder and `[compat]` (reads no database).
    pub fn compat_matrix(&self) -> Result<CompatMatrix, Error> {
        let source = self.load()?;
        let releases = &self.settings().compat;
        let dialect = instar_db::url::DbUrl::parse(&self.settings().db.url)
            .map_or(Dialect::Sqlite, |u| u.dialect);
        let mut schema = Schema::default();
        let mut rows: Vec<CompatRow> = Vec::new();
        let mut prev: Option<semver::Version> = None;
        for m in &source.migrations {
            let findings = if m.meta.documents.is_some() {
                Vec::new()
            } else {
                lint::lint_script(&m.up.path, &m.readable_sql(), dialect, &mut schema)
            };
            let Some(v) = m.meta.schema_version.clone() else {
                continue;
            };
            let b = bump(prev.as_ref(), &v);
            let runs: Vec<bool> = releases.iter().map(|r| r.requires.matches(&v)).collect();
            let moves_off = match &prev {
                Some(p) => releases
                    .iter()
                    .filter(|r| r.requires.matches(p) && !r.requires.matches(&v))
                    .map(|r| r.release.clone())
                    .collect(),
                None => Vec::new(),
            };
            let mut rule = Vec::new();
            if b == "minor" || b == "patch" {
                for f in findings.iter().filter(|f| NOT_ADDITIVE.contains(&f.rule)) {
                    rule.push(format!("{}:{}: a {b} version ({v}) {} [{}]: releases of the previous version break; make it a MAJOR version, or expand and contract over two migrations", f.file.display(), f.line, f.message, f.rule));
                }
            }
            if b == "patch" && schema_changes(&m.readable_sql()) {
                rule.push(format!("{}: a PATCH version ({v}) changes the schema; PATCH means no schema change: make it MINOR (additive) or MAJOR", m.up.path.display()));
            }
            let lens_readable = m.meta.documents.as_ref().map(|d| {
                self.lint_lenses(&d.collection, &d.to)
                    .map(|f| {
                        f.iter().all(|x| {
                            x.severity != Severity::Warning || x.rule != "lens-not-reversible"
                        })
                    })
                    .unwrap_or(false)
            });
            rows.push(CompatRow {
                schema_version: v.to_string(),
                migration: format!("{} {}", m.version, m.name),
                bump: b.into(),
                runs,
                moves_off,
                lens_readable,
                rule,
            });
            prev = Some(v);
        }
        Ok(CompatMatrix {
            releases: releases.iter().map(|r| r.release.clone()).collect(),
            rows,
        })
    }

    /// Whether release `app` runs against the database's schema version and
    /// against the one `up` would produce. `with_database`: read the
    /// database's version (else only the folder's is checked).
    pub async fn compat_check(&self, app: &str, with_database: bool) -> Result<CompatCheck, Error> {
        let app_v = semver::Version::parse(app).map_err(|e| {
            Error::Config(format!(
                "--app {app:?} is not a semver version ({e}); write e.g. 1.4.0"
            ))
        })?;
        let releases = &self.settings().compat;
        let r = find(releases, &app_v).ok_or_else(|| {
            let known: Vec<&str> = releases.iter().map(|r| r.release.as_str()).collect();
            Error::Config(format!(
                "release {app} is not declared in [compat] of instar.toml (declared: {}); add \"{}.{}\" = \"<schema versions it runs against>\"",
                if known.is_empty() { "none".to_string() } else { known.join(", ") },
                app_v.major,
                app_v.minor
            ))
        })?;
        let source = self.load()?;
        let latest_in_folder = source
            .migrations
            .iter()
            .rev()
            .find_map(|m| m.meta.schema_version.clone());
        let (current, after_up) = if with_database {
            let view = self.status().await?;
            let current = view.status.schema_version.clone();
            let after = view
                .status
                .migrations
                .iter()
                .rev()
                .find_map(|e| e.schema_version.clone())
                .or(current.clone());
            (current, after)
        } else {
            (None, latest_in_folder.map(|v| v.to_string()))
        };
        let ok = |v: &Option<String>| {
            v.as_deref()
                .and_then(|v| semver::Version::parse(v).ok())
                .map(|v| r.requires.matches(&v))
        };
        Ok(CompatCheck {
            release: r.release.clone(),
            requires: r.requires.to_string(),
            current_ok: ok(&current),
            after_up_ok: ok(&after_up),
            current,
            after_up,
        })
    }
}

/// Whether a script changes the schema (DDL), comments and strings aside.
fn schema_changes(sql: &str) -> bool {
    let up = sql.to_uppercase();
    up.lines()
        .map(|l| l.split("--").next().unwrap_or("").trim())
        .any(|l| {
            ["CREATE ", "ALTER ", "DROP ", "RENAME "]
                .iter()
                .any(|k| l.starts_with(k))
        })
}
