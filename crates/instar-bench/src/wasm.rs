//! `instar-bench wasm`: documents per second through a trivial WebAssembly
//! stage (`Age + 1`, the repository's `add.wat`) next to the same change as a
//! declarative op (`scale {name: Age, factor: 1, offset: 1}`), in process on
//! one core; and what loading a module costs cold (compiled) and warm (from
//! the disk cache), and what one fresh instance per stream costs.

use std::time::{Duration, Instant};

use instar_wasm::{Host, Limits};
use serde_json::{json, Value};

fn best(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed());
    }
    best
}

pub fn bench(runs: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let module = dir.path().join("add.wasm");
    let bytes = wat::parse_str(instar_wasm::testing::source("add")).expect("add.wat");
    std::fs::write(&module, bytes).expect("write module");
    let docs: Vec<Value> = (0..100_000)
        .map(|i| json!({"Age": i, "Name": format!("Ada Lovelace {i}"), "mail": format!("ada{i}@example.org"), "note": "x".repeat(200)}))
        .collect();
    let n = docs.len() as f64;

    let scale = instar_lens::Lens::parse(
        std::path::Path::new("scale.lens.yaml"),
        "lens:\n- scale: {name: Age, factor: 1, offset: 1}\n",
    )
    .expect("lens");
    let declarative = best(runs, || {
        for d in &docs {
            std::hint::black_box(scale.forward(d).expect("forward"));
        }
    });

    let host = Host::new(Limits::default(), None).expect("host");
    let m = host.load(&module).expect("load");
    let stream = best(runs, || {
        std::hint::black_box(m.values(false, None, docs.clone()).expect("stream"));
    });
    let few = &docs[..10_000];
    let per_doc = best(runs, || {
        for d in few {
            std::hint::black_box(m.values(false, None, vec![d.clone()]).expect("one"));
        }
    });
    let empty = best(runs, || {
        for _ in 0..1000 {
            std::hint::black_box(m.values(false, None, Vec::new()).expect("empty"));
        }
    });

    let cache = dir.path().join("cache");
    let cold = best(runs, || {
        let _ = std::fs::remove_dir_all(&cache);
        let h = Host::new(Limits::default(), Some(cache.clone())).expect("host");
        std::hint::black_box(h.load(&module).expect("cold load"));
    });
    let warm = best(runs, || {
        let h = Host::new(Limits::default(), Some(cache.clone())).expect("host");
        std::hint::black_box(h.load(&module).expect("warm load"));
    });

    println!("\n### WebAssembly lens stage, in process, one core (best of {runs} runs)\n");
    println!("| what | documents/s | µs per document |");
    println!("|---|---:|---:|");
    let row = |what: &str, docs: f64, t: Duration| {
        let us = t.as_secs_f64() * 1e6 / docs;
        println!("| {what} | {:>10.0} | {us:>7.2} |", 1e6 / us);
    };
    row(
        "declarative `scale` (Age + 1), forward with complement check",
        n,
        declarative,
    );
    row(
        "`add.wasm` (Age + 1), one stream of 100,000 documents",
        n,
        stream,
    );
    row(
        "`add.wasm`, one stream (a fresh instance) per document",
        few.len() as f64,
        per_doc,
    );
    println!("\n| loading | ms |\n|---|---:|");
    let ms = |t: Duration| t.as_secs_f64() * 1000.0;
    println!(
        "| cold: new host, compile the module (empty cache) | {:.2} |",
        ms(cold)
    );
    println!(
        "| warm: new host, the module from the disk cache | {:.2} |",
        ms(warm)
    );
    println!(
        "| one fresh instance and an empty stream | {:.4} |",
        ms(empty) / 1000.0
    );
}
