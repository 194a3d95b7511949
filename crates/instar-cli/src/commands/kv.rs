//! The commands on a key-value store (`rocksdb:` database URL): the same
//! names and exit codes as on SQL, through the service's key-value operations.
//! They run synchronously: Ctrl-C stops at once, every committed batch is
//! whole, and running again resumes from the checkpoint.

use anyhow::{bail, Result};
use instar_service::kv::walk::{WalkEnd, WalkOptions};
use instar_service::{KvRunOptions, Service};

use crate::args::{Command, DocsCommand, RunArgs};
use crate::render::Out;

pub fn run(s: &Service, command: Command, out: &mut Out) -> Result<i32> {
    match command {
        Command::Status { check, require } => {
            if require.is_some() {
                bail!("status --require is for SQL databases; on a key-value store use status --check");
            }
            status(s, check, out)
        }
        Command::Validate => status(s, true, out),
        Command::History => history(s, out),
        Command::Plan { to, down, .. } => {
            if down {
                bail!("a key-value store has no down plan: `instar restore ID` puts back the backup taken before a run (`instar backups` lists them)");
            }
            plan(s, to.as_deref(), out)
        }
        Command::Up { to, run } => up(s, to, &run, out),
        Command::Down { .. } => bail!("a key-value store is not migrated down: `instar restore ID` puts back the backup taken before a run (`instar backups` lists them), or a documents migration to the older version moves the records back"),
        Command::Verify => verify(s, out),
        Command::Docs { action } => docs(s, &action, out),
        Command::Backup => {
            let b = s.kv_backup()?;
            out.line(format!("backup {} taken: {} ({} bytes)", b.id, b.path.display(), b.size_bytes));
            out.json(&b);
            Ok(0)
        }
        Command::Backups { prune, older_than } => backups(s, prune, &older_than, out),
        Command::Restore { id, force } => {
            if !force {
                bail!("restore puts backup {id} in place of the store's records (the store as it is now is kept as a backup first, whose id is printed); add --force to do it");
            }
            let (restored, aside) = s.kv_restore(&id)?;
            out.line(format!(
                "restored backup {} (schema version {}); the store as it was is backup {} (`instar restore {}` undoes this)",
                restored.id,
                restored.version.as_deref().unwrap_or("none"),
                aside.id,
                aside.id
            ));
            out.json(&serde_json::json!({ "restored": restored, "set_aside": aside }));
            Ok(0)
        }
        other => bail!(
            "{} is for SQL databases; on a key-value store (rocksdb:) Instar runs status, validate, history, plan, up, verify, docs, backup, backups and restore",
            name(&other)
        ),
    }
}

fn name(c: &Command) -> String {
    let debug = format!("{c:?}");
    debug
        .split([' ', '{', '('])
        .next()
        .unwrap_or("this command")
        .to_lowercase()
}

fn status(s: &Service, check: bool, out: &Out) -> Result<i32> {
    let v = s.kv_status()?;
    out.line(format!("store: {}", v.database));
    out.line(format!(
        "schema version: {}",
        v.version.as_deref().unwrap_or("none (never migrated)")
    ));
    for e in v.applied.iter().filter(|e| e.kind == "lens") {
        out.line(format!(
            "  applied  {}  {}  {} records rewritten",
            e.name, e.started_at, e.records_changed
        ));
    }
    for p in &v.pending {
        out.line(format!("  pending  {p}"));
    }
    for (step, ck) in &v.checkpoints {
        out.line(format!(
            "  checkpoint {step}: {} of {} records walked (run `instar up` to go on)",
            ck.done, ck.total
        ));
    }
    if let Some(i) = &v.interrupted {
        out.line(format!(
            "  a run was interrupted ({i}): the next `instar up` resumes it"
        ));
    }
    for p in &v.problems {
        out.line(format!("  problem: {p}"));
    }
    out.json(&serde_json::json!({ "status": v }));
    let unclean = !v.problems.is_empty()
        || !v.pending.is_empty()
        || !v.checkpoints.is_empty()
        || v.interrupted.is_some();
    Ok(if check && unclean { 1 } else { 0 })
}

fn history(s: &Service, out: &Out) -> Result<i32> {
    let h = s.kv_history()?;
    if h.is_empty() {
        out.line("no history: nothing was ever migrated in this store");
    }
    for e in &h {
        out.line(format!(
            "{:>4}  {:<8} {}  {} → {}  {} changed, {} skipped, {} ms  by {}{}",
            e.seq,
            e.kind,
            e.name,
            if e.from.is_empty() { "none" } else { &e.from },
            e.to,
            e.records_changed,
            e.records_skipped,
            e.duration_ms,
            e.by,
            e.error
                .as_deref()
                .map(|x| format!("  error: {x}"))
                .unwrap_or_default()
        ));
    }
    out.json(&h);
    Ok(0)
}

fn plan(s: &Service, to: Option<&str>, out: &Out) -> Result<i32> {
    let store = s.kv_store()?;
    let steps = s.kv_pending(store.as_ref(), to)?;
    if steps.is_empty() {
        out.line("nothing to do: the store is up to date");
    }
    let mut json = Vec::new();
    for st in &steps {
        let instar_service::kv::StepKind::Lens { collection, to } = &st.kind else {
            continue;
        };
        let docs = s.kv_documents(store.clone(), &collection.name)?;
        let counts = docs.dry_run(Some(to))?;
        let moving: u64 = counts
            .iter()
            .filter(|(v, _)| *v != to)
            .map(|(_, n)| n)
            .sum();
        out.line(format!(
            "{}: moves {moving} records of {} (prefix {}) to {to} through its lenses; by version now: {}",
            st.name,
            collection.name,
            instar_service::kv::keys::show(&collection.prefix),
            counts.iter().map(|(v, n)| format!("{v}: {n}")).collect::<Vec<_>>().join(", ")
        ));
        json.push(serde_json::json!({ "migration": st.name, "collection": collection.name, "to": to, "records_to_move": moving, "by_version": counts }));
    }
    out.json(&serde_json::json!({ "plan": json }));
    Ok(0)
}

fn walk_options(batch: u64, max_duration: Option<&str>, on_error: &str) -> Result<WalkOptions> {
    Ok(WalkOptions {
        batch_size: batch.max(1) as usize,
        on_error: super::on_error_arg(on_error)?,
        max_duration: super::max_duration_arg(max_duration)?,
        ..WalkOptions::default()
    })
}

fn up(s: &Service, to: Option<String>, run: &RunArgs, out: &mut Out) -> Result<i32> {
    if run.dry_run {
        return plan(s, to.as_deref(), out);
    }
    if run.single_transaction || run.parallel > 1 {
        bail!("--single-transaction and --parallel are for SQL databases; a key-value store commits each batch with its checkpoint");
    }
    let o = KvRunOptions {
        walk: walk_options(1000, run.max_duration.as_deref(), "stop")?,
        no_restore: run.no_restore,
        to,
    };
    let report = if run.no_backup {
        let mut settings = s.settings().clone();
        settings.backup = false;
        Service::new(settings).kv_up(&o, out)?
    } else {
        s.kv_up(&o, out)?
    };
    if let Some(r) = &report.resumed_from {
        out.note(format!("resumed a run that was interrupted ({r})"));
    }
    if report.paused {
        out.line("stopped at a checkpoint: the --max-duration budget is spent; run `instar up` again to continue");
    } else if report.applied.is_empty() {
        out.line("nothing to do: the store is up to date");
    } else {
        out.line(format!(
            "{} migration(s) applied; the store is at version {} ({} records rewritten{})",
            report.applied.len(),
            report.version.as_deref().unwrap_or("?"),
            report.records_changed,
            report
                .backup
                .as_deref()
                .map(|b| format!(", backup {b} taken before"))
                .unwrap_or_default()
        ));
    }
    out.json(&serde_json::json!({ "result": report }));
    Ok(0)
}

fn verify(s: &Service, out: &Out) -> Result<i32> {
    let list = s.kv_verify(1000)?;
    let mut failed = false;
    for v in &list {
        out.line(format!(
            "{} (prefix {}): {} records ({}); {} re-read at the current version, {}",
            v.collection,
            v.prefix,
            v.records,
            v.by_version
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            v.sampled,
            if v.failures.is_empty() {
                "all read".to_string()
            } else {
                format!("{} failed", v.failures.len())
            }
        ));
        if let Some(n) = v.after_last_migration {
            out.line(format!(
                "  {n} records under {} when the last migration that walked it ended",
                v.prefix
            ));
        }
        for f in &v.failures {
            out.line(format!("  {f}"));
        }
        failed |= !v.failures.is_empty();
    }
    out.json(&list);
    Ok(if failed { 1 } else { 0 })
}

fn backups(s: &Service, prune: bool, older_than: &str, out: &Out) -> Result<i32> {
    super::backups_or_prune(
        &s.settings().backup_dir,
        prune.then_some(older_than),
        |age| s.kv_prune(age),
        || s.kv_backups(),
        |b| {
            format!(
                "{}  {:>12} bytes  version {}  {}  {}",
                b.id,
                b.size_bytes,
                b.version.as_deref().unwrap_or("none"),
                b.reason,
                b.path.display()
            )
        },
        out,
    )
}

fn docs(s: &Service, action: &DocsCommand, out: &mut Out) -> Result<i32> {
    let store = s.kv_store()?;
    match action {
        DocsCommand::Get {
            collection,
            key,
            at,
        } => {
            let d = s.kv_documents(store, collection)?;
            Ok(super::print_document(
                collection,
                key,
                d.get(key, at.as_deref())?,
            ))
        }
        DocsCommand::List {
            collection,
            at,
            limit,
            after,
        } => {
            let d = s.kv_documents(store, collection)?;
            super::print_documents(d.list(at.as_deref(), after.as_deref(), *limit)?);
            Ok(0)
        }
        DocsCommand::Put {
            collection,
            key,
            at,
        } => {
            let d = s.kv_documents(store, collection)?;
            d.put(key, &super::stdin_document()?, at.as_deref())?;
            out.line(format!(
                "stored {collection} {key} at {}",
                d.collection().current()
            ));
            Ok(0)
        }
        DocsCommand::Migrate {
            collection,
            to,
            batch,
            parallel,
            max_duration,
            on_error,
            no_pushdown: _,
            dry_run,
        } => {
            if *parallel > 1 {
                bail!("--parallel is for SQL databases: a key-value store is walked in key order by one writer");
            }
            let d = s.kv_documents(store, collection)?;
            if *dry_run {
                let counts = d.dry_run(to.as_deref())?;
                let target = to
                    .clone()
                    .unwrap_or_else(|| d.collection().current().to_string());
                for (v, n) in &counts {
                    let what = if *v == target {
                        "already there".to_string()
                    } else {
                        format!("moved {v} → {target} through the lenses")
                    };
                    out.line(format!("{collection}: {n} records at {v}: {what}"));
                }
                out.json(&serde_json::json!({ "dry_run": { "to": target, "by_version": counts } }));
                return Ok(0);
            }
            let o = walk_options(*batch, max_duration.as_deref(), on_error)?;
            let end = d.migrate(to.as_deref(), &o, out)?;
            let (how, ck) = match &end {
                WalkEnd::Done(ck) => ("done: every record is at the target", ck),
                WalkEnd::Paused(ck) => ("paused at a checkpoint (run it again to go on)", ck),
            };
            out.line(format!(
                "{collection}: {} of {} records walked, {} rewritten, {} skipped; {how}",
                ck.done, ck.total, ck.changed, ck.skipped
            ));
            out.json(&serde_json::json!({ "migrated": {
                "collection": collection, "to": ck.target, "done": matches!(end, WalkEnd::Done(_)),
                "records_total": ck.total, "records_walked": ck.done, "records_changed": ck.changed,
                "records_skipped": ck.skipped, "records_left_to_the_application": ck.conflicts } }));
            Ok(0)
        }
    }
}
