//! `instar squash --to V`: the migrations up to V replaced by one baseline,
//! the schema (and seeded rows) they build, dumped from a scratch database.
//! Their files move to an archive folder; the baseline's `migration.toml`
//! lists them (version, name, checksum), so a database that applied them
//! counts the baseline as applied and a new database runs only the baseline.

use std::path::{Path, PathBuf};

use instar_core::event::NullSink;
use instar_core::plan::Target;
use instar_core::version::Layout;
use instar_db::scratch::Scratch;
use serde::Serialize;

use crate::{Error, RunRequest, Service};

/// What `instar squash` did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Serialize)]
pub struct SquashReport {
    /// The baseline's version.
    pub version: String,
    /// The baseline's folder.
    pub baseline: PathBuf,
    /// Where the replaced migrations' folders went.
    pub archive: PathBuf,
    /// The versions replaced.
    pub squashed: Vec<String>,
    /// The baseline's SQL.
    pub sql: String,
    /// Nothing was written.
    pub dry_run: bool,
}

fn bad(m: String) -> Error {
    Error::Config(m)
}

fn toml_text(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

impl Service {
    /// Squashes the migrations up to `to` into a baseline (see the module).
    pub async fn squash(&self, to: &str, dry_run: bool) -> Result<SquashReport, Error> {
        let source = self.load()?;
        if source.layout.is_some_and(|l| l != Layout::Instar) {
            return Err(bad(format!(
                "squash writes Instar's folder layout, and {} uses {}'s; convert the folder first (`instar new` shows the layout)",
                self.settings().migrations.display(),
                source.layout.map(|l| format!("{l:?}")).unwrap_or_default()
            )));
        }
        let at = source
            .migrations
            .iter()
            .position(|m| m.version.as_str() == to)
            .ok_or_else(|| {
                bad(format!(
                    "no migration {to} in {}",
                    self.settings().migrations.display()
                ))
            })?;
        let replaced: Vec<_> = source.migrations[..=at]
            .iter()
            .filter(|m| !m.is_repeatable())
            .collect();
        if replaced.len() < 2 {
            return Err(bad(format!(
                "nothing to squash: {to} is the first migration (or the baseline of an earlier squash); name a later one"
            )));
        }
        let last = source.migrations[at].clone();
        let sql = self.baseline_sql(to).await?;
        let version = last.version.as_str().to_string();
        let folder = self
            .settings()
            .migrations
            .join(format!("{version}_baseline"));
        let archive = self
            .settings()
            .migrations
            .parent()
            .unwrap_or(Path::new("."))
            .join("archive")
            .join(format!("squashed-to-{version}"));
        let mut toml = format!(
            "description = {}\n",
            toml_text(&format!("baseline: the schema migrations up to {version} built, squashed by `instar squash` (their files: {})", archive.display()))
        );
        if let Some(sv) = &last.meta.schema_version {
            toml += &format!("schema_version = \"{sv}\"\n");
        }
        let mut squashed = Vec::new();
        for m in &replaced {
            // A baseline squashed again passes on what it replaced.
            let entries: Vec<(String, String, String)> = if m.meta.squashes.is_empty() {
                vec![(
                    m.version.as_str().to_string(),
                    m.name.clone(),
                    m.checksum.clone(),
                )]
            } else {
                m.meta
                    .squashes
                    .iter()
                    .map(|s| (s.version.clone(), s.name.clone(), s.checksum.clone()))
                    .collect()
            };
            for (v, name, checksum) in entries {
                toml += &format!(
                    "\n[[squashes]]\nversion = {}\nname = {}\nchecksum = {}\n",
                    toml_text(&v),
                    toml_text(&name),
                    toml_text(&checksum)
                );
                squashed.push(v);
            }
        }
        let report = SquashReport {
            version,
            baseline: folder.clone(),
            archive: archive.clone(),
            squashed,
            sql: sql.clone(),
            dry_run,
        };
        if dry_run {
            return Ok(report);
        }
        if archive.exists() {
            return Err(bad(format!(
                "{} exists already: move it away first",
                archive.display()
            )));
        }
        let io =
            |what: &str, p: &Path, e: std::io::Error| bad(format!("{what} {}: {e}", p.display()));
        std::fs::create_dir_all(&archive).map_err(|e| io("creating", &archive, e))?;
        for m in &replaced {
            let dir = m.up.path.parent().unwrap_or(Path::new("."));
            let name = dir.file_name().unwrap_or_default();
            std::fs::rename(dir, archive.join(name)).map_err(|e| io("moving", dir, e))?;
        }
        std::fs::create_dir_all(&folder).map_err(|e| io("creating", &folder, e))?;
        std::fs::write(folder.join("up.sql"), sql).map_err(|e| io("writing", &folder, e))?;
        std::fs::write(folder.join("migration.toml"), toml)
            .map_err(|e| io("writing", &folder, e))?;
        Ok(report)
    }

    /// The script the migrations up to `to` build, from a scratch database.
    async fn baseline_sql(&self, to: &str) -> Result<String, Error> {
        let url = self.settings().db.url.clone();
        let dir = self.settings().scratch_dir.clone();
        let project = format!("squash|{}|{url}", self.settings().migrations.display());
        let scratch = Scratch::create(&url, &dir, &project, false).await?;
        let mut settings = self.settings().clone();
        settings.db.url = scratch.url.clone();
        settings.backup = false;
        let on_scratch = self.with_settings(settings);
        let r = async {
            let req = RunRequest::new(Target::Up {
                to: Some(to.to_string()),
            });
            on_scratch
                .run(
                    &req,
                    &instar_db::new_run_id(),
                    instar_db::CancelToken::new(),
                    &mut NullSink,
                )
                .await
                .map_err(|f| {
                    bad(format!(
                        "building the schema on a scratch database: {}",
                        f.error
                    ))
                })?;
            let mut db = on_scratch.connect().await?;
            std::fs::create_dir_all(&dir)
                .map_err(|e| bad(format!("creating {}: {e}", dir.display())))?;
            let dumped = db.dump_sql(&dir).await;
            let _ = db.close().await;
            Ok::<_, Error>(dumped?)
        }
        .await;
        scratch.remove().await?;
        let body = r?;
        Ok(format!(
            "-- Baseline written by `instar squash --to {to}`: the schema and seeded rows\n-- the migrations up to {to} build. Databases that applied them skip it.\n{body}"
        ))
    }
}
