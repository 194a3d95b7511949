//! Operations commands: `instar test` (migration tests on scratch
//! databases), `instar audit`, `instar copy`, `instar squash`.

use std::path::Path;

use anyhow::{Context, Result};
use instar_service::{AuditOptions, Service, TestOptions, TestResult};

use crate::args::CopyArgs;
use crate::render::Out;

pub async fn test(
    s: &Service,
    filter: Option<String>,
    keep: bool,
    junit: Option<&Path>,
    out: &Out,
) -> Result<i32> {
    let files = s.test_files()?;
    if files.is_empty() {
        out.line(format!(
            "no tests: {} holds no *.toml test file (see `instar test --help` and the README)",
            s.settings().tests.display()
        ));
    }
    let opts = TestOptions { filter, keep };
    let mut shown = |r: &TestResult| {
        let mark = if r.passed { "ok  " } else { "FAIL" };
        out.line(format!(
            "{mark} {} ({} ms){}",
            r.name,
            r.duration_ms,
            r.description
                .as_ref()
                .map(|d| format!(" — {d}"))
                .unwrap_or_default()
        ));
        for a in &r.passed_assertions {
            out.note(format!("     ✓ {a}"));
        }
        for f in &r.failures {
            for (i, l) in f.lines().enumerate() {
                out.line(format!("     {} {l}", if i == 0 { "✗" } else { " " }));
            }
        }
    };
    let report = s.test(&opts, &mut shown).await?;
    for c in &report.cleaned {
        out.line(format!(
            "dropped scratch database {c}, left by a run that was killed"
        ));
    }
    let failed = report.tests.iter().filter(|t| !t.passed).count();
    out.line(format!(
        "{} tests, {} passed, {failed} failed",
        report.tests.len(),
        report.tests.len() - failed
    ));
    if let Some(path) = junit {
        std::fs::write(path, report.junit())
            .with_context(|| format!("writing the JUnit report to {}", path.display()))?;
    }
    out.json(&serde_json::json!({ "test": report }));
    Ok(if report.passed() { 0 } else { 1 })
}

pub async fn audit(s: &Service, sample: u64, exact: bool, out: &Out) -> Result<i32> {
    let report = s.audit(&AuditOptions { sample, exact }).await?;
    for f in &report.findings {
        out.line(format!(
            "{}[{}]: {}: {}",
            f.severity, f.check, f.object, f.message
        ));
        out.line(format!("  instead: {}", f.instead));
    }
    for c in &report.checked {
        out.note(format!("checked: {c}"));
    }
    let errors = report.errors();
    out.line(format!(
        "{}: {} checks, {errors} errors, {} warnings{}",
        report.database,
        report.checked.len(),
        report.findings.len() - errors,
        if exact {
            String::new()
        } else {
            format!(" (up to {sample} rows per table read; --exact reads all)")
        }
    ));
    out.json(&serde_json::json!({ "audit": report }));
    Ok(if errors > 0 { 1 } else { 0 })
}

pub async fn copy(s: &Service, a: CopyArgs, out: &Out) -> Result<i32> {
    use instar_service::db::copy::{CopyOptions, Progress, VerifyMode};
    let from = a.from.unwrap_or_else(|| s.settings().db.url.clone());
    let verify = match a.verify.as_str() {
        "counts" => VerifyMode::Counts,
        "sample" => VerifyMode::Sample(a.sample),
        "full" => VerifyMode::Full,
        other => anyhow::bail!("--verify {other}: counts, sample (default) or full"),
    };
    let mut lenses = Vec::new();
    for l in &a.lens {
        let Some((c, v)) = l.split_once(':') else {
            anyhow::bail!("--lens {l}: write COLLECTION:VERSION, e.g. --lens users:2.0.0");
        };
        lenses.push((c.to_string(), v.to_string()));
    }
    let cancel = instar_service::db::CancelToken::new();
    let o = CopyOptions {
        tables: a.tables,
        batch: a.batch.max(1),
        append: a.append,
        verify,
        parallel: a.parallel.max(1),
        cancel: cancel.clone(),
    };
    if a.dry_run {
        let (plans, migrated) = s.copy_plan(&from, &a.to, &o).await?;
        if !migrated {
            out.line("the target is not migrated yet: copy runs the migrations there first; the types shown are the source's");
        }
        for p in &plans {
            let cols: Vec<String> = p
                .columns
                .iter()
                .map(|c| format!("{} {} → {}", c.name, c.source_type, c.target_type))
                .collect();
            out.line(format!("{}: {}", p.table, cols.join(", ")));
        }
        out.line("dry run: nothing copied (the target's migrations may still be pending: copy runs them first)");
        out.json(&serde_json::json!({ "copy": { "tables": plans, "target_migrated": migrated } }));
        return Ok(0);
    }
    let bars = indicatif::MultiProgress::new();
    if !out.human() || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bars.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let shown: std::sync::Mutex<std::collections::BTreeMap<String, indicatif::ProgressBar>> =
        Default::default();
    let progress = std::sync::Arc::new(move |p: &Progress| {
        let mut map = shown.lock().unwrap_or_else(|e| e.into_inner());
        let bar = map.entry(p.table.clone()).or_insert_with(|| {
            let b = bars.add(indicatif::ProgressBar::new(p.total.unwrap_or(0)));
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:20} [{bar:30}] {pos}/{len} rows, {per_sec}, ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_message(p.table.clone());
            b
        });
        if p.rows > bar.length().unwrap_or(0) {
            bar.set_length(p.rows);
        }
        bar.set_position(p.rows);
    });
    let interrupt = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            interrupt.cancel();
        }
    });
    let report = s.copy(&from, &a.to, o, &lenses, progress).await?;
    if let Some(v) = &report.version {
        out.line(format!(
            "target migrated to {v} ({} migrations applied now)",
            report.migrated.len()
        ));
    }
    for t in &report.tables {
        let mut line = format!(
            "{}: {} rows copied{}{}; source {} rows, target {} rows; {} rows compared",
            t.table,
            t.copied,
            if t.resumed_after > 0 {
                format!(" (resumed after {})", t.resumed_after)
            } else {
                String::new()
            },
            if t.skipped_existing > 0 {
                format!(", {} already there (kept)", t.skipped_existing)
            } else {
                String::new()
            },
            t.source_rows,
            t.target_rows,
            t.compared
        );
        if !t.verified(a.append) {
            line += " — DIFFERS";
        }
        out.line(line);
        for m in &t.mismatches {
            out.line(format!("  {m}"));
        }
    }
    for m in &report.moved {
        out.line(m);
    }
    if report.cancelled {
        out.line("stopped at a batch boundary: run the same command again to resume");
    } else if !report.verified {
        out.line("the target differs from the source: rows written to the source during the copy are not copied after their batch, and rows changed behind it are not updated; stop writes to the source, then copy into an empty target again (or with --append for the rows that are new)");
    } else {
        out.line(format!("copied and verified in {} ms", report.duration_ms));
    }
    out.json(&serde_json::json!({ "copy": report }));
    Ok(if report.verified && !report.cancelled {
        0
    } else {
        1
    })
}

pub async fn squash(s: &Service, to: &str, dry_run: bool, out: &Out) -> Result<i32> {
    let r = s.squash(to, dry_run).await?;
    let (verb, moved, after) = if dry_run {
        ("would replace", "and move them to", "; its SQL:")
    } else {
        ("replaced", "; their folders are in", ". Databases that applied them count the baseline as applied; new ones run only the baseline")
    };
    out.line(format!(
        "{verb} {} migrations ({}) by {} {moved} {}{after}",
        r.squashed.len(),
        r.squashed.join(", "),
        r.baseline.display(),
        r.archive.display()
    ));
    if dry_run {
        out.line(&r.sql);
    }
    out.json(&serde_json::json!({ "squash": r }));
    Ok(0)
}
