//! `instar fleet up|status|check`: the service's fleet operations, rendered.

use std::io::IsTerminal as _;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use instar_core::event::Stamped;
use instar_service::fleet::{FleetEvent, FleetOptions};
use instar_service::Service;

use crate::args::FleetCommand;
use crate::render::Out;

pub async fn run(s: &Service, action: FleetCommand, out: &mut Out) -> Result<i32> {
    match action {
        FleetCommand::Up {
            parallel,
            dry_run: true,
            ..
        } => dry_run(s, parallel.unwrap_or(s.fleet_config()?.parallel), out).await,
        FleetCommand::Up {
            parallel,
            max_failures,
            continue_on_error,
            dry_run: false,
        } => {
            up(
                s,
                FleetOptions {
                    parallel,
                    max_failures,
                    continue_on_error,
                    ..FleetOptions::default()
                },
                out,
            )
            .await
        }
        FleetCommand::Status { target } => status(s, target.as_deref(), out).await,
        FleetCommand::Check { parallel } => check(s, parallel, out).await,
    }
}

/// The rollout runs as a task; its events are rendered as they arrive
/// (JSON lines with `--format json`); Ctrl-C cancels it: no tenant starts
/// after it, the running ones stop at their next safe point.
async fn up(s: &Service, opts: FleetOptions, out: &mut Out) -> Result<i32> {
    let handle = s.start_fleet(opts)?;
    let mut view = RolloutView {
        human: out.human() && !out.quiet,
        json: !out.human(),
        bar: None,
    };
    crate::commands::follow(
        handle.events().subscribe(),
        &handle.cancel_token(),
        "no tenant starts from now; the running ones stop at their next safe point",
        |e| view.show(e),
    )
    .await;
    if let Some(b) = view.bar.take() {
        b.finish_and_clear();
    }
    let r = handle.wait().await?;
    let stopped = if r.stopped.is_empty() {
        String::new()
    } else {
        format!(", {} stopped before their end", r.stopped.len())
    };
    out.line(format!(
        "fleet: {} tenant(s): {} done now, {} already done, {} failed{stopped}, {} not run{}",
        r.targets,
        r.done,
        r.skipped,
        r.failed.len(),
        r.not_run,
        if r.cancelled { " (cancelled)" } else { "" }
    ));
    if !r.failed.is_empty() {
        out.line("`instar fleet status` lists the failed tenants; fix them and run `instar fleet up` again: it runs exactly the tenants not done");
    } else if r.not_run > 0 || !r.stopped.is_empty() {
        out.line("run `instar fleet up` again: it runs exactly the tenants not done");
    }
    out.json(&serde_json::json!({ "result": r }));
    Ok(
        if r.failed.is_empty() && r.not_run == 0 && r.stopped.is_empty() {
            0
        } else {
            2
        },
    )
}

/// `fleet up --dry-run`: the waves, each tenant's pending migrations or
/// refusal, the SQL once. Exit 2 when some tenant would be refused.
async fn dry_run(s: &Service, parallel: usize, out: &Out) -> Result<i32> {
    let plan = s.fleet_plan(parallel).await?;
    out.line("dry run: nothing is run or recorded");
    if plan.skipped > 0 {
        out.line(format!(
            "{} tenant(s) already done in this release: skipped",
            plan.skipped
        ));
    }
    let mut wave = None;
    for t in &plan.targets {
        if wave != Some(t.wave) {
            wave = Some(t.wave);
            let n = plan.targets.iter().filter(|o| o.wave == t.wave).count();
            out.line(if t.wave == 0 {
                format!("canary: {n} tenant(s)")
            } else {
                format!("wave {}: {n} tenant(s)", t.wave)
            });
        }
        out.line(match &t.error {
            Some(e) => format!("  REFUSED {}: {e}", t.target),
            None if t.pending.is_empty() => format!("  {}: nothing pending", t.target),
            None => format!(
                "  {}: {} pending ({})",
                t.target,
                t.pending.len(),
                t.pending.join(", ")
            ),
        });
    }
    if !plan.sql.is_empty() {
        out.line("the SQL (the same files on every tenant):");
    }
    for (version, m) in &plan.sql {
        out.line(format!(
            "-- {version} {}{}",
            m.name,
            if m.transaction {
                ""
            } else {
                " (no transaction)"
            }
        ));
        for st in &m.statements {
            out.line(format!("{st};"));
        }
    }
    out.json(&plan);
    Ok(if plan.refused() == 0 { 0 } else { 2 })
}

/// How a rollout's events are shown: lines, a bar on a terminal.
struct RolloutView {
    human: bool,
    json: bool,
    bar: Option<ProgressBar>,
}

impl RolloutView {
    fn show(&mut self, stamped: &Stamped<FleetEvent>) {
        if crate::render::json_event_or_quiet(self.json, self.human, stamped) {
            return;
        }
        match &stamped.event {
            FleetEvent::Planned { waves, skipped } => self.planned(waves, *skipped),
            FleetEvent::WaveStarted { wave, targets } => {
                let name = if *wave == 0 {
                    "canary".to_string()
                } else {
                    format!("wave {wave}")
                };
                match &self.bar {
                    Some(b) => b.set_message(format!("{name} ({targets})")),
                    None => println!("{name}: {targets} tenant(s)"),
                }
            }
            FleetEvent::TargetFinished {
                target,
                outcome,
                error,
                applied,
                duration_ms,
                ..
            } => {
                if let Some(b) = &self.bar {
                    b.inc(1);
                }
                let e = error.as_deref().unwrap_or("");
                let line = match *outcome {
                    "failed" => format!("  FAILED {target}: {e}"),
                    "stopped" => format!("  stopped {target}: {e}"),
                    _ => format!("  done {target}: {applied} migration(s), {duration_ms} ms"),
                };
                match (&self.bar, error) {
                    (Some(b), Some(_)) => b.println(line),
                    (None, _) => println!("{line}"),
                    _ => {}
                }
            }
            FleetEvent::Stopped { wave, failures } => {
                if let Some(b) = self.bar.take() {
                    b.finish_and_clear();
                }
                println!("rollout stopped after wave {wave}: {failures} failure(s), more than allowed (--max-failures; --continue-on-error goes on)");
            }
            FleetEvent::Cancelled => {
                if let Some(b) = self.bar.take() {
                    b.finish_and_clear();
                }
                println!("rollout cancelled: the tenants not started are not run; `instar fleet up` runs them");
            }
            FleetEvent::TargetStarted { .. } | FleetEvent::Migration { .. } => {}
        }
    }

    fn planned(&mut self, waves: &[Vec<String>], skipped: usize) {
        let total: usize = waves.iter().map(Vec::len).sum();
        if skipped > 0 {
            println!("{skipped} tenant(s) already done in this release: skipped");
        }
        println!(
            "rolling out to {total} tenant(s): {}",
            waves
                .iter()
                .enumerate()
                .filter(|(_, w)| !w.is_empty())
                .map(|(i, w)| if i == 0 {
                    format!("canary {}", w.len())
                } else {
                    format!("wave {i} {}", w.len())
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
        if std::io::stderr().is_terminal() {
            let b = ProgressBar::new(total as u64);
            b.set_style(
                ProgressStyle::with_template("  {bar:30} {pos}/{len} tenants  {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            self.bar = Some(b);
        }
    }
}

async fn status(s: &Service, target: Option<&str>, out: &Out) -> Result<i32> {
    if let Some(t) = target {
        return status_of(s, t, out).await;
    }
    let f = s.fleet_status()?;
    let list = |m: &std::collections::BTreeMap<String, usize>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    out.line(format!(
        "fleet: {} tenant(s) recorded, release {}",
        f.recorded, f.release
    ));
    out.line(format!("  by state: {}", list(&f.by_state)));
    out.line(format!("  by last migration: {}", list(&f.by_version)));
    for r in f.failed.iter().take(20) {
        out.line(format!(
            "  failed {}: {}",
            r.target,
            r.error.as_deref().unwrap_or("")
        ));
    }
    if f.failed.len() > 20 {
        out.line(format!(
            "  … and {} more failed (--format json lists them all)",
            f.failed.len() - 20
        ));
    }
    for r in &f.slowest {
        out.line(format!(
            "  slow {}: {} ms",
            r.target,
            r.duration_ms.unwrap_or(0)
        ));
    }
    out.json(&f);
    Ok(0)
}

/// One tenant: its record in the state file, and its database read now.
async fn status_of(s: &Service, t: &str, out: &Out) -> Result<i32> {
    let row = s.fleet_target(t)?;
    let now = s.fleet_target_now(t).await;
    if row.is_none() && matches!(now, Ok(None)) {
        anyhow::bail!(
            "{t} is neither a target of the fleet nor recorded in its state ({})",
            s.fleet_config()?.state.display()
        );
    }
    let mut json = match &row {
        Some(row) => {
            out.line(format!(
                "{}: {} (release {}, attempt {}, wave {})",
                row.target, row.state, row.release, row.attempts, row.wave
            ));
            if let Some(e) = &row.error {
                out.line(format!("  error: {e}"));
            }
            out.line(format!(
                "  started {}, took {} ms, {} migration(s) applied, last {}, run {}",
                row.started_at.as_deref().unwrap_or("-"),
                row.duration_ms.unwrap_or(0),
                row.applied,
                row.version.as_deref().unwrap_or("-"),
                row.run_id.as_deref().unwrap_or("-")
            ));
            serde_json::json!(row)
        }
        None => {
            out.line(format!("{t}: no record: never rolled out to"));
            serde_json::json!({ "target": t, "state": serde_json::Value::Null })
        }
    };
    json["now"] = match now {
        Ok(Some(n)) => {
            let mut line = format!(
                "  now: schema version {}, {} pending",
                n.version.as_deref().unwrap_or("-"),
                n.pending
            );
            if !n.problems.is_empty() {
                line.push_str(&format!("; {}", n.problems.join("; ")));
            }
            out.line(line);
            serde_json::json!(n)
        }
        Ok(None) => {
            out.line("  now: not in the fleet's list any more");
            serde_json::Value::Null
        }
        Err(e) => {
            out.line(format!("  now: cannot be read: {e}"));
            serde_json::json!({ "error": e.to_string() })
        }
    };
    out.json(&json);
    Ok(0)
}

async fn check(s: &Service, parallel: usize, out: &Out) -> Result<i32> {
    let c = s.fleet_check(parallel).await?;
    for t in &c.targets {
        if let Some(e) = &t.error {
            out.line(format!("{}: cannot be read: {e}", t.target));
            continue;
        }
        let mut what = Vec::new();
        if t.pending > 0 {
            what.push(format!("{} pending", t.pending));
        }
        what.extend(t.problems.iter().cloned());
        if !t.drift.is_empty() {
            what.push(format!(
                "schema differs from most tenants: {}",
                t.drift.join("; ")
            ));
        }
        if what.is_empty() {
            out.line(format!(
                "{}: ok ({})",
                t.target,
                t.version.as_deref().unwrap_or("no schema version")
            ));
        } else {
            out.line(format!("{}: {}", t.target, what.join("; ")));
        }
    }
    out.line(format!(
        "{} of {} tenant(s) have the majority's schema",
        c.majority,
        c.targets.len()
    ));
    out.json(&c);
    Ok(i32::from(c.findings()))
}
