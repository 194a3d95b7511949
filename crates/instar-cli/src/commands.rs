//! One function per command; all of them go through `instar_db::runner`.

use anyhow::{bail, Context, Result};
use instar_core::plan::{Standing, Target};
use instar_core::Source;
use instar_db::runner::{self, PlannedStep, RepairOptions, RunOptions};
use instar_db::Db;

use crate::args::{Cli, Command, RunArgs};
use crate::config::{self, Settings};
use crate::render::Out;

mod admin;
mod scaffold;

pub async fn run(cli: Cli) -> Result<i32> {
    let g = &cli.global;
    let mut out = Out::new(g.format, g.quiet, g.verbose);
    if let Command::Init {
        dir,
        example,
        up,
        layout,
    } = &cli.command
    {
        scaffold::init(dir, *example, *layout, &out)?;
        if !*up {
            return Ok(0);
        }
        std::env::set_current_dir(dir)
            .with_context(|| format!("cannot enter {}", dir.display()))?;
    }
    let settings = config::resolve(g)?;
    match cli.command {
        Command::Init { .. } => up(&settings, None, &RunArgs::default(), &mut out).await,
        Command::New {
            name,
            reversible,
            data,
            layout,
        } => scaffold::new(&settings, &name.join("_"), reversible, data, layout, &out),
        Command::Status { require, check } => {
            status(&settings, require.as_deref(), check, &out).await
        }
        Command::Plan { to, down, steps } => {
            let target = if down {
                Target::Down { to, steps }
            } else {
                Target::Up { to }
            };
            plan(&settings, target, &out).await
        }
        Command::Up { to, run } => up(&settings, to, &run, &mut out).await,
        Command::Down { to, steps, run } => down(&settings, to, steps, &run, &mut out).await,
        Command::History => history(&settings, &out).await,
        Command::Validate => validate(&settings, &out).await,
        Command::Verify => verify(&settings, &out).await,
        Command::Baseline { version, note } => {
            admin::baseline(&settings, &version, note, &out).await
        }
        Command::Repair {
            accept_checksums,
            mark_applied,
            reason,
        } => {
            let opts = RepairOptions {
                accept_checksums,
                mark_applied,
                reason,
            };
            admin::repair(&settings, &opts, &out).await
        }
        Command::Backup => admin::backup(&settings, &out).await,
        Command::Backups { prune, older_than } => {
            admin::backups(&settings, prune, &older_than, &out)
        }
        Command::Restore { id, force } => admin::restore(&settings, &id, force, &out).await,
    }
}

pub(crate) fn read_source(settings: &Settings, out: &Out) -> Result<Source> {
    if !settings.migrations.is_dir() {
        bail!(
            "migrations folder {} not found; create it with `instar init`, or point --migrations at yours",
            settings.migrations.display()
        );
    }
    let source = instar_core::source::read_dir(&settings.migrations, settings.layout)?;
    for n in &source.notes {
        out.note(n);
    }
    Ok(source)
}

pub(crate) async fn connect(settings: &Settings) -> Result<Db> {
    Ok(Db::connect(&settings.db).await?)
}

fn run_options(settings: &Settings, args: &RunArgs) -> Result<RunOptions> {
    Ok(RunOptions {
        parallel: args.parallel.max(1),
        max_duration: args
            .max_duration
            .as_deref()
            .map(config::parse_duration)
            .transpose()?,
        lock_timeout: settings.lock_timeout,
        single_transaction: args.single_transaction,
        allow_out_of_order: args.allow_out_of_order,
        ignore_missing: args.ignore_missing,
        backup_dir: (settings.backup && !args.no_backup).then(|| settings.backup_dir.clone()),
        restore_on_failure: !args.no_restore,
    })
}

/// Everything `status` shows.
struct StatusView {
    st: instar_core::plan::Status,
    state: instar_core::history::State,
    checkpoints: Vec<instar_db::data::Checkpoint>,
    skipped: Vec<(String, i64)>,
    pending: usize,
}

async fn status(settings: &Settings, require: Option<&str>, check: bool, out: &Out) -> Result<i32> {
    let source = read_source(settings, out)?;
    let mut db = connect(settings).await?;
    let (st, state) = runner::status(&mut db, &source).await?;
    let checkpoints = instar_db::data::checkpoints(&mut db).await?;
    let skipped = instar_db::data::skipped_rows(&mut db).await?;
    db.close().await?;
    let pending = st
        .migrations
        .iter()
        .filter(|m| m.standing == Standing::Pending)
        .count();
    let v = StatusView {
        st,
        state,
        checkpoints,
        skipped,
        pending,
    };
    let unmet = require
        .map(|r| unmet_requirement(&v.st, r))
        .transpose()?
        .flatten();
    if out.human() && !out.quiet {
        print_status(settings, &source, &v);
    }
    if let Some(u) = &unmet {
        eprintln!("{u}");
    }
    out.json(&serde_json::json!({
        "schema_version": v.st.schema_version,
        "migrations": v.st.migrations,
        "problems": v.st.problems,
        "pending": v.pending,
        "baseline": v.state.baseline,
        "dirty": v.state.dirty.values().collect::<Vec<_>>(),
        "data_in_progress": v.checkpoints,
        "skipped_rows": v.skipped.iter().map(|(v, n)| serde_json::json!({ "version": v, "rows": n })).collect::<Vec<_>>(),
        "requirement_met": unmet.is_none(),
    }));
    let work_or_problems = v.pending > 0 || !v.st.problems.is_empty();
    Ok(if unmet.is_some() || (check && work_or_problems) {
        1
    } else {
        0
    })
}

/// `None` when the schema version satisfies `req`, else the message saying it does not.
fn unmet_requirement(st: &instar_core::plan::Status, req: &str) -> Result<Option<String>> {
    let parsed = semver::VersionReq::parse(req)
        .with_context(|| format!("--require {req:?} is not a semver requirement"))?;
    let ok = st
        .schema_version
        .as_deref()
        .and_then(|v| semver::Version::parse(v).ok())
        .is_some_and(|v| parsed.matches(&v));
    Ok((!ok).then(|| {
        format!(
            "schema version {} does not satisfy {parsed}",
            st.schema_version.as_deref().unwrap_or("(none recorded)")
        )
    }))
}

fn print_status(settings: &Settings, source: &Source, v: &StatusView) {
    println!(
        "database: {}  schema version: {}  layout: {}",
        instar_db::url::redact(&settings.db.url),
        v.st.schema_version.as_deref().unwrap_or("-"),
        source.layout.map_or("-".to_string(), |l| l.to_string())
    );
    for m in &v.st.migrations {
        let standing = format!("{:?}", m.standing).to_lowercase();
        println!(
            "  {standing:<9} {:<24} {:<30} {}",
            m.version,
            m.name,
            m.applied_at.as_deref().unwrap_or("")
        );
    }
    let applied =
        v.st.migrations
            .iter()
            .filter(|m| m.standing == Standing::Applied)
            .count();
    println!("{applied} applied, {} pending", v.pending);
    for d in v.state.dirty.values() {
        println!(
            "dirty: {} stopped after {} of {} statements{}; `instar {}` resumes it once the cause is fixed, `instar repair` clears it",
            d.version,
            d.statements_applied,
            d.statements_total,
            d.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default(),
            d.direction.as_str()
        );
    }
    for c in &v.checkpoints {
        println!(
            "in progress: data migration {} ({}, slice {}): {} of {} rows in {} batches, last key {}, {} rows skipped; `instar up` resumes from the checkpoint",
            c.version,
            c.direction,
            c.slice,
            c.rows_done,
            c.rows_total,
            c.batches,
            c.last_key.as_deref().unwrap_or("(none yet)"),
            c.errors
        );
    }
    for (version, n) in &v.skipped {
        println!("skipped: data migration {version} recorded {n} failing row(s) in instar_errors (key and error each)");
    }
    for p in &v.st.problems {
        println!("problem: {p}");
    }
}

async fn validate(settings: &Settings, out: &Out) -> Result<i32> {
    let source = read_source(settings, out)?;
    let mut db = connect(settings).await?;
    let (st, _) = runner::status(&mut db, &source).await?;
    db.close().await?;
    for p in &st.problems {
        out.line(format!("problem: {p}"));
    }
    if st.problems.is_empty() {
        out.line(format!(
            "{} migrations valid; history consistent",
            source.migrations.len()
        ));
    }
    out.json(&serde_json::json!({ "valid": st.problems.is_empty(), "problems": st.problems }));
    Ok(if st.problems.is_empty() { 0 } else { 1 })
}

async fn verify(settings: &Settings, out: &Out) -> Result<i32> {
    let source = read_source(settings, out)?;
    let mut db = connect(settings).await?;
    let results = runner::verify(&mut db, &source).await?;
    db.close().await?;
    for r in &results {
        let mark = if r.ok { "ok    " } else { "FAILED" };
        out.line(format!(
            "{mark} {} {} (returned {})",
            r.version, r.check, r.result
        ));
    }
    let failed = results.iter().filter(|r| !r.ok).count();
    out.line(format!("{} check(s), {failed} failed", results.len()));
    out.json(&serde_json::json!({ "checks": results, "failed": failed }));
    Ok(if failed == 0 { 0 } else { 1 })
}

fn print_plan(steps: &[PlannedStep], out: &Out) {
    out.json(&serde_json::json!({ "steps": steps }));
    if !out.human() || out.quiet {
        return;
    }
    if steps.is_empty() {
        println!("-- nothing to do");
    }
    for s in steps {
        let tx = if s.transaction {
            "in a transaction"
        } else {
            "statement by statement, no transaction"
        };
        println!(
            "-- {} {} {} ({}, {tx})",
            s.direction.as_str(),
            s.version,
            s.name,
            s.path.display()
        );
        if let Some(e) = &s.estimate {
            println!(
                "-- data: {} rows in {} batches; the first batch touched {} rows in {} ms (rolled back); estimate {:.1} s plus a commit per batch",
                e.rows_total,
                e.batches,
                e.first_batch_rows,
                e.batch_ms,
                e.estimated_ms as f64 / 1000.0
            );
        }
        if let Some(why) = &s.sent_whole {
            println!("-- sent whole: {why}");
        }
        if s.resume_from > 0 {
            println!(
                "-- resuming: statements 1-{} already applied",
                s.resume_from
            );
        }
        for st in s.statements.iter().skip(s.resume_from) {
            println!("-- line {}\n{};", st.line, st.sql);
        }
        println!();
    }
}

async fn plan(settings: &Settings, target: Target, out: &Out) -> Result<i32> {
    let source = read_source(settings, out)?;
    let mut db = connect(settings).await?;
    let steps = runner::preview(
        &mut db,
        &source,
        target,
        &run_options(settings, &RunArgs::default())?,
    )
    .await?;
    db.close().await?;
    print_plan(&steps, out);
    Ok(0)
}

async fn execute(
    settings: &Settings,
    target: Target,
    args: &RunArgs,
    out: &mut Out,
) -> Result<i32> {
    let source = read_source(settings, out)?;
    let mut db = connect(settings).await?;
    let opts = run_options(settings, args)?;
    if args.dry_run {
        let steps = runner::preview(&mut db, &source, target, &opts).await?;
        db.close().await?;
        print_plan(&steps, out);
        return Ok(0);
    }
    let result = runner::run(&mut db, &source, target, &opts, out).await;
    let closed = db.close().await;
    let report = result?;
    closed?;
    if let Some(v) = &report.paused {
        out.line(format!("data migration {v} stopped at a checkpoint: the --max-duration budget is spent; run `instar up` again to continue"));
    } else if report.migrations.is_empty() {
        out.line("nothing to do: the database is up to date");
    }
    out.json(&serde_json::json!({ "result": report }));
    Ok(0)
}

async fn up(settings: &Settings, to: Option<String>, args: &RunArgs, out: &mut Out) -> Result<i32> {
    execute(settings, Target::Up { to }, args, out).await
}

async fn down(
    settings: &Settings,
    to: Option<String>,
    steps: Option<usize>,
    args: &RunArgs,
    out: &mut Out,
) -> Result<i32> {
    execute(settings, Target::Down { to, steps }, args, out).await
}

async fn history(settings: &Settings, out: &Out) -> Result<i32> {
    let mut db = connect(settings).await?;
    let rows = db.read_history().await?;
    db.close().await?;
    out.json(&rows);
    if out.human() && !out.quiet {
        if rows.is_empty() {
            println!("no history yet");
        }
        for r in &rows {
            let extra = r
                .error
                .as_deref()
                .or(r.note.as_deref())
                .map(|e| format!("  {e}"))
                .unwrap_or_default();
            println!(
                "{:>5} {}  {:<8} {:<4} {:<20} {:<24} {:>6} ms  {}/{} stmts  {}{extra}",
                r.id,
                r.started_at,
                r.event.as_str(),
                r.direction.as_str(),
                r.version,
                r.name,
                r.duration_ms.unwrap_or(0),
                r.statements_applied,
                r.statements_total,
                r.operator
            );
        }
    }
    Ok(0)
}
