//! `instar-bench lens`: documents per second through a 5-op lens and a
//! 10-lens chain, small (~300 B) and large (~20 KB) documents, in process on
//! one core; next to the floor of the same work without a lens (cloning the
//! document, which every translation does first).

use std::path::Path;
use std::time::Instant;

use instar_lens::graph::Graph;
use instar_lens::Lens;
use serde_json::{json, Value};

fn small(i: usize) -> Value {
    json!({
        "id": i, "name": format!("Ada Lovelace {i}"), "mail": format!("ada{i}@example.org"),
        "status": if i.is_multiple_of(2) { "todo" } else { "done" }, "assignee": "grace",
        "tags": ["math", "engines"], "meta": {"created": "2026-01-01T00:00:00Z", "rev": i},
        "note": "x".repeat(80)
    })
}

fn large(i: usize) -> Value {
    let mut d = small(i);
    d["history"] = Value::Array(
        (0..200)
            .map(|k| json!({"at": k, "by": "someone", "what": "edited the description a bit"}))
            .collect(),
    );
    d
}

const FIVE: &str = "lens:\n- rename: {source: mail, destination: email}\n- split: {source: name, into: [first_name, last_name], separator: ' '}\n- convert:\n    name: status\n    mapping: [{todo: open, done: closed}, {open: todo, closed: done}]\n- wrap: {name: assignee}\n- hoist: {host: meta, name: created}\n";

/// Documents per second for `f` over `docs`, best of `runs`.
fn rate(docs: &[Value], runs: usize, mut f: impl FnMut(&Value) -> usize) -> f64 {
    let mut best = f64::MAX;
    let mut sink = 0usize;
    for _ in 0..runs {
        let t = Instant::now();
        for d in docs {
            sink = sink.wrapping_add(f(d));
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(sink);
    docs.len() as f64 / best
}

pub fn bench(runs: usize) {
    let five = Lens::parse(Path::new("five.lens.yaml"), FIVE).expect("lens");
    let dir = tempfile::tempdir().expect("temp dir");
    let versions: Vec<String> = (0..=10).map(|v| format!("1.{v}.0")).collect();
    for v in 0..10u32 {
        // Ten lenses of one op each, alternating so the chain does real work.
        let op = if v.is_multiple_of(2) {
            "rename: {source: mail, destination: email}"
        } else {
            "rename: {source: email, destination: mail}"
        };
        std::fs::write(
            dir.path().join(format!("1.{v}.0--1.{}.0.lens.yaml", v + 1)),
            format!("lens:\n- {op}\n"),
        )
        .expect("write lens");
    }
    let chain = Graph::load_dir(dir.path(), versions).expect("graph");
    // Five lenses of one fusable op each: read 1.0.0 → 1.5.0 is one fused edit.
    let fdir = tempfile::tempdir().expect("temp dir");
    let fusable = [
        "rename: {source: mail, destination: email}",
        "add: {name: score, type: number, default: 0}",
        "copy: {source: id, destination: legacy_id}",
        "set: {name: kind, value: user}",
        "wrap: {name: assignee}",
    ];
    for (v, op) in fusable.iter().enumerate() {
        std::fs::write(
            fdir.path()
                .join(format!("1.{v}.0--1.{}.0.lens.yaml", v + 1)),
            format!("lens:\n- {op}\n"),
        )
        .expect("write lens");
    }
    let fused =
        Graph::load_dir(fdir.path(), (0..=5).map(|v| format!("1.{v}.0")).collect()).expect("graph");
    println!("\n### Lens translation in process, one core (best of {runs} runs)\n");
    println!("| documents | what | documents/s | µs per document |");
    println!("|---|---|---:|---:|");
    for (label, docs) in [
        (
            "small (~300 B)",
            (0..100_000).map(small).collect::<Vec<_>>(),
        ),
        ("large (~20 KB)", (0..2_000).map(large).collect::<Vec<_>>()),
    ] {
        let rows: [(&str, f64); 4] = [
            (
                "floor: clone the document",
                rate(&docs, runs, |d| {
                    d.as_object().map_or(0, |o| o.clone().len())
                }),
            ),
            (
                "5-op lens forward (+ complement)",
                rate(&docs, runs, |d| {
                    five.forward(d)
                        .map_or(0, |(v, _)| v.as_object().map_or(0, |o| o.len()))
                }),
            ),
            (
                "fused 5-op chain (5 lenses: rename, add, copy, set, wrap; read 1.0.0 → 1.5.0)",
                rate(&docs, runs, |d| {
                    fused
                        .translate(d, "1.0.0", "1.5.0")
                        .map_or(0, |v| v.as_object().map_or(0, |o| o.len()))
                }),
            ),
            (
                "10-lens chain (lazy read 1.0.0 → 1.10.0)",
                rate(&docs, runs, |d| {
                    chain
                        .translate(d, "1.0.0", "1.10.0")
                        .map_or(0, |v| v.as_object().map_or(0, |o| o.len()))
                }),
            ),
        ];
        for (what, r) in rows {
            println!("| {label} | {what} | {r:>12.0} | {:>8.2} |", 1e6 / r);
        }
    }
}
