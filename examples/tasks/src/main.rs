//! `tasks`: a to-do list kept in RocksDB, the way many Rust services keep
//! their state — serde records under a key prefix (`task:<id>`), each with a
//! `schema_version` field — migrated on start-up by `instar_kv::Migrator`.
//!
//! Its record versions:
//! - 1: `{"title", "done": bool}`
//! - 2: `{"title", "status": "open" | "done"}` (Rust: `done` → `status`)
//! - 3: `{"title", "status", "tags": [], "rev"}` (Rust: `rev` counts
//!   rewrites, so a record migrated twice would show it)
//!
//! ```sh
//! tasks --store ./tasks.db add "write the report"
//! tasks --store ./tasks.db list
//! tasks --store ./tasks.db --release 2 list   # an older release: refused once the store is at 3
//! ```
//!
//! Exit codes: 0 done; 2 an error; 3 the store is newer than this release
//! (upgrade the application).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use instar_kv::{Error, FnMigration, KvStore, Migrator, Registry, RunOptions, WalkOptions};
use instar_rocksdb::{RocksOptions, RocksStore};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A task as this release (3) reads and writes it.
#[derive(Debug, Serialize, Deserialize)]
struct Task {
    title: String,
    status: String,
    tags: Vec<String>,
    rev: u64,
    schema_version: u64,
}

/// 1 → 2: the `done` flag becomes a `status`.
fn done_to_status(_key: &[u8], mut t: Value) -> Result<Value, String> {
    let o = t.as_object_mut().ok_or("not an object")?;
    let done = o.remove("done").and_then(|d| d.as_bool()).unwrap_or(false);
    o.insert("status".into(), json!(if done { "done" } else { "open" }));
    Ok(t)
}

/// 2 → 3: tags, and a revision counter (not idempotent: run twice, it shows).
fn tags_and_revision(_key: &[u8], mut t: Value) -> Result<Value, String> {
    let rev = t.get("rev").and_then(Value::as_u64).unwrap_or(0);
    t["tags"] = json!([]);
    t["rev"] = json!(rev + 1);
    Ok(t)
}

/// The migrations this application has, up to `release`.
fn registry(release: u32) -> Registry {
    let all = [
        FnMigration::new(
            "1",
            "2",
            "done flag to status",
            b"task:",
            done_to_status as fn(&[u8], Value) -> Result<Value, String>,
        ),
        FnMigration::new("2", "3", "tags and revision", b"task:", tags_and_revision),
    ];
    let mut r = Registry::new().initial("1");
    for (i, m) in all.into_iter().enumerate() {
        if release as usize >= i + 2 {
            r = r.register(m);
        }
    }
    r
}

struct Args {
    store: PathBuf,
    release: u32,
    batch: usize,
    command: Vec<String>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        store: PathBuf::from("tasks.db"),
        release: 3,
        batch: 1000,
        command: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--store" => a.store = it.next().ok_or("--store PATH")?.into(),
            "--release" => {
                a.release = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--release N (1 to 3)")?
            }
            "--batch" => a.batch = it.next().and_then(|v| v.parse().ok()).ok_or("--batch N")?,
            _ => a.command.push(x),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            eprintln!("tasks: {msg}");
            ExitCode::from(code)
        }
    }
}

fn run() -> Result<(), (u8, String)> {
    let a = args().map_err(|e| (2, format!("usage: tasks [--store PATH] [--release N] [--batch N] list|add TITLE|done ID|seed N|migrate ({e})")))?;
    let store: Arc<dyn KvStore> = Arc::new(
        RocksStore::open(&a.store, RocksOptions::default()).map_err(|e| (2, e.to_string()))?,
    );
    if a.command.first().map(String::as_str) == Some("seed") {
        // Writes version-1 records as an old release did (no migration).
        let n: usize = a
            .command
            .get(1)
            .and_then(|v| v.parse().ok())
            .ok_or((2, "seed N".to_string()))?;
        return seed(store.as_ref(), n).map_err(|e| (2, e.to_string()));
    }
    // Start-up: bring the store to this release's version, or refuse.
    let backups = a.store.with_file_name(format!(
        "{}.backups",
        a.store.file_name().unwrap_or_default().to_string_lossy()
    ));
    let options = RunOptions {
        walk: WalkOptions {
            batch_size: a.batch,
            ..Default::default()
        },
        ..Default::default()
    };
    let migrator = Migrator::new(store.clone(), registry(a.release))
        .options(options)
        .backups(backups);
    match migrator.migrate_with(&mut ProgressSink) {
        Ok(r) if !r.applied.is_empty() => eprintln!(
            "tasks: store migrated to version {} ({} records rewritten)",
            r.version.unwrap_or_default(),
            r.records_changed
        ),
        Ok(_) => {}
        Err(e @ Error::Newer(_)) => return Err((3, format!("{e}"))),
        Err(e) => return Err((2, e.to_string())),
    }
    command(store.as_ref(), &a).map_err(|e| (2, e))
}

fn seed(store: &dyn KvStore, n: usize) -> Result<(), instar_kv::StoreError> {
    let mut b = instar_kv::Batch::default();
    for i in 0..n {
        let v = json!({"title": format!("task {i}"), "done": i % 3 == 0, "schema_version": 1});
        b.put(format!("task:{i:08}"), v.to_string());
        if b.writes.len() == 10_000 {
            store.commit(std::mem::take(&mut b))?;
        }
    }
    store.commit(b).map(|_| ())
}

fn command(store: &dyn KvStore, a: &Args) -> Result<(), String> {
    let words: Vec<&str> = a.command.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["migrate"] | [] => Ok(()),
        ["list"] => {
            for (k, v) in store
                .scan(b"task:", None, usize::MAX)
                .map_err(|e| e.to_string())?
            {
                let t: Task = serde_json::from_slice(&v)
                    .map_err(|e| format!("{}: {e}", String::from_utf8_lossy(&k)))?;
                println!(
                    "{}\t{}\t{}",
                    String::from_utf8_lossy(&k[5..]),
                    t.status,
                    t.title
                );
            }
            Ok(())
        }
        ["add", title @ ..] => {
            let id = store.count(b"task:").map_err(|e| e.to_string())?;
            let t = Task {
                title: title.join(" "),
                status: "open".into(),
                tags: vec![],
                rev: 0,
                schema_version: 3,
            };
            store
                .put(
                    format!("task:{id:08}").as_bytes(),
                    &serde_json::to_vec(&t).expect("serializes"),
                )
                .map_err(|e| e.to_string())
        }
        ["done", id] => {
            let key = format!("task:{id:0>8}");
            let raw = store
                .get(key.as_bytes())
                .map_err(|e| e.to_string())?
                .ok_or(format!("no task {id}"))?;
            let mut t: Task = serde_json::from_slice(&raw).map_err(|e| e.to_string())?;
            t.status = "done".into();
            store
                .put(key.as_bytes(), &serde_json::to_vec(&t).expect("serializes"))
                .map_err(|e| e.to_string())
        }
        other => Err(format!(
            "unknown command {other:?}: list, add TITLE, done ID, seed N, migrate"
        )),
    }
}

/// Start-up progress on stderr: a line every 10 batches.
struct ProgressSink;

impl instar_kv::EventSink for ProgressSink {
    fn event(&mut self, e: &instar_kv::Event) {
        if let instar_kv::Event::BatchFinished {
            batch,
            rows_done,
            rows_total,
            eta_ms,
            ..
        } = e
        {
            if batch % 10 == 0 {
                eprintln!(
                    "tasks: migrating {rows_done}/{rows_total} records, about {} s left",
                    eta_ms / 1000
                );
            }
        }
    }
}
