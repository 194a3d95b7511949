//! Hostile and broken modules: each is a clear error, the host goes on.

use std::time::{Duration, Instant};

use instar_wasm::{Host, Limits};
use serde_json::json;

use crate::{load, module_file};

fn refused(name: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::new(Limits::default(), None).unwrap();
    host.load(&module_file(dir.path(), name))
        .map(|_| ())
        .unwrap_err()
        .to_string()
}

fn fails(name: &str) -> String {
    let (_h, m, _d) = load(name);
    m.values(false, None, vec![json!({"a": 1})]).unwrap_err()
}

#[test]
fn an_endless_loop_runs_out_of_fuel() {
    let t = Instant::now();
    let e = fails("spin");
    assert!(e.contains("CPU budget"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(30));
}

#[test]
fn the_deadline_stops_a_loop_when_fuel_is_plenty() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        fuel: u64::MAX / 4,
        deadline: Duration::from_millis(200),
        ..Limits::default()
    };
    let host = Host::new(limits, None).unwrap();
    let m = host.load(&module_file(dir.path(), "spin")).unwrap();
    let t = Instant::now();
    let e = m.values(false, None, vec![json!({})]).unwrap_err();
    assert!(e.contains("deadline"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

#[test]
fn a_memory_hog_stops_at_the_limit() {
    let e = fails("hog");
    assert!(e.contains("trapped") || e.contains("memory"), "{e}");
}

#[test]
fn memory_is_not_kept_across_streams() {
    // Each stream's instance grows 1 MiB per call; 300 streams would hold
    // 300 MiB if instances outlived their stream.
    let (_h, m, _d) = load("leak");
    let rss = || {
        std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map(|pages| pages * 4096)
    };
    let before = rss();
    for _ in 0..300 {
        m.values(false, None, vec![json!({"a": 1})]).unwrap();
    }
    if let (Some(a), Some(b)) = (before, rss()) {
        assert!(b < a + (100 << 20), "RSS grew from {a} to {b}");
    }
}

#[test]
fn garbage_pointers_and_items_are_errors() {
    let e = fails("garbage");
    assert!(e.contains("does not fit its memory"), "{e}");
    let e = fails("bad_type");
    assert!(e.contains("type 5"), "{e}");
    let e = fails("bad_json");
    assert!(e.contains("not JSON"), "{e}");
}

#[test]
fn a_stream_that_never_ends_is_stopped() {
    let (_h, m, _d) = load("no_end");
    let e = m.values(false, None, Vec::new()).unwrap_err();
    assert!(e.contains("end of"), "{e}");
}

#[test]
fn refused_parameters_show_the_modules_message() {
    let (_h, m, _d) = load("refuse");
    let e = m
        .values(false, Some(&json!({"x": 1})), vec![json!({})])
        .unwrap_err();
    assert!(
        e.contains("refused its arguments: arguments need src and dst"),
        "{e}"
    );
    let (_h, m, _d) = load("identity");
    let e = m
        .values(false, Some(&json!({"x": 1})), vec![json!({})])
        .unwrap_err();
    assert!(e.contains("no `set_param`"), "{e}");
}

#[test]
fn modules_of_the_wrong_shape_are_refused_at_load() {
    let e = refused("extra_import");
    assert!(e.contains("imports `env.abort`"), "{e}");
    let e = refused("bad_export");
    assert!(
        e.contains("exports `transform` as a function (i32) -> (i32)"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let host = Host::new(Limits::default(), None).unwrap();
    let p = dir.path().join("x.wasm");
    std::fs::write(&p, b"not wasm at all").unwrap();
    let e = host.load(&p).unwrap_err().to_string();
    assert!(e.contains("x.wasm: not a WebAssembly module"), "{e}");
    let e = host
        .load(&dir.path().join("missing.wasm"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.wasm: cannot read it"), "{e}");
}

#[test]
fn the_module_without_inverse_cannot_run_inverted() {
    let (_h, m, _d) = load("identity");
    assert!(!m.shape().inverse);
    let e = m.values(true, None, vec![json!({})]).unwrap_err();
    assert!(e.contains("no `inverse`"), "{e}");
}
