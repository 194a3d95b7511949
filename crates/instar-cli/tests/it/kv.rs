//! `instar` on a RocksDB store (`rocksdb:` URL): a `tasks` collection under
//! the prefix `task:`, moved from 1 to 2 by a documents migration; status,
//! plan, up, history, verify, docs, backups and restore, and the faults.

use std::path::Path;
use std::process::Output;

use instar_kv::KvStore;
use instar_rocksdb::{RocksOptions, RocksStore};
use serde_json::{json, Value};

const TOML: &str = r#"[database]
url = "rocksdb:store"

[collections.tasks]
store = "kv"
prefix = "task:"
versions = ["1", "2"]
"#;

const LENS: &str = "lens:\n- rename: {source: title, destination: name}\n- add: {name: priority, type: number, default: 0}\n";

/// A project in `dir`: the collection, its lens, one documents migration.
pub(crate) fn project(dir: &Path) {
    let w = |p: &str, text: &str| {
        let p = dir.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w("instar.toml", TOML);
    w("collections/tasks/lenses/1--2.lens.yaml", LENS);
    w(
        "migrations/0001_tasks_to_2/migration.toml",
        "kind = \"documents\"\n[documents]\ncollection = \"tasks\"\nto = \"2\"\nbatch_size = 40\n",
    );
    w(
        "migrations/0001_tasks_to_2/up.sql",
        "-- moves the tasks to 2 through their lens\n",
    );
}

/// `n` records at 1 (one without a version field: the default, 1).
pub(crate) fn seed(dir: &Path, n: usize) {
    let s = RocksStore::open(dir.join("store"), RocksOptions::default()).unwrap();
    let mut b = instar_kv::Batch::default();
    for i in 0..n {
        let v = if i == 7 {
            json!({"title": format!("t{i}")})
        } else {
            json!({"title": format!("t{i}"), "schema_version": 1})
        };
        b.put(format!("task:{i:05}"), v.to_string());
    }
    b.put("user:1", r#"{"name":"ada"}"#);
    s.commit(b).unwrap();
}

/// Every pair in the store but Instar's own.
pub(crate) fn dump(dir: &Path) -> Vec<(String, String)> {
    let s = RocksStore::open(
        dir.join("store"),
        RocksOptions {
            create: false,
            ..Default::default()
        },
    )
    .unwrap();
    instar_kv::testing::records(&s)
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8(k).unwrap(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect()
}

pub(crate) fn run(dir: &Path, args: &[&str]) -> Output {
    crate::instar_in(dir).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub(crate) fn ok(dir: &Path, args: &[&str]) -> String {
    let o = run(dir, args);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(dir: &Path, args: &[&str], code: i32, expect: &[&str]) -> String {
    let o = run(dir, args);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {t}");
    for e in expect {
        assert!(t.contains(e), "{args:?}: expected {e:?} in: {t}");
    }
    t
}

/// Each task record as the move leaves it.
pub(crate) fn check_moved(dir: &Path, n: usize) {
    let d = dump(dir);
    assert_eq!(d.len(), n + 1);
    for (k, v) in &d[..n] {
        let v: Value = serde_json::from_str(v).unwrap();
        let i: usize = k[5..].parse().unwrap();
        assert_eq!(
            v,
            json!({"name": format!("t{i}"), "priority": 0, "schema_version": 2}),
            "{k}"
        );
    }
    assert_eq!(
        d[n],
        ("user:1".to_string(), r#"{"name":"ada"}"#.to_string())
    );
}

#[test]
fn a_store_is_planned_migrated_verified_and_restored() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    project(d);
    seed(d, 100);
    let before = dump(d);
    fails(
        d,
        &["status", "--check"],
        1,
        &["pending  0001 tasks_to_2", "schema version: none"],
    );
    let plan = ok(d, &["plan"]);
    assert!(
        plan.contains("moves 100 records of tasks (prefix task:) to 2") && plan.contains("1: 100"),
        "{plan}"
    );
    ok(d, &["up", "--dry-run"]);
    assert_eq!(dump(d), before, "a dry run writes nothing");
    let up: Value =
        serde_json::from_str(ok(d, &["up", "--format", "json"]).lines().last().unwrap()).unwrap();
    assert_eq!(up["result"]["applied"], json!(["0001 tasks_to_2"]));
    assert_eq!(up["result"]["records_changed"], json!(100));
    check_moved(d, 100);
    assert!(ok(d, &["history"]).contains("lens     0001 tasks_to_2  none → 0001  100 changed"));
    ok(d, &["status", "--check"]);
    assert!(ok(d, &["verify"]).contains(
        "tasks (prefix task:): 100 records (2: 100); 100 re-read at the current version, all read"
    ));
    // The old release's view, and a write at 1 read back exactly.
    assert_eq!(
        ok(d, &["docs", "get", "tasks", "task:00003", "--at", "1"]).trim(),
        r#"{"schema_version":1,"title":"t3"}"#
    );
    crate::instar_in(d)
        .args(["docs", "put", "tasks", "task:00500", "--at", "1"])
        .write_stdin(r#"{"title":"x","keep":[1]}"#)
        .assert()
        .success();
    assert_eq!(
        ok(d, &["docs", "get", "tasks", "task:00500", "--at", "1"]).trim(),
        r#"{"keep":[1],"schema_version":1,"title":"x"}"#
    );
    // The backup taken before the run puts the store back as it was.
    let list: Value = serde_json::from_str(ok(d, &["backups", "--format", "json"]).trim()).unwrap();
    let id = list[0]["id"].as_str().unwrap().to_string();
    fails(d, &["restore", &id], 2, &["add --force"]);
    let restored = ok(d, &["restore", &id, "--force"]);
    assert!(restored.contains("undoes this"), "{restored}");
    assert_eq!(dump(d), before);
    assert!(ok(d, &["history"]).contains("restore"));
}

#[test]
fn faults_are_named_and_leave_the_store_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    project(d);
    seed(d, 100);
    {
        let s = RocksStore::open(d.join("store"), RocksOptions::default()).unwrap();
        s.put(b"task:00061", b"{broken").unwrap();
    }
    let before = dump(d);
    fails(
        d,
        &["up"],
        2,
        &["task:00061", "not JSON", "restored from backup"],
    );
    assert_eq!(dump(d), before, "restored exactly");
    assert!(ok(d, &["history"]).contains("failed"));
    fails(d, &["verify"], 1, &["task:00061", "not JSON", "1 failed"]);
    // Left as it stopped: every record whole at 1 or 2, none at both.
    fails(
        d,
        &["up", "--no-restore"],
        2,
        &["task:00061", "--no-restore"],
    );
    let at2 = dump(d)
        .iter()
        .filter(|(k, v)| k.starts_with("task:") && v.contains("\"schema_version\":2"))
        .count();
    assert_eq!(at2, 40, "the batch before the broken record");
    // Fixed, the next run resumes and finishes.
    {
        let s = RocksStore::open(d.join("store"), RocksOptions::default()).unwrap();
        s.put(b"task:00061", br#"{"title":"t61","schema_version":1}"#)
            .unwrap();
    }
    ok(d, &["up"]);
    check_moved(d, 100);
    // Another process holds the store: said, with what to do.
    let held = RocksStore::open(d.join("store"), RocksOptions::default()).unwrap();
    fails(
        d,
        &["status"],
        2,
        &["is open in another process", "stop the application"],
    );
    drop(held);
    // An edited lens after it was applied refuses the next run.
    std::fs::write(
        d.join("collections/tasks/lenses/1--2.lens.yaml"),
        LENS.replace("default: 0", "default: 1"),
    )
    .unwrap();
    fails(d, &["up"], 2, &["changed after it was applied"]);
}

#[test]
fn paths_and_folders_that_are_not_a_store_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    project(d);
    std::fs::create_dir_all(d.join("store")).unwrap();
    std::fs::write(d.join("store/notes.txt"), "mine").unwrap();
    fails(
        d,
        &["status"],
        2,
        &["is not a RocksDB database (a folder without a CURRENT file)"],
    );
    assert_eq!(
        std::fs::read_dir(d.join("store")).unwrap().count(),
        1,
        "nothing written into it"
    );
    std::fs::remove_dir_all(d.join("store")).unwrap();
    std::fs::write(d.join("store"), "a file").unwrap();
    fails(
        d,
        &["status"],
        2,
        &["is not a RocksDB database (it is a file)"],
    );
    // A SQL migration in a store's folder is refused, naming it.
    std::fs::remove_file(d.join("store")).unwrap();
    std::fs::create_dir_all(d.join("migrations/0002_sql")).unwrap();
    std::fs::write(
        d.join("migrations/0002_sql/up.sql"),
        "CREATE TABLE t (x int);",
    )
    .unwrap();
    fails(
        d,
        &["up"],
        2,
        &[
            "migration 0002",
            "0002_sql/up.sql",
            "is not a documents migration",
        ],
    );
}

#[test]
fn docs_migrate_pauses_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    project(d);
    seed(d, 100);
    let dry = ok(d, &["docs", "migrate", "tasks", "--dry-run"]);
    assert!(dry.contains("100 records at 1: moved 1 → 2"), "{dry}");
    let paused = ok(
        d,
        &[
            "docs",
            "migrate",
            "tasks",
            "--batch",
            "10",
            "--max-duration",
            "0s",
        ],
    );
    assert!(paused.contains("paused at a checkpoint"), "{paused}");
    let done = ok(d, &["docs", "migrate", "tasks", "--batch", "10"]);
    assert!(
        done.contains("100 of 100 records walked, 100 rewritten"),
        "{done}"
    );
    check_moved(d, 100);
    assert!(
        ok(d, &["status"]).contains("pending  0001 tasks_to_2"),
        "no history entry: the migration is still pending"
    );
    let up = ok(d, &["up"]);
    assert!(
        up.contains("1 migration(s) applied; the store is at version 0001 (0 records rewritten"),
        "{up}"
    );
}

#[test]
fn up_killed_at_random_moments_ends_fully_migrated() {
    const N: usize = 400;
    let trials = crate::kills::kill_trials();
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("template");
    project(&template);
    seed(&template, N);
    let t = std::time::Instant::now();
    let probe = dir.path().join("probe");
    copy_tree(&template, &probe);
    ok(&probe, &["up", "--no-backup"]);
    let full = t.elapsed().as_millis().max(10) as u64;
    let mut seed_ = 0x2545_f491_4f6c_dd1du64;
    let mut landed = 0;
    for trial in 0..trials {
        let d = dir.path().join(format!("t{trial}"));
        copy_tree(&template, &d);
        for _ in 0..2 {
            seed_ ^= seed_ << 13;
            seed_ ^= seed_ >> 7;
            seed_ ^= seed_ << 17;
            let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("instar"))
                .current_dir(&d)
                .env_remove("DATABASE_URL")
                .env_remove("INSTAR_DATABASE_URL")
                .args(["up", "--no-backup"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(seed_ % full));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                landed += 1;
            }
            child.wait().unwrap();
        }
        ok(&d, &["up", "--no-backup"]);
        check_moved(&d, N);
        ok(&d, &["status", "--check"]);
        std::fs::remove_dir_all(&d).unwrap();
    }
    println!(
        "{trials} trials, {landed} kills landed during `instar up` (a whole run takes {full} ms)"
    );
    assert!(
        landed >= trials / 2,
        "too few kills landed mid-run: {landed} of {trials}"
    );
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// `unshare` (util-linux) gives the test a mount namespace of its own, where
/// a small or read-only tmpfs holds the store; missing, the test is skipped
/// (it fails under CI=true).
fn unshare_available() -> bool {
    let ok = std::process::Command::new("unshare")
        .args(["-rm", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").is_err(),
            "unshare -rm does not work here: the disk-full and read-only tests cannot run"
        );
        println!("SKIPPED disk-full and read-only store tests: `unshare -rm` is not available");
    }
    ok
}

/// Runs `script` (sh) in a private mount namespace with `$P` the project and
/// `$I` the instar binary; returns its exit code and output.
fn in_namespace(project: &Path, script: &str) -> (i32, String) {
    let o = std::process::Command::new("unshare")
        .args(["-rm", "sh", "-c", script])
        .env("P", project)
        .env("I", assert_cmd::cargo::cargo_bin("instar"))
        .env("XDG_CACHE_HOME", project.join(".cache"))
        .env_remove("DATABASE_URL")
        .env_remove("INSTAR_DATABASE_URL")
        .output()
        .unwrap();
    (o.status.code().unwrap_or(-1), text(&o))
}

/// After a failed run: every task record whole, at 1 or at 2 (with the
/// fields of that version), and the store's version set only if all are at 2.
fn whole(dir: &Path, n: usize) {
    let d = dump(dir);
    assert_eq!(d.len(), n + 1, "no record lost");
    for (k, v) in d.iter().filter(|(k, _)| k.starts_with("task:")) {
        let v: Value = serde_json::from_str(v).unwrap_or_else(|e| panic!("{k} half-written: {e}"));
        let i: usize = k[5..].parse().unwrap();
        let at1 = v == json!({"title": format!("t{i}"), "schema_version": 1})
            || (i == 7 && v == json!({"title": "t7"}));
        let at2 = v == json!({"name": format!("t{i}"), "priority": 0, "schema_version": 2});
        assert!(at1 || at2, "{k}: {v}");
    }
}

#[test]
fn a_full_disk_or_a_read_only_store_fails_cleanly() {
    if !unshare_available() {
        return;
    }
    const N: usize = 3000;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("p");
    project(&d);
    seed(&d, N);
    let before = dump(&d);
    // Read-only: the store on a tmpfs remounted read-only.
    let (code, out) = in_namespace(
        &d,
        r#"set -e
        mkdir -p "$P/ro"; mount -t tmpfs tmpfs "$P/ro"; cp -a "$P/store" "$P/ro/store"
        mount -o remount,ro "$P/ro"
        cd "$P"; set +e; "$I" --database "rocksdb:$P/ro/store" up; code=$?
        rm -rf "$P/ro-after"; cp -a "$P/ro/store" "$P/ro-after"; exit $code"#,
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("Read-only file system") && out.contains("cannot be written"),
        "{out}"
    );
    let mut after = dir.path().join("ro");
    std::fs::create_dir_all(&after).unwrap();
    after = after.join("x");
    copy_tree(&d.join("ro-after"), &after.join("store"));
    assert_eq!(dump(&after), before, "nothing written");
    // Full: a tmpfs a little bigger than the store (the rewrite needs more);
    // the backup on the real disk.
    let size: u64 = std::fs::read_dir(d.join("store"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len().div_ceil(4096) * 4)
        .sum();
    let script = r#"set -e
        mkdir -p "$P/full"; mount -t tmpfs -o size=__SIZE__k tmpfs "$P/full"; cp -a "$P/store" "$P/full/store"
        cd "$P"; set +e
        "$I" --database "rocksdb:$P/full/store" up; code=$?
        rm -rf "$P/full-after"; cp -a "$P/full/store" "$P/full-after"; exit $code"#;
    let (code, out) = in_namespace(&d, &script.replace("__SIZE__", &(size + 96).to_string()));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("No space left on device") || out.contains("disk is full"),
        "{out}"
    );
    let after = dir.path().join("full");
    copy_tree(&d.join("full-after"), &after.join("store"));
    whole(&after, N);
    println!("disk full: {}", out.lines().last().unwrap_or_default());
}

/// A lens with a WebAssembly stage (`add.wasm`: Age + 1, inverse Age - 1) on
/// a key-value collection: read and written at both versions, then moved by
/// `instar up` killed at random moments: every record through the module
/// exactly once.
#[test]
fn a_wasm_lens_moves_every_record_exactly_once() {
    const N: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    project(d);
    let lenses = d.join("collections/tasks/lenses");
    crate::wasm::module(&lenses, "add");
    std::fs::write(
        lenses.join("1--2.lens.yaml"),
        "lens:\n- rename: {source: title, destination: name}\n- wasm: {path: add.wasm}\n",
    )
    .unwrap();
    {
        let s = RocksStore::open(d.join("store"), RocksOptions::default()).unwrap();
        let mut b = instar_kv::Batch::default();
        for i in 0..N {
            b.put(
                format!("task:{i:05}"),
                json!({"title": format!("t{i}"), "Age": i, "schema_version": 1}).to_string(),
            );
        }
        s.commit(b).unwrap();
    }
    let got: Value = serde_json::from_str(&ok(d, &["docs", "get", "tasks", "task:00007"])).unwrap();
    assert_eq!(got, json!({"name": "t7", "Age": 8, "schema_version": 2}));
    crate::instar_in(d)
        .args(["docs", "put", "tasks", "task:09999"])
        .write_stdin(r#"{"name":"n","Age":50,"schema_version":2}"#)
        .assert()
        .success();
    let back: Value =
        serde_json::from_str(&ok(d, &["docs", "get", "tasks", "task:09999", "--at", "1"])).unwrap();
    assert_eq!(back, json!({"title": "n", "Age": 49, "schema_version": 1}));
    {
        let s = RocksStore::open(d.join("store"), RocksOptions::default()).unwrap();
        let mut b = instar_kv::Batch::default();
        b.delete("task:09999");
        s.commit(b).unwrap();
    }
    let mut seed_ = 0x5851_f42d_4c95_7f2du64;
    for _ in 0..5 {
        seed_ ^= seed_ << 13;
        seed_ ^= seed_ >> 7;
        seed_ ^= seed_ << 17;
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("instar"))
            .current_dir(d)
            .env("XDG_CACHE_HOME", d.join(".cache"))
            .args(["up", "--no-backup"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(seed_ % 400));
        let _ = child.kill();
        child.wait().unwrap();
    }
    ok(d, &["up"]);
    let all = dump(d);
    assert_eq!(all.len(), N);
    for (k, v) in all {
        let v: Value = serde_json::from_str(&v).unwrap();
        let i: u64 = k[5..].parse().unwrap();
        assert_eq!(
            v,
            json!({"name": format!("t{i}"), "Age": i + 1, "schema_version": 2}),
            "{k}: through the module once"
        );
    }
}
