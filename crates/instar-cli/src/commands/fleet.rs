//! `instar fleet up|status|check`: the service's fleet operations, rendered.

use std::io::IsTerminal as _;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use instar_service::fleet::{FleetEvent, FleetOptions};
use instar_service::Service;

use crate::args::FleetCommand;
use crate::render::Out;

pub async fn run(s: &Service, action: FleetCommand, out: &mut Out) -> Result<i32> {
    match action {
        FleetCommand::Up {
            parallel,
            max_failures,
            continue_on_error,
        } => {
            up(
                s,
                FleetOptions {
                    parallel,
                    max_failures,
                    continue_on_error,
                    request: None,
                },
                out,
            )
            .await
        }
        FleetCommand::Status { target } => status(s, target.as_deref(), out).await,
        FleetCommand::Check { parallel } => check(s, parallel, out).await,
    }
}

async fn up(s: &Service, opts: FleetOptions, out: &mut Out) -> Result<i32> {
    let human = out.human() && !out.quiet;
    let json = !out.human();
    let mut bar: Option<ProgressBar> = None;
    let mut on_event = |e: FleetEvent| {
        if crate::render::json_event_or_quiet(json, human, &e) {
            return;
        }
        match &e {
            FleetEvent::Planned { waves, skipped } => {
                let total: usize = waves.iter().map(Vec::len).sum();
                if *skipped > 0 {
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
                    bar = Some(b);
                }
            }
            FleetEvent::WaveStarted { wave, targets } => {
                let name = if *wave == 0 {
                    "canary".to_string()
                } else {
                    format!("wave {wave}")
                };
                match &bar {
                    Some(b) => b.set_message(format!("{name} ({targets})")),
                    None => println!("{name}: {targets} tenant(s)"),
                }
            }
            FleetEvent::TargetFinished {
                target,
                error,
                applied,
                duration_ms,
                ..
            } => {
                if let Some(b) = &bar {
                    b.inc(1);
                }
                let line = match error {
                    Some(e) => format!("  FAILED {target}: {e}"),
                    None => format!("  done {target}: {applied} migration(s), {duration_ms} ms"),
                };
                match (&bar, error) {
                    (Some(b), Some(_)) => b.println(line),
                    (None, _) => println!("{line}"),
                    _ => {}
                }
            }
            FleetEvent::Stopped { wave, failures } => {
                if let Some(b) = &bar {
                    b.finish_and_clear();
                }
                println!("rollout stopped after wave {wave}: {failures} failure(s), more than allowed (--max-failures; --continue-on-error goes on)");
            }
        }
    };
    let r = s.fleet_up(&opts, &mut on_event).await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    out.line(format!(
        "fleet: {} tenant(s): {} done now, {} already done, {} failed, {} not run",
        r.targets,
        r.done,
        r.skipped,
        r.failed.len(),
        r.not_run
    ));
    if !r.failed.is_empty() || r.not_run > 0 {
        out.line("`instar fleet status` lists the failed tenants; fix them and run `instar fleet up` again: it runs exactly the tenants not done");
    }
    out.json(&serde_json::json!({ "result": r }));
    Ok(if r.failed.is_empty() && r.not_run == 0 {
        0
    } else {
        2
    })
}

async fn status(s: &Service, target: Option<&str>, out: &Out) -> Result<i32> {
    if let Some(t) = target {
        let Some(row) = s.fleet_target(t)? else {
            anyhow::bail!(
                "{t} has no record in the fleet's state ({}): it was never rolled out to",
                s.fleet_config()?.state.display()
            );
        };
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
        out.json(&row);
        return Ok(0);
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
