//! The example application on real RocksDB: start-up migration, a newer
//! store refused, a store another process holds, and random kills during
//! the start-up migration (no record lost, none migrated twice).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use instar_kv::KvStore;
use instar_rocksdb::{RocksOptions, RocksStore};
use serde_json::Value;

fn tasks(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tasks"))
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .expect("tasks runs")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "tasks failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every task record, decoded.
fn records(store: &Path) -> Vec<(String, Value)> {
    let s = RocksStore::open(
        store,
        RocksOptions {
            create: false,
            ..Default::default()
        },
    )
    .expect("opens");
    s.scan(b"task:", None, usize::MAX)
        .expect("scan")
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8(k).unwrap(),
                serde_json::from_slice(&v).unwrap(),
            )
        })
        .collect()
}

fn check_migrated(store: &Path, n: usize) {
    let recs = records(store);
    assert_eq!(recs.len(), n, "no record lost or added");
    for (i, (k, v)) in recs.iter().enumerate() {
        assert_eq!(v["schema_version"], 3, "{k}");
        assert_eq!(v["rev"], 1, "{k}: migrated exactly once");
        assert_eq!(v["status"], if i % 3 == 0 { "done" } else { "open" }, "{k}");
        assert!(v.get("done").is_none(), "{k}");
    }
}

#[test]
fn migrates_on_start_up_and_an_older_release_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tasks.db");
    ok(&tasks(&db, &["seed", "250"]));
    // Release 2 migrates to 2 only.
    ok(&tasks(&db, &["--release", "2", "migrate"]));
    assert!(records(&db).iter().all(|(_, v)| v["schema_version"] == 2));
    // Release 3 goes on to 3; the list reads typed v3 records.
    let listed = ok(&tasks(&db, &["list"]));
    assert_eq!(listed.lines().count(), 250);
    check_migrated(&db, 250);
    ok(&tasks(&db, &["add", "write", "the", "report"]));
    // An older release now refuses to start, saying to upgrade.
    let o = tasks(&db, &["--release", "2", "list"]);
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("newer than this application supports (up to 2)")
            && err.contains("upgrade the application"),
        "{err}"
    );
    // A backup was taken before each run that rewrote records.
    let backups: Vec<_> = std::fs::read_dir(dir.path().join("tasks.db.backups"))
        .unwrap()
        .collect();
    assert_eq!(backups.len(), 2);
}

#[test]
fn a_store_open_in_another_process_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tasks.db");
    ok(&tasks(&db, &["seed", "10"]));
    let held = RocksStore::open(&db, RocksOptions::default()).unwrap();
    let o = tasks(&db, &["list"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("is open in another process") && err.contains("LOCK"),
        "{err}"
    );
    drop(held);
    ok(&tasks(&db, &["list"]));
}

fn trials() -> usize {
    std::env::var("INSTAR_KILL_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// A small deterministic generator (xorshift), seeded per trial.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn killed_at_random_moments_during_start_up_migration() {
    const N: usize = 3000;
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("template.db");
    ok(&tasks(&template, &["seed", &N.to_string()]));
    // How long a whole migration takes here, to aim the kills inside it.
    let probe = dir.path().join("probe.db");
    copy_dir(&template, &probe);
    let t = Instant::now();
    ok(&tasks(&probe, &["--batch", "50", "migrate"]));
    let full = t.elapsed().as_millis().max(10) as u64;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut mid = 0;
    let n = trials();
    for trial in 0..n {
        let db: PathBuf = dir.path().join(format!("t{trial}.db"));
        copy_dir(&template, &db);
        // Up to three kills in a row, each at a random moment, then a clean start.
        for _ in 0..3 {
            let wait = next(&mut seed) % (full + full / 2);
            let mut child = Command::new(env!("CARGO_BIN_EXE_tasks"))
                .arg("--store")
                .arg(&db)
                .args(["--batch", "50", "migrate"])
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(wait));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                mid += 1;
            }
            child.wait().unwrap();
        }
        ok(&tasks(&db, &["--batch", "50", "migrate"]));
        check_migrated(&db, N);
        std::fs::remove_dir_all(&db).unwrap();
    }
    println!("{n} trials, {mid} kills landed while the migration ran (a full one takes {full} ms)");
    assert!(
        mid >= n / 2,
        "too few kills landed mid-migration ({mid} of {n} trials)"
    );
}
