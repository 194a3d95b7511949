//! WebAssembly lens stages through the CLI: DefraDB's lens config read
//! natively and streamed like its host's command line; a `wasm` op between
//! declarative ops in a collection's lens, read lazily and moved eagerly on
//! every engine (killed at random moments, resumed exactly); an edited module
//! reported like an edited SQL file; hostile modules named per document.

use std::path::{Path, PathBuf};

use crate::adopt::exec;
use crate::documents::{json, ok, run, users};
use crate::documents_eager::{kill_up, migration, seed};
use crate::harness::{Backend, TestDb};

/// The users' `add.wasm` again with one more (unused) function: other bytes, same behaviour.
fn rebuild_add_module(t: &TestDb) {
    let src = instar_wasm::testing::source("add");
    let src = format!("{} (func $unused))", src.trim_end().trim_end_matches(')'));
    std::fs::write(
        t.dir.path().join("collections/users/lenses/add.wasm"),
        wat::parse_str(src).unwrap(),
    )
    .unwrap();
}

/// Test module `name` (instar-wasm's WAT sources) compiled into `dir`.
pub(crate) fn module(dir: &Path, name: &str) -> PathBuf {
    let bytes = wat::parse_str(instar_wasm::testing::source(name)).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(format!("{name}.wasm"));
    std::fs::write(&p, bytes).unwrap();
    p
}

fn apply(dir: &Path, lens: &str, stdin: &str, reverse: bool) -> (i32, String, String) {
    let mut c = crate::instar_in(dir);
    c.args(["lens", "apply", lens]);
    if reverse {
        c.arg("--reverse");
    }
    let out = c.write_stdin(stdin).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn defradb_lens_configs_run_like_its_host() {
    let d = tempfile::tempdir().unwrap();
    module(d.path(), "rename");
    let add = module(d.path(), "add");
    module(d.path(), "filter");
    module(d.path(), "normalize");
    std::fs::write(
        d.path().join("pipeline.json"),
        format!(
            r#"{{"Lenses": [{{"Path": "rename.wasm", "Arguments": {{"src": "Name", "dst": "FullName"}}}}, {{"path": "file://{}"}}]}}"#,
            add.display()
        ),
    )
    .unwrap();
    let (code, out, err) = apply(
        d.path(),
        "pipeline.json",
        r#"[{"Name": "Ada", "Age": 41}, {"Age": 1}]"#,
        false,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        json(&out),
        serde_json::json!([{"FullName": "Ada", "Age": 42}, {"Age": 2}])
    );
    let (code, back, err) = apply(d.path(), "pipeline.json", &out, true);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        json(&back),
        serde_json::json!([{"Name": "Ada", "Age": 41}, {"Age": 1}])
    );

    // N:1 and 1:N stages take the whole stream; declarative ops each document.
    std::fs::write(
        d.path().join("mixed.lens.yaml"),
        "lens:\n- wasm: {path: filter.wasm}\n- rename: {source: __type, destination: kind}\n",
    )
    .unwrap();
    let (code, out, err) = apply(
        d.path(),
        "mixed.lens.yaml",
        r#"[{"__type": "pass", "i": 1}, {"__type": "no"}, {"__type": "pass", "i": 2}]"#,
        false,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        json(&out),
        serde_json::json!([{"kind": "pass", "i": 1}, {"kind": "pass", "i": 2}])
    );
    std::fs::write(
        d.path().join("books.json"),
        r#"{"lenses": [{"path": "normalize.wasm"}]}"#,
    )
    .unwrap();
    let (_, out, _) = apply(
        d.path(),
        "books.json",
        r#"[{"pages": 2}, {"pages": 0}]"#,
        false,
    );
    assert_eq!(json(&out), serde_json::json!([{"page": 1}, {"page": 2}]));

    // One-way: the filter has no inverse, and check says so.
    let check = crate::instar_in(d.path())
        .args(["lens", "check", "mixed.lens.yaml"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success()
            && text.contains("one-way: module filter.wasm has no `inverse` export"),
        "{text}"
    );
    let (code, _, err) = apply(d.path(), "mixed.lens.yaml", "[]", true);
    assert!(code == 2 && err.contains("one-way"), "{err}");
}

#[test]
fn bad_modules_and_paths_are_named() {
    let d = tempfile::tempdir().unwrap();
    module(d.path(), "refuse");
    module(d.path(), "extra_import");
    module(d.path(), "identity");
    std::fs::write(d.path().join("junk.wasm"), b"\0asm but not really").unwrap();
    for (lens, words) in [
        (
            r#"{"lenses": [{"path": "missing.wasm"}]}"#,
            vec!["l.json", "missing.wasm", "cannot read it"],
        ),
        (
            r#"{"lenses": [{"path": "junk.wasm"}]}"#,
            vec!["junk.wasm", "not a WebAssembly module"],
        ),
        (
            r#"{"lenses": [{"path": "extra_import.wasm"}]}"#,
            vec!["imports `env.abort`"],
        ),
        (
            r#"{"lenses": [{"path": "https://example.org/x.wasm"}]}"#,
            vec!["only files"],
        ),
        (
            r#"{"lenses": [{"path": "refuse.wasm", "arguments": {"a": 1}}]}"#,
            vec!["refused its arguments: arguments need src and dst"],
        ),
    ] {
        std::fs::write(d.path().join("l.json"), lens).unwrap();
        let (code, _, err) = apply(d.path(), "l.json", r#"[{"a": 1}]"#, false);
        assert_eq!(code, 2, "{lens}: {err}");
        for w in words {
            assert!(err.contains(w), "{w:?} in {err}");
        }
    }
}

/// The users collection whose lens renames `mail` and runs `add.wasm` (Age + 1,
/// inverse Age - 1), with `n` documents at 1.0.0.
/// The users' lens: test module `name` beside it, and `lens` as its text.
fn users_lens(t: &TestDb, name: &str, lens: &str) {
    let lenses = t.dir.path().join("collections/users/lenses");
    module(&lenses, name);
    std::fs::write(lenses.join("1.0.0--2.0.0.lens.yaml"), lens).unwrap();
}

async fn wasm_users(b: Backend, test: &str, n: usize) -> Option<TestDb> {
    let t = users(b, test).await?;
    users_lens(
        &t,
        "add",
        "lens:\n- rename: {source: mail, destination: email}\n- wasm: {path: add.wasm}\n",
    );
    let rows: Vec<String> = (1..=n)
        .map(|i| format!(r#"({i}, '{{"Age": {i}, "mail": "u{i}@example.org"}}', '1.0.0')"#))
        .collect();
    exec(&t, &format!("INSERT INTO users VALUES {}", rows.join(", "))).await;
    Some(t)
}

on_every_engine!(a_wasm_stage_moves_every_document_exactly_once);

async fn a_wasm_stage_moves_every_document_exactly_once(b: Backend) {
    let n = 200;
    let Some(t) = wasm_users(b, "wasm_move", n).await else {
        return;
    };
    let got = json(&ok(&t, &["docs", "get", "users", "7"], None));
    assert_eq!(
        got,
        serde_json::json!({"Age": 8, "email": "u7@example.org"})
    );
    ok(
        &t,
        &["docs", "put", "users", "900", "--at", "2.0.0"],
        Some(r#"{"Age": 50, "email": "n@x"}"#),
    );
    let back = json(&ok(
        &t,
        &["docs", "get", "users", "900", "--at", "1.0.0"],
        None,
    ));
    assert_eq!(back, serde_json::json!({"Age": 49, "mail": "n@x"}));
    exec(&t, "DELETE FROM users WHERE id = 900").await;

    migration(&t, "0001_users_to_2", "kind = \"documents\"\n[documents]\ncollection = \"users\"\nto = \"2.0.0\"\nbatch_size = 7\n");
    let plan = ok(&t, &["plan"], None);
    assert!(
        plan.contains("in process") && plan.contains("wasm add.wasm"),
        "{b:?}: {plan}"
    );
    // Killed at random moments, then finished and reverted, trial after
    // trial: no document goes through the module twice, or not at all.
    let s = seed();
    let read_at_2 = |t: &TestDb| {
        let lines = ok(t, &["docs", "list", "users", "--limit", "1000"], None);
        let mut seen = 0;
        for line in lines.lines() {
            let v = json(line);
            let key: i64 = v["key"].as_str().unwrap().parse().unwrap();
            assert_eq!(v["doc"]["Age"], key + 1, "{b:?}: seed {s}: {v}");
            seen += 1;
        }
        assert_eq!(seen, n, "{b:?}");
    };
    let (trials, mut mid_move) = (crate::kills::kill_trials() as u64, 0);
    // SQLite moves these documents in tens of milliseconds: kill sooner there.
    let spread = if b == Backend::Sqlite { 60 } else { 250 };
    for trial in 0..trials {
        kill_up(&t, s, trial, spread);
        let moved = t
            .count("SELECT count(*) FROM users WHERE schema_version = '2.0.0'")
            .await;
        mid_move += u64::from(moved > 0 && moved < n as i64);
        read_at_2(&t);
        ok(&t, &["up"], None);
        read_at_2(&t);
        ok(&t, &["down"], None);
    }
    println!("{b:?}: {mid_move} of {trials} kills landed in the middle of the move (seed {s})");
    let (code, out, err) = run(&t, &["up"], None);
    assert_eq!(code, 0, "{b:?}: {out}{err}");
    // Every document went through the module exactly once (seed {s}).
    read_at_2(&t);
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE schema_version = '2.0.0'")
            .await,
        n as i64
    );
    // Down runs the module's inverse.
    ok(&t, &["down"], None);
    let v1 = ok(
        &t,
        &["docs", "list", "users", "--at", "1.0.0", "--limit", "1000"],
        None,
    );
    for line in v1.lines() {
        let v = json(line);
        let key: i64 = v["key"].as_str().unwrap().parse().unwrap();
        assert_eq!(v["doc"]["Age"], key, "{b:?}: {v}");
    }
}

/// A module is known by its content: `lens check` prints its hash, and a
/// `docs migrate` paused at a checkpoint starts over, not resumes, after the
/// module on its path was edited.
#[tokio::test]
async fn an_edited_module_is_another_module() {
    let t = wasm_users(Backend::Sqlite, "wasm_edited", 30)
        .await
        .unwrap();
    let lens = t
        .dir
        .path()
        .join("collections/users/lenses/1.0.0--2.0.0.lens.yaml");
    let hash = |t: &TestDb| {
        let out = crate::instar_in(t.dir.path())
            .args(["lens", "check", "--format", "json"])
            .arg(&lens)
            .output()
            .unwrap();
        json(&String::from_utf8_lossy(&out.stdout))["modules"][0]["hash"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let before = hash(&t);
    assert!(before.starts_with("sha256:"), "{before}");
    let out = ok(
        &t,
        &[
            "docs",
            "migrate",
            "users",
            "--batch",
            "5",
            "--max-duration",
            "1ms",
        ],
        None,
    );
    assert!(out.contains("paused"), "{out}");
    rebuild_add_module(&t);
    assert_ne!(hash(&t), before);
    let out = ok(
        &t,
        &[
            "docs", "migrate", "users", "--batch", "5", "--format", "json",
        ],
        None,
    );
    let report = json(out.lines().last().unwrap());
    assert_eq!(report["migrated"]["end"], "done", "{out}");
    // Started over: its batches cover every key again (6 of 5), not only
    // those after the checkpoint; the first finds its documents moved already.
    assert_eq!(report["migrated"]["batches"], 6, "{out}");
}

/// A documents migration records the fingerprint of its lenses and modules:
/// editing the module after it ran is reported by `validate` and refused by
/// `up` like an edited SQL file, until `repair --accept-checksums` records it.
#[tokio::test]
async fn an_edited_module_is_reported_like_an_edited_file() {
    let t = wasm_users(Backend::Sqlite, "wasm_edited_history", 5)
        .await
        .unwrap();
    migration(
        &t,
        "0001_users_to_2",
        "kind = \"documents\"\n[documents]\ncollection = \"users\"\nto = \"2.0.0\"\n",
    );
    ok(&t, &["up"], None);
    ok(&t, &["validate"], None);
    assert_eq!(
        t.count("SELECT count(*) FROM instar_history WHERE event = 'apply' AND statement_hashes LIKE 'lenses:sha256:%'")
            .await,
        1
    );
    rebuild_add_module(&t);
    let (code, out, err) = run(&t, &["validate"], None);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        format!("{out}{err}")
            .contains("modules of collection users changed after documents migration 0001"),
        "{out}{err}"
    );
    migration(
        &t,
        "0002_more",
        "kind = \"documents\"\n[documents]\ncollection = \"users\"\nto = \"2.0.0\"\n",
    );
    let (code, out, err) = run(&t, &["up"], None);
    assert_eq!(code, 2, "refused: {out}{err}");
    ok(
        &t,
        &[
            "repair",
            "--accept-checksums",
            "--reason",
            "new module build",
        ],
        None,
    );
    ok(&t, &["validate"], None);
    // A program that does not know the collection (an embedded Migrator) is not misled:
    // the lens fingerprint is compared only where it is known.
    std::fs::write(t.dir.path().join("instar.toml"), "").unwrap();
    let (code, out, err) = run(&t, &["validate"], None);
    assert_eq!(code, 0, "{out}{err}");
}

/// A module that loops forever is stopped by its budget: a read names the
/// collection, the key and the module; a documents migration with
/// `on_error = "skip"` leaves the documents as they are, recorded.
#[tokio::test]
async fn a_hostile_module_is_named_per_document() {
    let t = wasm_users(Backend::Sqlite, "wasm_hostile", 3)
        .await
        .unwrap();
    users_lens(&t, "spin", "lens:\n- wasm: {path: spin.wasm}\n");
    std::fs::write(
        t.dir.path().join("instar.toml"),
        format!(
            "{}[wasm]\nfuel = 1000000\n",
            std::fs::read_to_string(t.dir.path().join("instar.toml")).unwrap()
        ),
    )
    .unwrap();
    let (code, _, err) = run(&t, &["docs", "get", "users", "2"], None);
    assert_eq!(code, 2, "{err}");
    for w in ["collection users", "key 2", "spin.wasm", "CPU budget"] {
        assert!(err.contains(w), "{w:?} in {err}");
    }
    migration(&t, "0001_users_to_2", "kind = \"documents\"\n[documents]\ncollection = \"users\"\nto = \"2.0.0\"\non_error = \"skip\"\n");
    ok(&t, &["up"], None);
    assert_eq!(
        t.count("SELECT count(*) FROM instar_errors WHERE error LIKE '%CPU budget%'")
            .await,
        3
    );
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE schema_version = '1.0.0'")
            .await,
        3
    );
}
