//! `cargo bench -p instar-rocksdb --bench kv -- [--rows N] [--runs R]`:
//! migrating N small records under
//! one prefix of a RocksDB store, in process. Instar (a declarative lens
//! move, and a Rust record migration: batched, checkpointed, guarded,
//! synced) next to the limit, a plain loop that reads each record, rewrites
//! it and writes it back with one `WriteBatch` per 10,000 records (synced
//! too, and not), in the same run; peak RSS of each in its own process;
//! and the cost of the start-up check on an up-to-date store.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use instar_kv::{
    Batch, Encoding, FnMigration, KvStore, Migrator, Registry, RunOptions, WalkOptions,
};
use instar_rocksdb::{RocksOptions, RocksStore};
use serde_json::{json, Value};

struct Args {
    rows: u64,
    runs: usize,
}

fn args() -> Args {
    let mut a = Args {
        rows: 1_000_000,
        runs: 3,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for w in argv.windows(2) {
        match w[0].as_str() {
            "--rows" => a.rows = w[1].parse().expect("--rows N"),
            "--runs" => a.runs = w[1].parse().expect("--runs R"),
            _ => {}
        }
    }
    a
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("one") {
        one(&argv[2], Path::new(&argv[3]));
        return;
    }
    bench(&args());
}

/// The median of `v`.
fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

/// The median over runs of `a[k] / b[k]` (runs made one after the other).
fn ratio(a: &[Duration], b: &[Duration]) -> f64 {
    let mut r: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(x, y)| x.as_secs_f64() / y.as_secs_f64())
        .collect();
    r.sort_by(f64::total_cmp);
    r[r.len() / 2]
}

const BATCH: usize = 10_000;

fn open(dir: &Path) -> RocksStore {
    RocksStore::open(dir, RocksOptions::default()).expect("open store")
}

fn seed(dir: &Path, n: u64) {
    let s = open(dir);
    let mut b = Batch::default();
    for i in 0..n {
        let v = json!({"title": format!("task {i}"), "done": i % 3 == 0, "schema_version": 1});
        b.put(
            format!("task:{i:010}"),
            serde_json::to_vec(&v).expect("json"),
        );
        if b.writes.len() == BATCH {
            s.commit(std::mem::take(&mut b)).expect("seed");
        }
    }
    s.commit(b).expect("seed");
}

/// The change, by hand: `title` → `name`, `priority: 0` added, version 2.
fn rewrite(mut v: Value) -> Value {
    let o = v.as_object_mut().expect("object");
    if let Some(t) = o.remove("title") {
        o.insert("name".into(), t);
    }
    o.insert("priority".into(), json!(0));
    o.insert("schema_version".into(), json!(2));
    v
}

/// The plain loop on the raw RocksDB handle.
fn plain(dir: &Path, sync: bool) {
    use instar_rocksdb::rocksdb::{IteratorMode, Options, WriteBatch, WriteOptions, DB};
    let db = DB::open(&Options::default(), dir).expect("open");
    let mut wo = WriteOptions::default();
    wo.set_sync(sync);
    let mut wb = WriteBatch::default();
    let mut n = 0;
    for item in db.iterator(IteratorMode::From(
        b"task:",
        instar_rocksdb::rocksdb::Direction::Forward,
    )) {
        let (k, v) = item.expect("read");
        if !k.starts_with(b"task:") {
            break;
        }
        let doc: Value = serde_json::from_slice(&v).expect("json");
        wb.put(&k, serde_json::to_vec(&rewrite(doc)).expect("json"));
        n += 1;
        if n % BATCH == 0 {
            db.write_opt(std::mem::take(&mut wb), &wo).expect("write");
        }
    }
    db.write_opt(wb, &wo).expect("write");
}

fn lens_collection() -> instar_kv::KvCollection {
    let mut c = instar_kv::testing::tasks(Encoding::Json);
    c.prefix = b"task:".to_vec();
    c
}

fn instar_lens(dir: &Path) {
    let s = open(dir);
    let step = instar_kv::Step {
        version: "1".into(),
        from: String::new(),
        name: "move tasks".into(),
        kind: instar_kv::StepKind::Lens {
            collection: Arc::new(lens_collection()),
            to: "2".into(),
        },
        fingerprint: None,
        walk: None,
    };
    let o = RunOptions {
        walk: WalkOptions {
            batch_size: BATCH,
            ..Default::default()
        },
        ..Default::default()
    };
    instar_kv::run::run(&s, &[step], &o, &mut instar_kv::NullSink).expect("lens move");
}

fn registry() -> Registry {
    Registry::new().register(FnMigration::new(
        "1",
        "2",
        "rename title",
        b"task:",
        |_, v| Ok(rewrite(v)),
    ))
}

fn instar_records(dir: &Path) {
    let s: Arc<dyn KvStore> = Arc::new(open(dir));
    let o = RunOptions {
        walk: WalkOptions {
            batch_size: BATCH,
            ..Default::default()
        },
        ..Default::default()
    };
    Migrator::new(s, registry())
        .options(o)
        .migrate()
        .expect("migrate");
}

/// `kv one MODE DIR`: one mode in this process; prints
/// `seconds peak_rss_kib`.
fn one(mode: &str, dir: &Path) {
    let t = Instant::now();
    match mode {
        "plain" => plain(dir, true),
        "plain-nosync" => plain(dir, false),
        "lens" => instar_lens(dir),
        "records" => instar_records(dir),
        "check" => {
            let s: Arc<dyn KvStore> = Arc::new(open(dir));
            let m = Migrator::new(s, registry());
            let t = Instant::now();
            for _ in 0..1000 {
                m.migrate().expect("no-op");
            }
            println!("{} {}", t.elapsed().as_secs_f64() / 1000.0, peak_kib());
            return;
        }
        other => panic!("unknown mode {other}"),
    }
    println!("{} {}", t.elapsed().as_secs_f64(), peak_kib());
}

fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

fn child(mode: &str, dir: &Path) -> (Duration, u64) {
    let out = Command::new(std::env::current_exe().expect("exe"))
        .args(["one", mode])
        .arg(dir)
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{mode}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut w = text.split_whitespace();
    let secs: f64 = w.next().and_then(|x| x.parse().ok()).expect("seconds");
    (
        Duration::from_secs_f64(secs),
        w.next().and_then(|x| x.parse().ok()).unwrap_or(0),
    )
}

fn bench(a: &Args) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let template = tmp.path().join("template");
    seed(&template, a.rows);
    println!("\n### RocksDB: {} records under one prefix, batches of {BATCH}\n\n| what | median ms | vs limit (median of paired ratios) |\n|---|---:|---:|", a.rows);
    let modes = ["plain", "plain-nosync", "lens", "records"];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); modes.len()];
    let mut rss = vec![0u64; modes.len()];
    for r in 0..a.runs {
        for (i, m) in modes.iter().enumerate() {
            let d = tmp.path().join(format!("{m}-{r}"));
            copy(&template, &d);
            let (t, kib) = child(m, &d);
            times[i].push(t);
            rss[i] = rss[i].max(kib);
            std::fs::remove_dir_all(&d).expect("clean");
        }
    }
    for (i, m) in modes.iter().enumerate() {
        let what = match *m {
            "plain" => "plain loop, WriteBatch per 10,000, synced (the limit)",
            "plain-nosync" => "plain loop, WriteBatch per 10,000, not synced",
            "lens" => "instar: declarative lens move (rename + add)",
            _ => "instar: Rust RecordMigration (same change)",
        };
        let med = median(&times[i]);
        println!(
            "| {what:<58} | {:>9.1} | {:>6.2}x (limit/this: {:.2}; {:.0} records/s; peak RSS {} MiB) |",
            med.as_secs_f64() * 1000.0,
            ratio(&times[i], &times[0]),
            ratio(&times[0], &times[i]),
            a.rows as f64 / med.as_secs_f64(),
            rss[i] / 1024
        );
    }
    // The start-up check on an up-to-date store: the same on 1,000 records
    // as on N.
    let small = tmp.path().join("small");
    seed(&small, 1000);
    for (name, dir) in [
        ("1,000 records", small.as_path()),
        (&format!("{} records", a.rows) as &str, template.as_path()),
    ] {
        let _ = child("records", dir);
        let (t, _) = child("check", dir);
        println!(
            "| start-up check, store up to date, {name:<28} | {:>9.4} | per call |",
            t.as_secs_f64() * 1000.0
        );
    }
}
