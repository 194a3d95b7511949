//! `status`, `history`, `validate` and `verify`: read-only views, rendered.

use anyhow::Result;
use instar_service::{Service, StatusView};

use crate::render::Out;

pub async fn status(
    service: &Service,
    require: Option<&str>,
    check: bool,
    out: &Out,
) -> Result<i32> {
    let v = service.status().await?;
    let unmet = require
        .map(|r| v.unmet_requirement(r))
        .transpose()?
        .flatten();
    if out.human() && !out.quiet {
        print_status(&v);
    }
    if let Some(u) = &unmet {
        eprintln!("{u}");
    }
    out.json(&serde_json::json!({
        "schema_version": v.status.schema_version,
        "migrations": v.status.migrations,
        "problems": v.status.problems,
        "pending": v.pending(),
        "baseline": v.state.baseline,
        "dirty": v.state.dirty.values().collect::<Vec<_>>(),
        "data_in_progress": v.checkpoints,
        "skipped_rows": v.skipped.iter().map(|(v, n)| serde_json::json!({ "version": v, "rows": n })).collect::<Vec<_>>(),
        "requirement_met": unmet.is_none(),
        "other_histories": v.other_histories,
        "in_flight": v.in_flight,
        "lock": v.lock,
    }));
    let work_or_problems = v.pending() > 0
        || !v.state.dirty.is_empty()
        || !v.status.problems.is_empty()
        || !v.other_histories.is_empty();
    Ok(if unmet.is_some() || (check && work_or_problems) {
        1
    } else {
        0
    })
}

fn print_lock(l: &instar_service::LockView) {
    use instar_db::lease::LockStrategy;
    match (&l.strategy, &l.lease) {
        (LockStrategy::None, _) => println!(
            "lock: NONE ([run] lock = \"none\"): runs do not keep each other out; the platform must run one deploy at a time"
        ),
        (_, Some(h)) if h.expired() => println!(
            "lock: lease of {h}: its run is gone; the next run takes it over, or `instar unlock` breaks it now"
        ),
        (_, Some(h)) => println!("lock: lease held by {h}"),
        (LockStrategy::Lease, None) => println!("lock: lease, free"),
        _ => {}
    }
}

fn print_status(v: &StatusView) {
    println!(
        "database: {}  schema version: {}  layout: {}",
        v.database,
        v.status.schema_version.as_deref().unwrap_or("-"),
        v.layout.map_or("-".to_string(), |l| l.to_string())
    );
    for m in &v.status.migrations {
        let standing = format!("{:?}", m.standing).to_lowercase();
        println!(
            "  {standing:<9} {:<24} {:<30} {}",
            m.version,
            m.name,
            m.applied_at.as_deref().unwrap_or("")
        );
    }
    println!("{} applied, {} pending", v.applied(), v.pending());
    for r in &v.other_histories {
        println!("found {}", r.summary());
        for n in &r.notes {
            println!("  note: {n}");
        }
    }
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
    print_lock(&v.lock);
    if let Some(f) = &v.in_flight {
        let how = if f.new_schema.is_empty() {
            String::new()
        } else {
            format!(" (views in {} and {})", f.old_schema, f.new_schema)
        };
        println!(
            "in flight: online migration {} since {}, phase {}: versions {} and {} served{how}; `instar complete` or `instar rollback`",
            f.version, f.started_at, f.phase, f.old_version, f.version
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
    for p in &v.status.problems {
        println!("problem: {p}");
    }
}

pub async fn validate(service: &Service, out: &Out) -> Result<i32> {
    let (source, problems) = service.validate().await?;
    for p in &problems {
        out.line(format!("problem: {p}"));
    }
    if problems.is_empty() {
        out.line(format!(
            "{} migrations valid; history consistent",
            source.migrations.len()
        ));
    }
    out.json(&serde_json::json!({ "valid": problems.is_empty(), "problems": problems }));
    Ok(if problems.is_empty() { 0 } else { 1 })
}

pub async fn verify(service: &Service, out: &Out) -> Result<i32> {
    let results = service.verify().await?;
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

pub async fn history(service: &Service, out: &Out) -> Result<i32> {
    let rows = service.history().await?;
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
                "{:>5} {}  {:<8} {:<4} {:<20} {:<24} {:>6} ms  {}/{} stmts  {}  {}{extra}",
                r.id,
                r.started_at,
                r.event.as_str(),
                r.direction.as_str(),
                r.version,
                r.name,
                r.duration_ms.unwrap_or(0),
                r.statements_applied,
                r.statements_total,
                r.operator,
                r.run_id.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(0)
}
