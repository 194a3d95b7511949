//! The commands on a Cloud Spanner database (`spanner://` URL): the same
//! names and exit codes as on the other engines, through the service's
//! Spanner operations. They run synchronously (Spanner's REST API).

use std::io::IsTerminal as _;

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use instar_core::plan::{Standing, Target};
use instar_service::spanner::run::Event;
use instar_service::spanner::script;
use instar_service::{Service, SpannerRunOptions};

use crate::args::{Command, RunArgs};
use crate::render::Out;

pub fn run(s: &Service, command: Command, out: &mut Out) -> Result<i32> {
    match command {
        Command::Status { check, require } => {
            if require.is_some() {
                bail!("status --require is not available on Spanner yet; use status --check");
            }
            status(s, check, out)
        }
        Command::Validate => status(s, true, out),
        Command::History => history(s, out),
        Command::Plan { to, down, steps, all, .. } => {
            let target = if down { super::down_target(to, steps, all) } else { Target::Up { to } };
            plan(s, target, out)
        }
        Command::Up { to, run } => execute(s, Target::Up { to }, &run, out),
        Command::Down { to, steps, all, run } => execute(s, super::down_target(to, steps, all), &run, out),
        Command::Repair { accept_checksums, mark_applied, statement_done, reason } => {
            if accept_checksums || mark_applied.is_some() || statement_done.is_some() {
                bail!("on Spanner, repair clears dirty marks (and checkpoints of edited data migrations); --accept-checksums, --mark-applied and --statement-done are for SQL databases (Spanner's operations say which statements took effect, so none is uncertain)");
            }
            let done = s.spanner_repair(reason.as_deref())?;
            if done.is_empty() {
                out.line("nothing to repair: no migration is dirty");
            }
            for v in &done {
                out.line(format!("repaired {v}: pending again"));
            }
            out.json(&serde_json::json!({ "repaired": done }));
            Ok(0)
        }
        Command::Unlock { force } => {
            match s.spanner_unlock(force)? {
                None => out.line("no lease to break: the run lock is free"),
                Some(v) => out.line(format!("broke the lease of {} (expiring {}); an unlock row is in the history", v.holder, v.expires_at)),
            }
            Ok(0)
        }
        other => bail!(
            "{} is not available on Spanner; Instar runs status, validate, history, plan, up, down, repair and unlock there",
            format!("{other:?}").split([' ', '{', '(']).next().unwrap_or("this command").to_lowercase()
        ),
    }
}

fn status(s: &Service, check: bool, out: &Out) -> Result<i32> {
    let v = s.spanner_status()?;
    out.line(format!("database: {} (Cloud Spanner)", v.database));
    out.line(format!(
        "schema version: {}",
        v.schema_version.as_deref().unwrap_or("none")
    ));
    for m in &v.migrations {
        out.line(format!(
            "  {:<10} {}  {}",
            format!("{:?}", m.standing).to_lowercase(),
            m.version,
            m.name
        ));
    }
    for d in &v.dirty {
        out.line(format!(
            "  dirty {}: {} of {} statements took effect{}{}",
            d.version,
            d.applied,
            d.total,
            d.operation
                .as_deref()
                .map(|o| format!("; operation {o} not seen finishing (the next `up` asks Spanner)"))
                .unwrap_or_default(),
            d.error
                .as_deref()
                .map(|e| format!("; stopped by: {e}"))
                .unwrap_or_default()
        ));
    }
    for c in &v.checkpoints {
        out.line(format!(
            "  in progress {}: {} of {} rows, last key {}",
            c.version,
            c.rows_done,
            c.total,
            c.last_key.as_deref().unwrap_or("(none)")
        ));
    }
    match &v.lock {
        Some(l) => out.line(format!(
            "lock: lease held by {} ({}) until {}{}",
            l.holder,
            l.host.as_deref().unwrap_or("?"),
            l.expires_at,
            if l.expired {
                " (expired: `instar unlock` breaks it)"
            } else {
                ""
            }
        )),
        None => out.line("lock: free (lease)"),
    }
    for p in &v.problems {
        out.line(format!("problem: {p}"));
    }
    out.json(&v);
    let pending = v
        .migrations
        .iter()
        .any(|m| m.standing != Standing::Applied && m.standing != Standing::Baselined);
    Ok(i32::from(
        check && (pending || !v.problems.is_empty() || !v.dirty.is_empty()),
    ))
}

fn history(s: &Service, out: &Out) -> Result<i32> {
    let rows = s.spanner_history()?;
    for r in &rows {
        out.line(format!(
            "{:>4}  {:<8} {:<5} {}  {}  {}/{} statements  {}{}",
            r.id,
            r.event.as_str(),
            r.direction.as_str(),
            r.version,
            r.name,
            r.statements_applied,
            r.statements_total,
            r.started_at,
            r.error
                .as_deref()
                .map(|e| format!("  error: {e}"))
                .unwrap_or_default()
        ));
    }
    out.json(&rows);
    Ok(0)
}

fn plan(s: &Service, target: Target, out: &Out) -> Result<i32> {
    let steps = s.spanner_plan(target)?;
    if steps.is_empty() {
        out.line("nothing to do: the database is up to date");
    }
    let mut json = Vec::new();
    for (step, m) in &steps {
        let script = match step.direction {
            instar_core::history::Direction::Up => &m.up,
            instar_core::history::Direction::Down => m.down.as_ref().unwrap_or(&m.up),
        };
        out.line(format!(
            "-- {} {} {} ({})",
            step.direction.as_str(),
            step.version,
            m.name,
            script.path.display()
        ));
        let stmts = script::statements(&script.sql, &script.path)?;
        let mut groups = Vec::new();
        if m.meta.kind == Some(instar_core::meta::Kind::Data) {
            out.line(format!(
                "-- data migration: in keyset batches of {}",
                m.meta.data.as_ref().map_or(0, |d| d.batch_size)
            ));
            out.line(format!("{};", script.sql.trim().trim_end_matches(';')));
        } else {
            for g in script::groups(&stmts, &script.path)? {
                let what = match g.kind {
                    script::GroupKind::Ddl => "one schema-change operation",
                    script::GroupKind::Dml => "one read-write transaction",
                };
                let skipped = g.first + g.statements.len() <= step.resume_from;
                out.line(format!(
                    "-- {what}{}",
                    if skipped {
                        " (already applied: skipped)"
                    } else {
                        ""
                    }
                ));
                for (sql, line) in &g.statements {
                    out.line(format!("-- line {line}\n{sql};"));
                }
                groups.push(serde_json::json!({ "kind": format!("{:?}", g.kind).to_lowercase(), "first": g.first, "statements": g.statements.iter().map(|(s, l)| serde_json::json!({"sql": s, "line": l})).collect::<Vec<_>>() }));
            }
        }
        json.push(serde_json::json!({ "version": step.version, "name": m.name, "direction": step.direction, "resume_from": step.resume_from, "groups": groups }));
    }
    out.json(&serde_json::json!({ "plan": json }));
    Ok(0)
}

fn execute(s: &Service, target: Target, run: &RunArgs, out: &mut Out) -> Result<i32> {
    if run.dry_run {
        return plan(s, target, out);
    }
    if run.single_transaction || run.parallel > 1 {
        bail!("--single-transaction and --parallel are not available on Spanner: DDL runs as schema-change operations, DML in one transaction per group of statements, data migrations batch by batch");
    }
    let opts = SpannerRunOptions {
        allow_out_of_order: run.allow_out_of_order,
        ignore_missing: run.ignore_missing,
        max_duration: super::max_duration_arg(run.max_duration.as_deref())?,
    };
    let human = out.human() && !out.quiet;
    let json = !out.human();
    let mut bar: Option<ProgressBar> = None;
    let mut on_event = |e: Event| {
        if crate::render::json_event_or_quiet(json, human, &e) {
            return;
        }
        match &e {
            Event::MigrationStarted {
                version,
                name,
                direction,
                resume_from,
            } => {
                let resumed = if *resume_from > 0 {
                    format!(" (resuming after statement {resume_from})")
                } else {
                    String::new()
                };
                println!(
                    "{} {version} {name}{resumed}",
                    if *direction == instar_core::history::Direction::Up {
                        "applying"
                    } else {
                        "reverting"
                    }
                );
            }
            Event::Operation {
                operation,
                statements,
                ..
            } => println!("  schema change {operation} ({statements} statements)"),
            Event::Batch {
                rows_done, total, ..
            } => {
                let b = bar.get_or_insert_with(|| {
                    let b = if std::io::stderr().is_terminal() {
                        ProgressBar::new(*total as u64)
                    } else {
                        ProgressBar::hidden()
                    };
                    b.set_style(
                        ProgressStyle::with_template(
                            "  {bar:30} {pos}/{len} rows  {per_sec}  eta {eta}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    b
                });
                b.set_position(*rows_done as u64);
            }
            Event::MigrationFinished {
                version,
                duration_ms,
            } => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                println!("  done {version} in {duration_ms} ms");
            }
            Event::RunStarted { .. } => {}
        }
    };
    let report = s.spanner_run(target, &opts, &mut on_event)?;
    if let Some(v) = &report.stopped_at_checkpoint {
        out.line(format!("stopped at a checkpoint in {v}: the --max-duration budget is spent; run `instar up` again to continue"));
    } else if report.done.is_empty() {
        out.line("nothing to do: the database is up to date");
    } else {
        out.line(format!("{} migration(s) done", report.done.len()));
    }
    out.json(&serde_json::json!({ "result": report }));
    Ok(0)
}
