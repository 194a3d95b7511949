//! One function per command: arguments → the service → rendering → exit code.
//! No command orchestrates anything itself; everything goes through `instar_service`.

use std::io::Write as _;
use std::path::Path;

use anyhow::{bail, Result};
use instar_core::plan::Target;
use instar_db::runner::PlannedStep;
use instar_service::{settings, Overrides, RunRequest, Service, Settings};

use crate::args::{Cli, Command, Global, RunArgs};
use crate::render::Out;

mod admin;
mod fleet;
mod kv;
mod lens;
mod lint;
mod online;
mod ops;
mod scaffold;
mod spanner;
mod status;

pub async fn run(cli: Cli, out: &mut Out) -> Result<i32> {
    let g = &cli.global;
    let cwd = std::env::current_dir()?;
    if let Command::Init {
        dir,
        example,
        up,
        layout,
    } = &cli.command
    {
        scaffold::init(dir, *example, *layout, out)?;
        if !*up {
            return Ok(0);
        }
        // The new project's own settings, as if run from inside it.
        let service = Service::new(resolve(g, &cwd.join(dir))?);
        return execute(&service, Target::Up { to: None }, &RunArgs::default(), out).await;
    }
    // A lens file alone needs no database; the project's [wasm] limits apply
    // when there is a project (its defaults otherwise).
    if let Command::Lens { action } = &cli.command {
        let in_project = g.config.is_some() || cwd.join("instar.toml").exists();
        // A project's config must be right ([wasm] limits apply); outside
        // one, the defaults, and nothing written (no compiled-code cache).
        let mut settings = match resolve(g, &cwd) {
            Ok(s) => s,
            Err(e) if in_project => return Err(e),
            Err(_) => instar_service::Settings::new("sqlite::memory:", &cwd),
        };
        if !in_project {
            settings.wasm_cache = None;
        }
        let service = Service::new(settings);
        return lens::run(action, &service.lens_loader(), out);
    }
    if g.format == crate::args::Format::Sarif && !matches!(cli.command, Command::Lint { .. }) {
        bail!("--format sarif is for `instar lint`; use --format json");
    }
    let service = Service::new(resolve(g, &cwd)?);
    let s = &service;
    if s.is_kv() && !matches!(cli.command, Command::New { .. }) {
        return kv::run(s, cli.command, out);
    }
    if s.is_spanner() && !matches!(cli.command, Command::New { .. }) {
        return spanner::run(s, cli.command, out);
    }
    if out.verbose && !matches!(cli.command, Command::New { .. } | Command::Backups { .. }) {
        // What the folder holds that is not a migration (read once more, only with -v).
        if let Ok(source) = s.load() {
            for n in &source.notes {
                out.note(n);
            }
        }
    }
    match cli.command {
        Command::Init { .. } | Command::Lens { .. } => unreachable!("handled above"),
        Command::New {
            name,
            reversible,
            data,
            layout,
        } => scaffold::new(s.settings(), &name.join("_"), reversible, data, layout, out),
        Command::Status { require, check } => {
            status::status(s, require.as_deref(), check, out).await
        }
        Command::Plan {
            to,
            down,
            steps,
            all,
            ignore_other_history,
        } => {
            if (steps.is_some() || all) && !down {
                bail!("--steps and --all count migrations to revert: they go with --down");
            }
            let target = if down {
                down_target(to, steps, all)
            } else {
                Target::Up { to }
            };
            let req = RunRequest {
                ignore_other_history,
                ..RunRequest::new(target)
            };
            plan(s, req, out).await
        }
        Command::Up { to, run } => execute(s, Target::Up { to }, &run, out).await,
        Command::Down {
            to,
            steps,
            all,
            run,
        } => execute(s, down_target(to, steps, all), &run, out).await,
        Command::Docs { action } => docs(s, &action, out).await,
        Command::Serve {
            listen,
            token_file,
            require_token_for_reads,
        } => {
            serve(
                service,
                &listen,
                token_file.as_deref(),
                require_token_for_reads,
                out,
            )
            .await
        }
        Command::Adopt {
            from,
            dry_run,
            no_checksums,
        } => admin::adopt(s, from, dry_run, no_checksums, out).await,
        Command::Lint { offline, rules } => lint::lint(s, offline, rules, out).await,
        Command::Compat { action } => lint::compat(s, action, out).await,
        Command::Fleet { action } => fleet::run(s, action, out).await,
        Command::Audit { sample, exact } => ops::audit(s, sample, exact, out).await,
        Command::Squash { to, dry_run } => ops::squash(s, &to, dry_run, out).await,
        Command::Copy { args } => ops::copy(s, args, out).await,
        Command::Test {
            filter,
            keep,
            junit,
        } => ops::test(s, filter, keep, junit.as_deref(), out).await,
        Command::Start {
            batch,
            parallel,
            max_duration,
            dry_run,
        } => online::start(s, batch, parallel, max_duration.as_deref(), dry_run, out).await,
        Command::Complete { force } => online::complete(s, force, out).await,
        Command::Rollback => online::rollback(s, out).await,
        Command::ConnectSql { at } => online::connect_sql(s, &at, out).await,
        Command::Unlock { force } => admin::unlock(s, force, out).await,
        Command::History => status::history(s, out).await,
        Command::Validate => status::validate(s, out).await,
        Command::Verify => status::verify(s, out).await,
        Command::Baseline { version, note } => admin::baseline(s, &version, note, out).await,
        Command::Repair {
            accept_checksums,
            mark_applied,
            statement_done,
            reason,
        } => {
            let opts = instar_db::runner::RepairOptions {
                accept_checksums,
                mark_applied,
                statement_done,
                reason,
            };
            admin::repair(s, &opts, out).await
        }
        Command::Backup => admin::backup(s, out).await,
        Command::Backups { prune, older_than } => admin::backups(s, prune, &older_than, out),
        Command::Restore { id, force } => admin::restore(s, &id, force, out).await,
    }
}

async fn docs(service: &Service, action: &crate::args::DocsCommand, out: &mut Out) -> Result<i32> {
    use crate::args::DocsCommand;
    match action {
        DocsCommand::Get {
            collection,
            key,
            at,
        } => {
            let docs = service.documents(collection)?;
            Ok(print_document(
                collection,
                key,
                docs.get(key, at.as_deref()).await?,
            ))
        }
        DocsCommand::List {
            collection,
            at,
            limit,
            after,
        } => {
            let docs = service.documents(collection)?;
            print_documents(docs.list(at.as_deref(), after.as_deref(), *limit).await?);
            Ok(0)
        }
        DocsCommand::Migrate {
            collection,
            to,
            batch,
            parallel,
            max_duration,
            on_error,
            no_pushdown,
            dry_run,
        } => {
            let docs = service.documents(collection)?;
            let o = instar_service::MoveOptions {
                to: to.clone(),
                batch_size: *batch,
                parallel: (*parallel).max(1),
                max_duration: max_duration_arg(max_duration.as_deref())?,
                on_error: on_error_arg(on_error)?,
                pushdown: !*no_pushdown,
                ..Default::default()
            };
            if *dry_run {
                let e = docs.migrate_dry_run(&o).await?;
                if out.human() {
                    write_estimate(&mut std::io::stdout(), &e)?;
                }
                out.json(&serde_json::json!({ "dry_run": e }));
                return Ok(0);
            }
            let cancel = o.cancel.clone();
            let report = {
                let run = docs.migrate(&o, &mut *out);
                tokio::pin!(run);
                let ctrl_c = tokio::signal::ctrl_c();
                tokio::pin!(ctrl_c);
                let mut interrupted = false;
                loop {
                    tokio::select! {
                        r = &mut run => break r?,
                        _ = &mut ctrl_c, if !interrupted => {
                            interrupted = true;
                            eprintln!("interrupted: stopping after the current batch (its checkpoint is kept)…");
                            cancel.cancel();
                        }
                    }
                }
            };
            let how = match report.end {
                instar_db::data::MoveEnd::Done => "done: every document of the key range is at",
                instar_db::data::MoveEnd::Paused => {
                    "paused at a checkpoint (run it again to go on) on the way to"
                }
            };
            out.line(format!(
                "{collection}: {} of {} documents moved in {} batches; {how} {} (one written meanwhile at another version is moved by the next run)",
                report.documents_moved, report.documents_total, report.batches, report.to
            ));
            out.json(&serde_json::json!({ "migrated": report }));
            Ok(0)
        }
        DocsCommand::Put {
            collection,
            key,
            at,
        } => {
            let docs = service.documents(collection)?;
            let doc = stdin_document()?;
            docs.put(key, &doc, at.as_deref()).await?;
            out.line(format!(
                "stored {collection} {key} at {} (written at {})",
                docs.current(),
                at.as_deref().unwrap_or(docs.current())
            ));
            Ok(0)
        }
    }
}

/// `docs get`: the document on stdout (exit 0), or what is missing on stderr (exit 1).
fn print_document(collection: &str, key: &str, doc: Option<serde_json::Value>) -> i32 {
    match doc {
        Some(d) => {
            println!("{d}");
            0
        }
        None => {
            eprintln!("collection {collection} has no document {key}");
            1
        }
    }
}

/// `docs list`: JSON lines `{"key", "doc"}`.
fn print_documents(rows: Vec<(String, serde_json::Value)>) {
    for (key, doc) in rows {
        println!("{}", serde_json::json!({ "key": key, "doc": doc }));
    }
}

/// `--max-duration D`.
fn max_duration_arg(d: Option<&str>) -> Result<Option<std::time::Duration>> {
    d.map(|d| instar_core::duration::parse(d).map_err(|e| anyhow::anyhow!("--max-duration: {e}")))
        .transpose()
}

/// `--on-error stop|skip`.
fn on_error_arg(v: &str) -> Result<instar_core::meta::OnError> {
    match v {
        "stop" => Ok(instar_core::meta::OnError::Stop),
        "skip" => Ok(instar_core::meta::OnError::Skip),
        other => bail!("--on-error {other:?}: use stop or skip"),
    }
}

/// The JSON document on standard input (`docs put`).
fn stdin_document() -> Result<serde_json::Value> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("stdin:{}: not JSON: {e}", e.line()))
}

/// `backups --prune --older-than D`: the age.
fn prune_age(older_than: &str) -> Result<std::time::Duration> {
    instar_core::duration::parse(older_than).map_err(|e| anyhow::anyhow!("--older-than: {e}"))
}

/// `backups [--prune --older-than AGE]` for any kind of backup: deletes
/// those older than AGE with `--prune` (`older_than` set), else lists them,
/// one `line` each.
fn backups_or_prune<T: serde::Serialize, E: Into<anyhow::Error>>(
    folder: &Path,
    older_than: Option<&str>,
    prune: impl FnOnce(std::time::Duration) -> Result<Vec<T>, E>,
    list: impl FnOnce() -> Result<Vec<T>, E>,
    line: impl Fn(&T) -> String,
    out: &Out,
) -> Result<i32> {
    if let Some(older_than) = older_than {
        let removed = prune(prune_age(older_than)?).map_err(Into::into)?;
        out.line(format!(
            "{} backup(s) older than {older_than} deleted",
            removed.len()
        ));
        out.json(&removed);
        return Ok(0);
    }
    let list = list().map_err(Into::into)?;
    if list.is_empty() {
        out.line(format!("no backups in {}", folder.display()));
    }
    for b in &list {
        out.line(line(b));
    }
    out.json(&list);
    Ok(0)
}

/// Flags → settings, through the service's one resolution.
fn resolve(g: &Global, cwd: &Path) -> Result<Settings> {
    let overrides = Overrides {
        database: g.database.clone(),
        migrations: g.migrations.clone(),
        config: g.config.clone(),
        init_sql: g.init_sql.clone(),
        lock_timeout: g.lock_timeout.clone(),
        restore_on_failure: None,
        connect_timeout: g.connect_timeout.clone(),
    };
    Ok(settings::resolve(&overrides, &settings::process_env, cwd)?)
}

/// `down --all` is `down --to 0`: the planner reverts everything after "0".
fn down_target(to: Option<String>, steps: Option<usize>, all: bool) -> Target {
    let to = if all { Some("0".to_string()) } else { to };
    Target::Down { to, steps }
}

fn request(target: Target, args: &RunArgs) -> Result<RunRequest> {
    Ok(RunRequest {
        single_transaction: args.single_transaction,
        allow_out_of_order: args.allow_out_of_order,
        ignore_missing: args.ignore_missing,
        backup: args.no_backup.then_some(false),
        restore_on_failure: args.restore_on_failure.then_some(true),
        max_duration: args
            .max_duration
            .as_deref()
            .map(|d| {
                instar_core::duration::parse(d).map_err(|e| anyhow::anyhow!("--max-duration: {e}"))
            })
            .transpose()?,
        parallel: args.parallel.max(1),
        slices: args.slices,
        ignore_other_history: args.ignore_other_history,
        ..RunRequest::new(target)
    })
}

fn print_plan(steps: &[PlannedStep], out: &Out) {
    /// Serialised as it is borrowed: a plan of a large file is not copied into a JSON tree.
    #[derive(serde::Serialize)]
    struct Steps<'a> {
        steps: &'a [PlannedStep],
    }
    out.json(&Steps { steps });
    if !out.human() || out.quiet {
        return;
    }
    // One buffered writer: a plan may hold hundreds of thousands of statements.
    let mut w = std::io::BufWriter::new(std::io::stdout().lock());
    // A closed stdout (`instar plan | head`) ends the listing; nothing else is lost.
    let _ = write_plan(&mut w, steps).and_then(|()| w.flush());
}

fn write_plan(w: &mut impl std::io::Write, steps: &[PlannedStep]) -> std::io::Result<()> {
    if steps.is_empty() {
        writeln!(w, "-- nothing to do")?;
    }
    for s in steps {
        let tx = if s.transaction {
            "in a transaction"
        } else {
            "statement by statement, no transaction"
        };
        writeln!(
            w,
            "-- {} {} {} ({}, {tx})",
            s.direction.as_str(),
            s.version,
            s.name,
            s.path.display()
        )?;
        if let Some(e) = &s.estimate {
            write_estimate(w, e)?;
        }
        if let Some(why) = &s.sent_whole {
            writeln!(w, "-- sent whole: {why}")?;
        }
        for warning in &s.warnings {
            writeln!(w, "-- WARNING: {warning}")?;
        }
        for note in &s.notes {
            writeln!(w, "-- {note}")?;
        }
        if s.resume_from > 0 {
            writeln!(
                w,
                "-- resuming: statements 1-{} already applied",
                s.resume_from
            )?;
        }
        for st in s.statements.iter().skip(s.resume_from) {
            writeln!(w, "-- line {}\n{};", st.line, st.sql)?;
        }
        writeln!(w)?;
    }
    Ok(())
}

/// A batched step's dry run: its size, its first batch, and for documents how
/// each version gets to the target.
fn write_estimate(
    w: &mut impl std::io::Write,
    e: &instar_db::data::Estimate,
) -> std::io::Result<()> {
    writeln!(
        w,
        "-- data: {} rows in {} batches; the first batch touched {} rows in {} ms (rolled back); estimate {:.1} s plus a commit per batch",
        e.rows_total,
        e.batches,
        e.first_batch_rows,
        e.batch_ms,
        e.estimated_ms as f64 / 1000.0
    )?;
    if let Some(d) = &e.documents {
        writeln!(w, "-- documents of {} move to {}:", d.collection, d.to)?;
        for m in &d.moves {
            let how = if m.sql.is_some() {
                "pushed down to SQL, one UPDATE per batch"
            } else {
                "in process"
            };
            writeln!(w, "--   from {}: {how}; {}", m.from, m.in_process)?;
            if let Some(sql) = &m.sql {
                writeln!(w, "{sql};")?;
            }
        }
    }
    Ok(())
}

async fn plan(service: &Service, req: RunRequest, out: &Out) -> Result<i32> {
    let steps = service.plan(&req).await?;
    print_plan(&steps, out);
    lint::summary(service, &steps, out).await;
    Ok(0)
}

/// `up` / `down`: the run is started on the service, its events rendered as
/// they arrive; Ctrl-C asks it to stop at its next safe point.
async fn execute(service: &Service, target: Target, args: &RunArgs, out: &mut Out) -> Result<i32> {
    let mut req = request(target, args)?;
    req.every_statement = out.verbose;
    if args.dry_run {
        return plan(service, req, out).await;
    }
    if args.worker {
        return worker(service, &req, out).await;
    }
    let handle = service.start(req);
    follow(
        handle.subscribe(),
        &handle.cancel_token(),
        "stopping at the next safe point (a statement boundary or a batch checkpoint)",
        |e| out.stamped(e),
    )
    .await;
    let report = handle.wait().await.map_err(|f| f.error)?;
    if report.cancelled {
        out.line("cancelled: stopped at a safe point; run `instar up` again to continue");
    } else if let Some(v) = &report.paused {
        out.line(format!("data migration {v} stopped at a checkpoint: the --max-duration budget is spent; run `instar up` again to continue"));
    } else if report.migrations.is_empty() {
        out.line("nothing to do: the database is up to date");
    }
    out.json(&serde_json::json!({ "result": report }));
    Ok(0)
}

/// Shows a run's (or a rollout's) events until its stream ends; the first
/// Ctrl-C cancels it (`what` says what happens then), a second one is ignored.
pub(crate) async fn follow<E: Clone>(
    mut events: instar_service::EventStream<E>,
    cancel: &instar_db::CancelToken,
    what: &str,
    mut show: impl FnMut(&instar_core::event::Stamped<E>),
) {
    let mut interrupted = false;
    // One signal listener for the whole run (not one per event).
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            e = events.next() => match e {
                Some(e) => show(&e),
                None => break,
            },
            _ = &mut ctrl_c, if !interrupted => {
                interrupted = true;
                eprintln!("interrupted: {what}…");
                cancel.cancel();
            }
        }
    }
}

/// Renders a worker's events as they come (a worker has no run of its own).
struct WorkerSink<'o> {
    out: &'o mut Out,
    run_id: String,
    seq: u64,
}

impl instar_core::event::EventSink for WorkerSink<'_> {
    fn event(&mut self, event: &instar_core::event::Event) {
        self.seq += 1;
        self.out.stamped(&instar_core::event::Stamped {
            run_id: self.run_id.clone(),
            seq: self.seq,
            at: instar_core::time::now_rfc3339(),
            event: event.clone(),
        });
    }
}

/// `instar up --worker`: joins the data migration another run is walking.
async fn worker(service: &Service, req: &RunRequest, out: &mut Out) -> Result<i32> {
    if !matches!(req.target, Target::Up { to: None }) {
        bail!("--worker joins the data migration in progress: it takes no --to");
    }
    let cancel = instar_db::CancelToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted: stopping at the next batch checkpoint…");
            stop.cancel();
        }
    });
    let mut sink = WorkerSink {
        out,
        run_id: instar_db::new_run_id(),
        seq: 0,
    };
    let joined = service.join(req, cancel, &mut sink).await?;
    match (&joined.version, &joined.reason) {
        (Some(v), _) => out.line(format!(
            "worker done: walked what it could claim of {v}; the run that started it records it applied"
        )),
        (None, Some(why)) => out.line(format!("nothing to join: {why}")),
        (None, None) => {}
    }
    out.json(&serde_json::json!({ "result": joined }));
    Ok(0)
}

/// `instar serve`: the HTTP API and console until Ctrl-C.
async fn serve(
    service: Service,
    listen: &str,
    token_file: Option<&std::path::Path>,
    require_token_for_reads: bool,
    out: &Out,
) -> Result<i32> {
    let listen: std::net::SocketAddr = listen
        .parse()
        .map_err(|e| anyhow::anyhow!("--listen {listen:?}: {e} (e.g. 127.0.0.1:7070)"))?;
    let token = match token_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| anyhow::anyhow!("--token-file {}: {e}", f.display()))?
                .trim()
                .to_string(),
        ),
        None => std::env::var("INSTAR_SERVE_TOKEN").ok(),
    };
    let config = instar_server::Config {
        listen,
        token,
        require_token_for_reads,
        ..instar_server::Config::default()
    };
    let listener = instar_server::bind(&config).await?;
    let addr = listener.local_addr()?;
    out.line(format!(
        "serving {} on http://{addr}/ (API: http://{addr}/openapi.json){}",
        instar_db::url::redact(&service.settings().db.url),
        if config.token.is_some() {
            ""
        } else {
            "; no token: read-only"
        }
    ));
    out.json(&serde_json::json!({"listening": addr.to_string()}));
    // One JSON line per request on stderr (structured: method, path, status, ms).
    let _ = tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .try_init();
    let app = instar_server::App::new(service, config);
    instar_server::serve(listener, app, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(0)
}
