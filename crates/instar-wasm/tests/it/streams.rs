//! Modules that follow the ABI, stream by stream.

use serde_json::{json, Value};

use crate::load;

fn docs(v: Value) -> Vec<Value> {
    v.as_array().unwrap().clone()
}

#[test]
fn identity_passes_every_document_through() {
    let (_h, m, _d) = load("identity");
    let input = docs(json!([{"a": 1}, {"b": [1, 2, {"c": null}]}, {}]));
    assert_eq!(m.values(false, None, input.clone()).unwrap(), input);
    assert_eq!(
        m.values(false, None, Vec::new()).unwrap(),
        Vec::<Value>::new()
    );
    assert!(m.hash().starts_with("sha256:"));
}

#[test]
fn alloc_with_an_i64_size_is_accepted() {
    let (_h, m, _d) = load("alloc_i64");
    assert!(m.shape().alloc_i64);
    let input = docs(json!([{"a": "x".repeat(1000)}]));
    assert_eq!(m.values(false, None, input.clone()).unwrap(), input);
}

#[test]
fn plus_one_and_its_inverse() {
    let (_h, m, _d) = load("add");
    let out = m
        .values(
            false,
            None,
            docs(json!([{"Age": 41, "Name": "Ada"}, {"Name": "x"}, {"Age": -1}])),
        )
        .unwrap();
    assert_eq!(
        out,
        docs(json!([{"Age": 42, "Name": "Ada"}, {"Name": "x"}, {"Age": 0}]))
    );
    let back = m.values(true, None, out).unwrap();
    assert_eq!(
        back,
        docs(json!([{"Age": 41, "Name": "Ada"}, {"Name": "x"}, {"Age": -1}]))
    );
}

#[test]
fn parameters_reach_set_param_and_both_directions() {
    let (_h, m, _d) = load("rename");
    let args = json!({"src": "Name", "dst": "FullName"});
    let out = m
        .values(false, Some(&args), docs(json!([{"Name": "Ada", "Age": 3}])))
        .unwrap();
    assert_eq!(out, docs(json!([{"FullName": "Ada", "Age": 3}])));
    assert_eq!(
        m.values(true, Some(&args), out).unwrap(),
        docs(json!([{"Name": "Ada", "Age": 3}]))
    );
}

#[test]
fn a_filter_returns_fewer_documents() {
    let (_h, m, _d) = load("filter");
    let out = m
        .values(
            false,
            None,
            docs(json!([{"__type": "pass", "i": 1}, {"__type": "drop"}, {"i": 3}, {"__type": "pass", "i": 4}])),
        )
        .unwrap();
    assert_eq!(
        out,
        docs(json!([{"__type": "pass", "i": 1}, {"__type": "pass", "i": 4}]))
    );
    assert!(m
        .values(false, None, docs(json!([{"__type": "no"}])))
        .unwrap()
        .is_empty());
}

#[test]
fn a_stream_says_whether_item_k_answers_input_k() {
    let (_h, m, _d) = load("add");
    assert!(
        m.run(false, None, docs(json!([{"Age": 1}, {"Age": 2}])))
            .unwrap()
            .one_to_one
    );
    let (_h, m, _d) = load("normalize");
    assert!(
        !m.run(false, None, docs(json!([{"pages": 2}, {"pages": 0}])))
            .unwrap()
            .one_to_one
    );
    let (_h, m, _d) = load("first");
    assert!(
        !m.run(false, None, docs(json!([{"a": 1}])))
            .unwrap()
            .one_to_one
    );
    let (_h, m, _d) = load("filter");
    assert!(
        !m.run(false, None, docs(json!([{"__type": "pass"}, {"x": 1}])))
            .unwrap()
            .one_to_one
    );
}

#[test]
fn normalize_returns_more_documents_or_none() {
    let (_h, m, _d) = load("normalize");
    let out = m
        .values(
            false,
            None,
            docs(json!([{"pages": 3}, {"pages": 0}, {"pages": 1}])),
        )
        .unwrap();
    assert_eq!(
        out,
        docs(json!([{"page": 1}, {"page": 2}, {"page": 3}, {"page": 1}]))
    );
}

#[test]
fn state_never_leaks_from_one_stream_to_the_next() {
    let (_h, m, _d) = load("counter");
    let three = docs(json!([{"a": 1}, {"a": 2}, {}]));
    let out = m.values(false, None, three.clone()).unwrap();
    assert_eq!(
        out,
        docs(json!([{"Id": 1, "a": 1}, {"Id": 2, "a": 2}, {"Id": 3}]))
    );
    // A second stream starts from a fresh instance: its counter starts at 1 again.
    assert_eq!(m.values(false, None, three).unwrap(), out);
}

#[test]
fn a_module_may_emit_before_reading() {
    let (_h, m, _d) = load("first");
    assert_eq!(
        m.values(false, None, docs(json!([{"a": 1}]))).unwrap(),
        docs(json!([{"first": true}, {"a": 1}]))
    );
    assert_eq!(
        m.values(false, None, Vec::new()).unwrap(),
        docs(json!([{"first": true}]))
    );
}

#[test]
fn the_same_content_loads_once_and_the_cache_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let path = crate::module_file(dir.path(), "add");
    let host = instar_wasm::Host::new(instar_wasm::Limits::default(), Some(cache.clone())).unwrap();
    let a = host.load(&path).unwrap();
    let b = host.load(&path).unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    let entries: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
    assert_eq!(entries.len(), 1, "one compiled entry");
    let entry = entries[0].path();
    // A second host (a new process) loads it from the cache.
    let warm = instar_wasm::Host::new(instar_wasm::Limits::default(), Some(cache.clone())).unwrap();
    let m = warm.load(&path).unwrap();
    assert_eq!(
        m.values(false, None, docs(json!([{"Age": 1}]))).unwrap(),
        docs(json!([{"Age": 2}]))
    );
    // A corrupted entry is recompiled, not run; and rewritten sound.
    let mut bytes = std::fs::read(&entry).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();
    let engine_check =
        instar_wasm::Host::new(instar_wasm::Limits::default(), Some(cache.clone())).unwrap();
    let m = engine_check.load(&path).unwrap();
    assert_eq!(
        m.values(false, None, docs(json!([{"Age": 1}]))).unwrap(),
        docs(json!([{"Age": 2}]))
    );
    assert_ne!(std::fs::read(&entry).unwrap(), bytes, "rewritten");
    std::fs::write(&entry, b"short").unwrap();
    let m = instar_wasm::Host::new(instar_wasm::Limits::default(), Some(cache))
        .unwrap()
        .load(&path)
        .unwrap();
    assert_eq!(
        m.values(false, None, docs(json!([{"Age": 1}]))).unwrap(),
        docs(json!([{"Age": 2}]))
    );
}
