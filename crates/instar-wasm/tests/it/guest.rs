//! A module built from a real guest language: AssemblyScript
//! (`guest/fahrenheit`, built with `guest/fahrenheit/build.sh`; the `.wasm`
//! is committed so this test needs no compiler).

use instar_wasm::{Host, Limits};
use serde_json::{json, Value};

#[test]
fn an_assemblyscript_module_runs_both_ways_over_a_long_stream() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("guest/fahrenheit/fahrenheit.wasm");
    let host = Host::new(Limits::default(), None).unwrap();
    let m = host.load(&path).unwrap();
    assert!(m.shape().transform && m.shape().inverse);
    let docs: Vec<Value> = (0..5000)
        .map(|i| json!({"city": format!("c{i}"), "celsius": f64::from(i) / 10.0 - 20.0}))
        .collect();
    let out = m.values(false, None, docs.clone()).unwrap();
    assert_eq!(out.len(), docs.len());
    for (d, o) in docs.iter().zip(&out) {
        let c = d["celsius"].as_f64().unwrap();
        let f = o["fahrenheit"].as_f64().unwrap();
        assert!((f - (c * 9.0 / 5.0 + 32.0)).abs() < 1e-5, "{d} → {o}");
        assert!(o.get("celsius").is_none() && o["city"] == d["city"]);
    }
    let back = m.values(true, None, out).unwrap();
    for (d, b) in docs.iter().zip(&back) {
        assert!((b["celsius"].as_f64().unwrap() - d["celsius"].as_f64().unwrap()).abs() < 1e-5);
    }
    // Without the field: unchanged; a bad value: the module's own error item.
    assert_eq!(
        m.values(false, None, vec![json!({"x": 1})]).unwrap(),
        vec![json!({"x": 1})]
    );
    // Its error item is an error for that document only: the stream goes on.
    let out = m
        .run(
            false,
            None,
            vec![json!({"celsius": "warm"}), json!({"celsius": 0})],
        )
        .unwrap();
    assert!(out.one_to_one);
    assert_eq!(
        out.items[0],
        Err("\"celsius\": is not a number".to_string())
    );
    assert_eq!(
        out.items[1].as_ref().unwrap()["fahrenheit"].as_f64(),
        Some(32.0)
    );
}
