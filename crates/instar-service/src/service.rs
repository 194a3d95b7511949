//! [`Service`]: every operation, for every front door.

use std::sync::Arc;
use std::time::Duration;

use instar_core::event::EventSink;
use instar_core::history::HistoryRow;
use instar_core::plan::Problem;
use instar_core::Source;
use instar_db::backup::{self, BackupInfo};
use instar_db::runner::{self, PlannedStep, RepairOptions, Report, RunOptions, Verified};
use instar_db::{CancelToken, Db};

use crate::run::{Hub, RunFailure, RunHandle, RunRequest};
use crate::source::{FolderSource, MigrationSource};
use crate::status::StatusView;
use crate::{Error, Settings};

/// One project (settings and a migration source) and every operation on it.
/// Cheap to clone; clones share the source.
#[derive(Clone)]
pub struct Service {
    settings: Arc<Settings>,
    pub(crate) source: Arc<dyn MigrationSource>,
    /// The WebAssembly host, started the first time a lens has a `wasm` stage.
    wasm: Arc<std::sync::OnceLock<Result<Arc<instar_wasm::Host>, String>>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("database", &instar_db::url::redact(&self.settings.db.url))
            .field("source", &self.source.describe())
            .finish()
    }
}

impl Service {
    /// A service reading migrations from the settings' folder.
    pub fn new(settings: Settings) -> Service {
        let source = FolderSource {
            dir: settings.migrations.clone(),
            layout: settings.layout,
            pattern: settings.pattern.clone(),
            cache: settings.source_cache.clone(),
        };
        Service::with_source(settings, source)
    }

    /// A service reading migrations from `source` (in memory, embedded …).
    pub fn with_source(settings: Settings, source: impl MigrationSource + 'static) -> Service {
        Service {
            settings: Arc::new(settings),
            source: Arc::new(source),
            wasm: Arc::default(),
        }
    }

    /// The same project with its migrations read now and kept (see
    /// [`crate::source::Pinned`]).
    pub(crate) fn pinned(&self) -> Result<Service, Error> {
        let pinned = crate::source::Pinned {
            source: self.source.load()?,
            from: self.source.describe(),
        };
        Ok(Service {
            source: Arc::new(pinned),
            ..self.clone()
        })
    }

    /// The same project (source, WebAssembly host) with other settings: a
    /// scratch database, a copy's target.
    pub fn with_settings(&self, settings: Settings) -> Service {
        Service {
            settings: Arc::new(settings),
            ..self.clone()
        }
    }

    /// The WebAssembly lens host (one per service, started on first use),
    /// with the settings' sandbox limits and compiled-code cache.
    pub fn wasm_host(&self) -> Result<Arc<instar_wasm::Host>, Error> {
        self.wasm
            .get_or_init(|| {
                instar_wasm::Host::new(self.settings.wasm, self.settings.wasm_cache.clone())
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(Error::Config)
    }

    /// The loader of `wasm` lens stages: it starts the host only when a lens needs it.
    pub fn lens_loader(&self) -> impl instar_lens::wasm::Loader + '_ {
        LazyLoader(self)
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Reads the migrations now, as they run on the settings' engine (a popx
    /// folder's files for that engine).
    pub fn load(&self) -> Result<Source, Error> {
        let source = self.source.load()?;
        let mut source = match instar_db::url::DbUrl::parse(&self.settings.db.url) {
            Ok(url) => source.for_dialect(url.dialect),
            // Connecting says what is wrong with the URL.
            Err(_) => source,
        };
        self.fingerprint_lenses(&mut source);
        Ok(source)
    }

    /// Each documents migration's lens fingerprint (its collection's lenses
    /// and modules up to its target), recorded when it is applied and
    /// compared after, so an edited lens or module is reported like an edited
    /// file. Left unknown (and not compared) where the collection is not
    /// declared here or cannot be opened (the run reports why).
    fn fingerprint_lenses(&self, source: &mut Source) {
        let mut opened: std::collections::BTreeMap<String, Option<crate::Documents>> =
            Default::default();
        for m in &mut source.migrations {
            let Some(d) = &m.meta.documents else { continue };
            let docs = opened
                .entry(d.collection.clone())
                .or_insert_with(|| self.documents(&d.collection).ok());
            m.lenses = docs.as_ref().map(|docs| docs.lens_fingerprint(&d.to));
        }
    }

    /// Opens a connection with the settings (init SQL run).
    pub async fn connect(&self) -> Result<Db, Error> {
        Ok(Db::connect(&self.settings.db).await?)
    }

    /// Runs `f` on a new connection and closes it, whatever `f` returned.
    pub(crate) async fn with_db<T>(
        &self,
        f: impl AsyncFnOnce(&mut Db) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.on(self.connect().await?, f).await
    }

    /// [`Service::with_db`] for commands that only read: a SQLite file that does
    /// not exist is not created (it reads as an empty database).
    pub(crate) async fn reading<T>(
        &self,
        f: impl AsyncFnOnce(&mut Db) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut settings = self.settings.db.clone();
        settings.create_missing = false;
        self.on(Db::connect(&settings).await?, f).await
    }

    pub(crate) async fn on<T>(
        &self,
        mut db: Db,
        f: impl AsyncFnOnce(&mut Db) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let r = f(&mut db).await;
        let closed = db.close().await;
        let v = r?;
        closed?;
        Ok(v)
    }

    /// Runs `f` on a new connection holding the run lock (waiting up to the
    /// settings' lock timeout), releasing it and closing on every path.
    async fn with_lock<T>(
        &self,
        f: impl AsyncFnOnce(&mut Db) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let timeout = self.settings.lock_timeout;
        self.with_db(async |db: &mut Db| {
            db.lock(timeout, || {}).await?;
            let r = f(db).await;
            let unlocked = db.unlock().await;
            let v = r?;
            unlocked?;
            Ok(v)
        })
        .await
    }

    /// Everything `status` shows. Reads only.
    pub async fn status(&self) -> Result<StatusView, Error> {
        let source = self.load()?;
        self.reading(async |db: &mut Db| {
            let (status, state) = runner::status(db, &source).await?;
            // Another tool's history matters while Instar's records nothing.
            let other_histories = if state.applied.is_empty() && state.baseline.is_none() {
                instar_db::adopt::unadopted(db, &source).await?
            } else {
                Vec::new()
            };
            Ok(StatusView {
                other_histories,
                database: instar_db::url::redact(&self.settings.db.url),
                layout: source.layout,
                status,
                state,
                checkpoints: instar_db::data::checkpoints(db).await?,
                skipped: instar_db::data::skipped_rows(db).await?,
                in_flight: db.in_flight().await?,
                lock: crate::status::LockView {
                    strategy: db.lock_strategy(),
                    lease: db.lease_holder_now().await?,
                },
            })
        })
        .await
    }

    /// Every problem between the files and the history. Reads only.
    /// Every problem `up` would refuse (the planner's own check included), and
    /// every dirty migration, even one `up` can resume. Reads only.
    pub async fn validate(&self) -> Result<(Source, Vec<Problem>), Error> {
        let source = self.load()?;
        let (mut problems, state, dialect) = self
            .reading(async |db: &mut Db| {
                let (status, state) = runner::status(db, &source).await?;
                Ok((status.problems, state, db.dialect()))
            })
            .await?;
        let opts = instar_core::plan::PlanOptions {
            target: instar_core::plan::Target::Up { to: None },
            dialect,
            allow_out_of_order: false,
            ignore_missing: false,
        };
        if let Err(instar_core::Error::Validation { problems: refused }) =
            instar_core::plan::plan(&source.migrations, &state, &opts)
        {
            problems.extend(refused);
        }
        for d in state.dirty.values() {
            let known = problems
                .iter()
                .any(|p| matches!(p, Problem::Dirty { version, .. } if *version == d.version));
            if known {
                continue;
            }
            problems.push(Problem::Dirty {
                version: d.version.clone(),
                applied: d.statements_applied,
                total: d.statements_total,
                direction: d.direction,
                error: d.error.clone(),
                why: format!(
                    "`instar {}` resumes it once its cause is fixed",
                    d.direction.as_str()
                ),
            });
        }
        // One line per problem, even when two checks found it.
        let mut seen = std::collections::HashSet::new();
        problems.retain(|p| seen.insert(p.to_string()));
        Ok((source, problems))
    }

    /// The history log, oldest first. Reads only.
    pub async fn history(&self) -> Result<Vec<HistoryRow>, Error> {
        self.reading(async |db: &mut Db| Ok(db.read_history().await?))
            .await
    }

    /// Re-runs every applied migration's `checks.after`. Reads only.
    pub async fn verify(&self) -> Result<Vec<Verified>, Error> {
        let source = self.load()?;
        self.reading(async |db: &mut Db| Ok(runner::verify(db, &source).await?))
            .await
    }

    /// The run options a request means under these settings.
    pub fn run_options(&self, req: &RunRequest) -> RunOptions {
        let s = &self.settings;
        RunOptions {
            lock_timeout: s.lock_timeout,
            single_transaction: req.single_transaction,
            allow_out_of_order: req.allow_out_of_order,
            ignore_missing: req.ignore_missing,
            backup_dir: req.backup.unwrap_or(s.backup).then(|| s.backup_dir.clone()),
            restore_on_failure: req.restore_on_failure.unwrap_or(s.restore_on_failure),
            max_duration: req.max_duration,
            parallel: req.parallel.max(1),
            slices: req.slices,
            worker: false,
            cancel: CancelToken::new(),
            ignore_other_history: req.ignore_other_history,
            every_statement: req.every_statement,
            collections: Default::default(),
        }
    }

    /// What `req` would do, with the exact SQL; changes nothing (a data
    /// migration's first batch runs in a transaction that is rolled back).
    pub async fn plan(&self, req: &RunRequest) -> Result<Vec<PlannedStep>, Error> {
        let source = self.load()?;
        let mut opts = self.run_options(req);
        opts.collections = self.doc_collections(&source)?;
        self.reading(async |db: &mut Db| {
            Ok(runner::preview(db, &source, req.target.clone(), &opts).await?)
        })
        .await
    }

    /// Joins the data migration another process's run is walking (`instar up
    /// --worker`): waits up to the lock timeout for one, walks the slices it
    /// can claim (`req.parallel` at once), and leaves; the run's owner records
    /// the migration. Refused when the files disagree with the history or the
    /// run's script.
    pub async fn join(
        &self,
        req: &RunRequest,
        cancel: CancelToken,
        sink: &mut dyn EventSink,
    ) -> Result<runner::Joined, Error> {
        let source = self.load()?;
        let mut opts = self.run_options(req);
        opts.cancel = cancel;
        opts.collections = self.doc_collections(&source)?;
        let mut db = self.connect().await?;
        let r = runner::join(&mut db, &source, &opts, sink).await;
        let closed = db.close().await;
        let joined = r?;
        closed?;
        Ok(joined)
    }

    /// Runs `req` here, reporting events to `sink`; its history rows carry `run_id`.
    pub async fn run(
        &self,
        req: &RunRequest,
        run_id: &str,
        cancel: CancelToken,
        sink: &mut dyn EventSink,
    ) -> Result<Report, RunFailure> {
        let mut report = Report::default();
        let fail = |error: Error, report: Report| RunFailure { error, report };
        let source = match self.load() {
            Ok(s) => s,
            Err(e) => return Err(fail(e, report)),
        };
        let mut opts = self.run_options(req);
        opts.cancel = cancel;
        match self.doc_collections(&source) {
            Ok(c) => opts.collections = c,
            Err(e) => return Err(fail(e, report)),
        }
        let mut db = match self.connect().await {
            Ok(db) => db,
            Err(e) => return Err(fail(e, report)),
        };
        db.set_run_id(run_id);
        let r = runner::run_into(
            &mut db,
            &source,
            req.target.clone(),
            &opts,
            sink,
            &mut report,
        )
        .await;
        let closed = db.close().await;
        match (r, closed) {
            (Ok(()), Ok(())) => Ok(report),
            (Err(e), _) | (Ok(()), Err(e)) => Err(fail(e.into(), report)),
        }
    }

    /// Starts `req` as a task on the current Tokio runtime (which may be
    /// multi-threaded) and returns its handle at once.
    pub fn start(&self, req: RunRequest) -> RunHandle {
        let id = instar_db::new_run_id();
        let hub = Hub::new(id.clone());
        let cancel = CancelToken::new();
        let service = self.clone();
        let (task_hub, task_cancel, task_id) = (Arc::clone(&hub), cancel.clone(), id.clone());
        let task = tokio::spawn(async move {
            // Subscribers' streams end when the run does, even if it panics.
            let _closing = task_hub.closer();
            let mut sink = task_hub.sink();
            service.run(&req, &task_id, task_cancel, &mut sink).await
        });
        RunHandle {
            id,
            hub,
            cancel,
            task,
        }
    }

    /// Records in Instar's history the migrations another tool (diesel, sqlx,
    /// Flyway …) applied, after matching its history to the files; its table is
    /// only read. Refused, with nothing written, on a failed entry, a version
    /// without a file or an edited file.
    pub async fn adopt(
        &self,
        opts: &instar_db::adopt::AdoptOptions,
    ) -> Result<instar_db::adopt::Adoption, Error> {
        let source = self.load()?;
        let timeout = self.settings.lock_timeout;
        if opts.dry_run {
            return self
                .reading(async |db: &mut Db| {
                    Ok(instar_db::adopt::adopt(db, &source, opts, timeout).await?)
                })
                .await;
        }
        self.with_db(async |db: &mut Db| {
            Ok(instar_db::adopt::adopt(db, &source, opts, timeout).await?)
        })
        .await
    }

    /// Records that the database already has every migration up to `version`.
    pub async fn baseline(&self, version: &str, note: Option<String>) -> Result<(), Error> {
        let source = self.load()?;
        // Refused before connecting: an unknown version creates no database.
        if source.find(version).is_none() {
            return Err(instar_core::Error::UnknownVersion(version.into()).into());
        }
        let timeout = self.settings.lock_timeout;
        self.with_db(async |db: &mut Db| {
            Ok(runner::baseline(db, &source, version, note, timeout).await?)
        })
        .await
    }

    /// Clears dirty marks, marks a migration applied, or accepts edited checksums.
    pub async fn repair(&self, opts: &RepairOptions) -> Result<Vec<String>, Error> {
        let source = self.load()?;
        // No SQLite file yet: nothing is dirty or edited, and nothing is created.
        let url = instar_db::url::DbUrl::parse(&self.settings.db.url)?;
        if opts.mark_applied.is_none() && url.sqlite_path.as_ref().is_some_and(|p| !p.exists()) {
            return Ok(Vec::new());
        }
        let timeout = self.settings.lock_timeout;
        self.with_db(async |db: &mut Db| Ok(runner::repair(db, &source, opts, timeout).await?))
            .await
    }

    /// Takes a backup now.
    pub async fn backup(&self) -> Result<Option<BackupInfo>, Error> {
        let dir = self.settings.backup_dir.clone();
        self.with_db(
            async |db: &mut Db| Ok(backup::take(db, &dir, "manual (instar backup)").await?),
        )
        .await
    }

    /// Every backup, oldest first.
    pub fn backups(&self) -> Result<Vec<BackupInfo>, Error> {
        Ok(backup::list(&self.settings.backup_dir)?)
    }

    /// Deletes backups older than `age`; returns what it deleted.
    ///
    /// # Warning
    /// Deleted backups are gone for good.
    pub fn prune_backups(&self, age: Duration) -> Result<Vec<BackupInfo>, Error> {
        Ok(backup::prune(&self.settings.backup_dir, age)?)
    }

    /// Restores backup `id` over the database, holding the run lock for the
    /// whole restore on the session that took it, so no run starts meanwhile.
    ///
    /// # Warning
    /// Everything written to the database since the backup is lost, by every client.
    pub async fn dangerous_restore(&self, id: &str) -> Result<backup::Restored, Error> {
        let dir = self.settings.backup_dir.clone();
        // Refuse an unknown id before touching the database.
        backup::find(&dir, id)?;
        self.with_lock(async |db: &mut Db| Ok(backup::restore(db, &dir, id).await?))
            .await
    }
}

struct LazyLoader<'a>(&'a Service);

impl instar_lens::wasm::Loader for LazyLoader<'_> {
    fn load(&self, path: &std::path::Path) -> Result<Arc<dyn instar_lens::wasm::Stage>, String> {
        let host = self.0.wasm_host().map_err(|e| e.to_string())?;
        instar_lens::wasm::Loader::load(&*host, path)
    }
}
