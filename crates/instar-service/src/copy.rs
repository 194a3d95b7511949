//! `instar copy --from URL --to URL`: the target's schema is built by the
//! project's migrations (up to the version the source is at), then every
//! table is copied in checkpointed keyset batches and verified.

use std::sync::Arc;

use futures_util::stream::{self, StreamExt};
use instar_core::event::NullSink;
use instar_core::plan::Target;
use instar_db::copy::{self, CopyOptions, Progress, TablePlan, TableReport};
use instar_db::Db;
use serde::Serialize;

use crate::{Error, RunRequest, Service};

/// What a copy did.
#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    /// The source (credentials hidden).
    pub from: String,
    /// The target (credentials hidden).
    pub to: String,
    /// The schema version the target was migrated to.
    pub version: Option<String>,
    /// Migrations applied to the target first.
    pub migrated: Vec<String>,
    /// Per table.
    pub tables: Vec<TableReport>,
    /// Collections moved to another version in the target (`--lens`).
    pub moved: Vec<String>,
    /// Whether every table verified.
    pub verified: bool,
    /// Whether it stopped early (cancelled): run again to resume.
    pub cancelled: bool,
    /// Milliseconds.
    pub duration_ms: u64,
}

impl Service {
    /// This project on another database.
    fn at_url(&self, url: &str) -> Service {
        let mut s = self.settings().clone();
        s.db.url = url.to_string();
        self.with_settings(s)
    }

    /// The tables a copy would move, checked, and whether the target is
    /// migrated already (if not, its types are shown as the source's). Writes
    /// nothing.
    pub async fn copy_plan(
        &self,
        from: &str,
        to: &str,
        o: &CopyOptions,
    ) -> Result<(Vec<TablePlan>, bool), Error> {
        let (source, target) = (self.at_url(from), self.at_url(to));
        let mut a = source.connect().await?;
        let mut b = target.connect().await?;
        // A target not migrated yet has no tables to compare with: the
        // source's own columns are shown (the migrations make the target's).
        let migrated = b.history_exists().await;
        let r = match &migrated {
            Ok(true) => copy::plan(&mut a, &mut b, o).await.map_err(Error::from),
            Ok(false) => match source.connect().await {
                Ok(mut a2) => {
                    let shown = CopyOptions {
                        append: true,
                        ..o.clone()
                    };
                    let r = copy::plan(&mut a, &mut a2, &shown).await;
                    let _ = a2.close().await;
                    r.map_err(Error::from)
                }
                Err(e) => Err(e),
            },
            Err(_) => Ok(Vec::new()),
        };
        let _ = a.close().await;
        let _ = b.close().await;
        Ok((r?, migrated?))
    }

    /// Copies the application's data from `from` to `to`; then moves each
    /// collection of `lenses` to its version in the target.
    pub async fn copy(
        &self,
        from: &str,
        to: &str,
        o: CopyOptions,
        lenses: &[(String, String)],
        progress: Arc<dyn Fn(&Progress) + Send + Sync>,
    ) -> Result<CopyReport, Error> {
        let started = std::time::Instant::now();
        let (source, target) = (self.at_url(from), self.at_url(to));
        // Checked before anything is written: each collection and version.
        let mut moves = Vec::new();
        for (collection, version) in lenses {
            let docs = target.documents(collection)?;
            docs.check_version(version, &format!("--lens {collection}:{version}: the"))?;
            moves.push((docs, version.clone()));
        }
        // The target's schema: the migrations the source has applied.
        let version = source
            .reading(async |db: &mut Db| {
                if !db.history_exists().await? {
                    return Err(Error::Config(format!(
                        "the source {} has no history table: Instar cannot tell which migrations built it, so it cannot build the target the same way; run `instar adopt` or `instar baseline` on the source first",
                        instar_db::url::redact(from)
                    )));
                }
                let source_files = self.load()?;
                let (_, state) = instar_db::runner::status(db, &source_files).await?;
                Ok(source_files
                    .migrations
                    .iter()
                    .rev()
                    .find(|m| state.applied_of(m.version.as_str()).is_some())
                    .map(|m| m.version.as_str().to_string()))
            })
            .await?;
        let mut migrated = Vec::new();
        if let Some(v) = &version {
            let req = RunRequest::new(Target::Up {
                to: Some(v.clone()),
            });
            let report = target
                .run(
                    &req,
                    &instar_db::new_run_id(),
                    o.cancel.clone(),
                    &mut NullSink,
                )
                .await
                .map_err(|f| {
                    Error::Config(format!("migrating the target to {v} first: {}", f.error))
                })?;
            migrated = report.migrations;
        }
        let plans = {
            let mut a = source.connect().await?;
            let mut b = target.connect().await?;
            let r = async {
                let plans = copy::plan(&mut a, &mut b, &o).await?;
                copy::prepare(&a, &mut b, &plans).await?;
                Ok::<_, instar_db::Error>(plans)
            }
            .await;
            let _ = a.close().await;
            let _ = b.close().await;
            r?
        };
        let o = Arc::new(o);
        let results: Vec<Result<TableReport, Error>> = stream::iter(plans)
            .map(|p| {
                let (source, target, o, progress) =
                    (source.clone(), target.clone(), o.clone(), progress.clone());
                async move { one_table(&source, &target, &p, &o, &*progress).await }
            })
            .buffer_unordered(o.parallel.max(1))
            .collect()
            .await;
        let mut tables = Vec::new();
        for r in results {
            tables.push(r?);
        }
        tables.sort_by(|a, b| a.table.cmp(&b.table));
        // Verified whole, the copy's checkpoints go: a later copy into this
        // target finds rows. Then collections are moved on the target, through
        // the documents-migration machinery (checkpointed; complements kept).
        let mut moved = Vec::new();
        if tables.iter().all(|t| t.verified(o.append)) && !o.cancel.is_cancelled() {
            let mut b = target.connect().await?;
            let names: Vec<String> = tables.iter().map(|t| t.table.clone()).collect();
            copy::clear_checkpoints(&mut b, &names).await?;
            b.close().await?;
            for (docs, version) in moves {
                let mo = crate::MoveOptions {
                    to: Some(version.clone()),
                    cancel: o.cancel.clone(),
                    ..Default::default()
                };
                let r = docs.migrate(&mo, &mut NullSink).await?;
                moved.push(format!(
                    "collection {} moved to {version} in the target: {} documents",
                    r.collection, r.documents_moved
                ));
            }
        }
        Ok(CopyReport {
            from: instar_db::url::redact(from),
            to: instar_db::url::redact(to),
            version,
            migrated,
            verified: tables.iter().all(|t| t.verified(o.append)),
            moved,
            cancelled: o.cancel.is_cancelled(),
            tables,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }
}

async fn one_table(
    source: &Service,
    target: &Service,
    p: &TablePlan,
    o: &CopyOptions,
    progress: &(dyn Fn(&Progress) + Send + Sync),
) -> Result<TableReport, Error> {
    let mut a = source.connect().await?;
    let mut b = target.connect().await?;
    let r = async {
        let mut report = copy::copy_table(&mut a, &mut b, p, o, progress).await?;
        if !o.cancel.is_cancelled() {
            let v = copy::verify_table(&mut a, &mut b, p, o.verify).await?;
            report.source_rows = v.source_rows;
            report.target_rows = v.target_rows;
            report.compared = v.compared;
            report.mismatches = v.mismatches;
        }
        Ok::<_, Error>(report)
    }
    .await;
    let _ = a.close().await;
    let _ = b.close().await;
    r
}
