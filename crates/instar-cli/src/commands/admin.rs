//! `baseline`, `repair`, `backup`, `backups` and `restore`.

use anyhow::{bail, Result};
use instar_db::backup;
use instar_db::runner::{self, RepairOptions};

use super::{connect, read_source};
use crate::config::{self, Settings};
use crate::render::Out;

pub async fn baseline(
    settings: &Settings,
    version: &str,
    note: Option<String>,
    out: &Out,
) -> Result<i32> {
    let source = read_source(settings, out)?;
    let mut db = connect(settings).await?;
    runner::baseline(&mut db, &source, version, note, settings.lock_timeout).await?;
    out.line(format!(
        "baseline recorded: migrations up to {version} count as applied"
    ));
    out.json(&serde_json::json!({ "baseline": version }));
    db.close().await?;
    Ok(0)
}

pub async fn repair(settings: &Settings, opts: &RepairOptions, out: &Out) -> Result<i32> {
    let source = read_source(settings, out)?;
    let mut db = connect(settings).await?;
    let done = runner::repair(&mut db, &source, opts, settings.lock_timeout).await?;
    if done.is_empty() {
        out.line("nothing to repair");
    }
    for d in &done {
        out.line(d);
    }
    out.json(&serde_json::json!({ "repaired": done }));
    db.close().await?;
    Ok(0)
}

pub async fn backup(settings: &Settings, out: &Out) -> Result<i32> {
    let mut db = connect(settings).await?;
    let info = backup::take(&mut db, &settings.backup_dir, "manual (instar backup)").await?;
    if let Some(b) = &info {
        out.line(format!(
            "backup {} taken: {} ({} bytes)",
            b.id,
            b.path.display(),
            b.size_bytes
        ));
    }
    out.json(&info);
    db.close().await?;
    Ok(0)
}

pub fn backups(settings: &Settings, prune: bool, older_than: &str, out: &Out) -> Result<i32> {
    if prune {
        let removed = backup::prune(&settings.backup_dir, config::parse_duration(older_than)?)?;
        out.line(format!(
            "{} backup(s) older than {older_than} deleted",
            removed.len()
        ));
        out.json(&removed);
        return Ok(0);
    }
    let list = backup::list(&settings.backup_dir)?;
    if list.is_empty() {
        out.line(format!("no backups in {}", settings.backup_dir.display()));
    }
    for b in &list {
        out.line(format!(
            "{}  {:<8} {:>12} bytes  {}  {}",
            b.id,
            b.method,
            b.size_bytes,
            b.reason,
            b.path.display()
        ));
    }
    out.json(&list);
    Ok(0)
}

pub async fn restore(settings: &Settings, id: &str, force: bool, out: &Out) -> Result<i32> {
    if !force {
        bail!("restoring replaces the database and loses everything written since backup {id}; add --force to do it");
    }
    let mut db = connect(settings).await?;
    db.lock(settings.lock_timeout, || {
        eprintln!("waiting for the migration lock…")
    })
    .await?;
    let r = backup::restore(&mut db, &settings.backup_dir, id).await;
    db.unlock().await?;
    let info = r?;
    out.line(format!(
        "restored backup {} (taken {})",
        info.id, info.created_at
    ));
    out.json(&info);
    db.close().await?;
    Ok(0)
}
