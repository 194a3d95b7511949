//! `baseline`, `repair`, `backup`, `backups` and `restore`.

use anyhow::{bail, Result};
use instar_db::runner::RepairOptions;
use instar_service::Service;

use crate::render::Out;

pub async fn baseline(
    service: &Service,
    version: &str,
    note: Option<String>,
    out: &Out,
) -> Result<i32> {
    service.baseline(version, note).await?;
    out.line(format!(
        "baseline recorded: migrations up to {version} count as applied"
    ));
    out.json(&serde_json::json!({ "baseline": version }));
    Ok(0)
}

pub async fn unlock(service: &Service, force: bool, out: &Out) -> Result<i32> {
    let u = service.unlock(force).await?;
    match &u {
        instar_service::Unlocked::Nothing { strategy } => out.line(format!(
            "no lease to break (lock strategy {}; an advisory lock ends with its session)",
            strategy.as_str()
        )),
        instar_service::Unlocked::Broken { holder } => out.line(format!(
            "broke the run lock's lease held by {holder}; recorded in the history"
        )),
        instar_service::Unlocked::Changed => {
            out.line("the lease changed hands meanwhile: left alone (`instar status` shows it)")
        }
    }
    out.json(&u);
    Ok(0)
}

pub async fn repair(service: &Service, opts: &RepairOptions, out: &Out) -> Result<i32> {
    let done = service.repair(opts).await?;
    if done.is_empty() {
        out.line("nothing to repair");
    }
    for d in &done {
        out.line(d);
    }
    out.json(&serde_json::json!({ "repaired": done }));
    Ok(0)
}

pub async fn backup(service: &Service, out: &Out) -> Result<i32> {
    let info = service.backup().await?;
    if let Some(b) = &info {
        out.line(format!(
            "backup {} taken: {} ({} bytes)",
            b.id,
            b.path.display(),
            b.size_bytes
        ));
    }
    out.json(&info);
    Ok(0)
}

pub fn backups(service: &Service, prune: bool, older_than: &str, out: &Out) -> Result<i32> {
    super::backups_or_prune(
        &service.settings().backup_dir,
        prune.then_some(older_than),
        |age| service.prune_backups(age),
        || service.backups(),
        |b| {
            format!(
                "{}  {:<8} {:>12} bytes  {}  {}",
                b.id,
                b.method,
                b.size_bytes,
                b.reason,
                b.path.display()
            )
        },
        out,
    )
}

pub async fn restore(service: &Service, id: &str, force: bool, out: &Out) -> Result<i32> {
    // An unknown id is the first thing to say.
    instar_db::backup::find(&service.settings().backup_dir, id)?;
    if !force {
        bail!("restoring replaces the database and loses everything written since backup {id}, by every client; add --force to do it");
    }
    let r = service.dangerous_restore(id).await?;
    out.line(format!(
        "restored backup {} (taken {}); the database as it was is kept as backup {} (`instar restore {} --force` brings it back)",
        r.restored.id, r.restored.created_at, r.set_aside.id, r.set_aside.id
    ));
    out.json(&r);
    Ok(0)
}

pub async fn adopt(
    service: &Service,
    from: Option<instar_core::foreign::Tool>,
    dry_run: bool,
    no_checksums: bool,
    out: &Out,
) -> Result<i32> {
    let opts = instar_db::adopt::AdoptOptions {
        from,
        skip_checksums: no_checksums,
        dry_run,
    };
    let a = service.adopt(&opts).await?;
    let r = &a.reconciled;
    let verb = if dry_run { "would record" } else { "recorded" };
    out.line(format!(
        "{} history ({}): {} applied migration(s) match the files; {verb} {} in Instar's history{}",
        r.tool,
        r.table,
        r.adopted.len(),
        a.recorded.len(),
        if a.already.is_empty() {
            String::new()
        } else {
            format!(" ({} already there)", a.already.len())
        }
    ));
    if out.verbose || dry_run {
        for v in &a.recorded {
            out.line(format!("  {v}"));
        }
    }
    for n in &r.notes {
        out.note(n);
    }
    if !dry_run {
        out.line(format!(
            "{} is left as it is; `instar status` now shows these as applied, and `instar up` applies only what {} had not",
            r.table, r.tool
        ));
    }
    out.json(&serde_json::json!({ "adoption": a }));
    Ok(0)
}
