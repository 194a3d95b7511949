//! `instar start`, `instar complete`, `instar rollback`: an online migration
//! served at two versions, then contracted or removed.

use anyhow::Result;
use instar_core::plan::Target;
use instar_service::{RunRequest, Service};

use crate::render::Out;

pub async fn start(
    s: &Service,
    batch: u64,
    parallel: usize,
    max_duration: Option<&str>,
    dry_run: bool,
    out: &mut Out,
) -> Result<i32> {
    if dry_run {
        let x = s.online_preview().await?;
        out.json(&serde_json::json!({ "expansion": x }));
        let sections: [(&str, &[String]); 5] = [
            (
                "start: expand (one transaction where the engine can)",
                &x.expand,
            ),
            ("start: after it, each by itself", &x.expand_outside),
            ("start: version views (with the expansion)", &x.views),
            ("complete", &x.contract),
            ("rollback", &x.rollback),
        ];
        for (title, stmts) in sections {
            if stmts.is_empty() {
                continue;
            }
            out.line(format!("-- {title}"));
            for st in stmts {
                out.line(format!("{st};"));
            }
        }
        if !x.connect_new.is_empty() {
            out.line(format!(
                "-- a connection at {} runs (instar connect-sql --at {})",
                x.new_version, x.new_version
            ));
            for st in &x.connect_new {
                out.line(format!("{st};"));
            }
        }
        for f in &x.fills {
            out.line(format!(
                "-- start: backfill of {} in batches by ({})",
                f.table,
                f.key.join(", ")
            ));
            out.line(format!("{};", f.statement));
        }
        return Ok(0);
    }
    let req = RunRequest {
        parallel: parallel.max(1),
        max_duration: max_duration
            .map(|d| {
                instar_core::duration::parse(d).map_err(|e| anyhow::anyhow!("--max-duration: {e}"))
            })
            .transpose()?,
        ..RunRequest::new(Target::Up { to: None })
    };
    let r = s.online_start(&req, batch, out).await?;
    let f = &r.in_flight;
    for l in &r.lossy {
        out.line(format!("lossy (declared): {l}"));
    }
    if r.expanded {
        out.line(format!(
            "{} is served at two versions: {} and {} (expand: {} ms)",
            f.version, f.old_version, f.version, r.expand_ms
        ));
        if !f.new_schema.is_empty() {
            out.line(format!(
                "  clients of {} set search_path = {}, public (clients that set nothing, or {}, see {})",
                f.version, f.new_schema, f.old_schema, f.old_version
            ));
        } else {
            out.line(format!(
                "  connections at {} first run what `instar connect-sql --at {}` prints (clients of {} change nothing)",
                f.version, f.version, f.old_version
            ));
        }
        out.line("  `instar complete` when no client uses the old version; `instar rollback` to remove the new one");
    } else {
        out.line(format!(
            "{} stopped during its backfill at a checkpoint; `instar start` again goes on",
            f.version
        ));
    }
    out.json(&serde_json::json!({ "start": r }));
    Ok(0)
}

pub async fn complete(s: &Service, force: bool, out: &mut Out) -> Result<i32> {
    let c = s.online_complete(force, out).await?;
    let f = &c.completed;
    out.line(format!(
        "completed {}: only version {} is served now; the migration is recorded as applied (contract: {} ms)",
        f.version, f.version, c.contract_ms
    ));
    out.json(&serde_json::json!({ "complete": c }));
    Ok(0)
}

pub async fn rollback(s: &Service, out: &mut Out) -> Result<i32> {
    let f = s.online_rollback(out).await?;
    out.line(format!(
        "rolled back {}: version {} is served as before, with every write made through either version",
        f.version, f.old_version
    ));
    out.json(&serde_json::json!({ "rolled_back": f }));
    Ok(0)
}

pub async fn connect_sql(s: &Service, at: &str, out: &mut Out) -> Result<i32> {
    let pooled = s.session_dropped().await?;
    if let Some(seen) = &pooled {
        eprintln!(
            "warning: connections to this database do not keep their session: {seen}. A client that selects its version with these statements would lose it at its next transaction. Behind a transaction pooler, give each version its own database role and run these once per role instead (PostgreSQL: `ALTER ROLE app_v{at} SET search_path = ...`; pools are per role, and a role's settings hold in every session), or use a pool in session mode"
        );
    }
    let stmts = s.connect_sql(at).await?;
    if stmts.is_empty() {
        out.line(format!(
            "-- version {at} is the base tables' shape: nothing to run"
        ));
    }
    for st in &stmts {
        out.line(format!("{st};"));
    }
    out.json(&serde_json::json!({ "version": at, "statements": stmts, "session_dropped": pooled }));
    Ok(0)
}
