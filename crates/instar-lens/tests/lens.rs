//! The lens language: Cambria's semantics where they are right (its pinned
//! test cases), the correct result where Cambria loses data, the ops it lacks,
//! exact round trips through complements (property-tested), lens files and
//! the version graph.

use std::path::Path;

use instar_lens::graph::Graph;
use instar_lens::{Error, Lens};
use proptest::prelude::*;
use serde_json::{json, Value};

fn lens(yaml: &str) -> Lens {
    Lens::parse(Path::new("test.lens.yaml"), yaml).expect("lens parses")
}

fn there_and_back(l: &Lens, doc: Value) -> Value {
    let (out, c) = l.forward(&doc).expect("forward");
    let back = l.backward(&out, Some(&c)).expect("backward");
    assert_eq!(back, doc, "round trip through {:?} (view {out})", l.ops);
    out
}

#[test]
fn cambria_ops_translate_whole_documents() {
    let l = lens("lens:\n- rename: {source: title, destination: name}\n- add: {name: description, type: string, default: ''}\n");
    assert_eq!(
        there_and_back(&l, json!({"title": "hello"})),
        json!({"name": "hello", "description": ""})
    );

    let l = lens("lens:\n- in:\n    name: metadata\n    lens:\n    - rename: {source: title, destination: name}\n");
    assert_eq!(
        there_and_back(
            &l,
            json!({"metadata": {"title": "hello"}, "otherparent": {"title": "x"}})
        ),
        json!({"metadata": {"name": "hello"}, "otherparent": {"title": "x"}})
    );

    let l = lens("lens:\n- in:\n    name: tasks\n    lens:\n    - map:\n        lens:\n        - rename: {source: title, destination: name}\n");
    assert_eq!(
        there_and_back(&l, json!({"tasks": [{"title": "a"}, {"title": "b"}]})),
        json!({"tasks": [{"name": "a"}, {"name": "b"}]})
    );

    let l = lens("lens:\n- hoist: {host: metadata, name: createdAt}\n- plunge: {host: metadata, name: title}\n");
    assert_eq!(
        there_and_back(
            &l,
            json!({"title": "t", "metadata": {"createdAt": 123, "updatedAt": 4}})
        ),
        json!({"createdAt": 123, "metadata": {"title": "t", "updatedAt": 4}})
    );

    let l = lens(
        "lens:\n- wrap: {name: assignee}\n- rename: {source: assignee, destination: assignees}\n",
    );
    assert_eq!(
        there_and_back(&l, json!({"assignee": "ada"})),
        json!({"assignees": ["ada"]})
    );
    assert_eq!(
        there_and_back(&l, json!({"assignee": null})),
        json!({"assignees": []})
    );

    let l = lens("lens:\n- convert:\n    name: complete\n    mapping:\n    - {false: todo, true: done}\n    - {todo: false, inProgress: false, done: true}\n");
    assert_eq!(
        there_and_back(&l, json!({"complete": true})),
        json!({"complete": "done"})
    );
    assert_eq!(
        l.backward(&json!({"complete": "inProgress"}), None)
            .unwrap(),
        json!({"complete": false})
    );
}

/// Cambria's own GitHub test: an issue's first label becomes a category.
#[test]
fn the_github_issue_lens_goes_there_and_back_exactly() {
    let l = lens(
        "lens:\n- rename: {source: title, destination: name}\n- head: {name: labels}\n- in:\n    name: labels\n    lens:\n    - rename: {source: name, destination: category}\n- hoist: {host: labels, name: category}\n- remove: {name: labels, type: [object, 'null']}\n",
    );
    let issue = json!({"title": "Crash", "body": "b", "labels": [{"name": "bug", "color": "red"}, {"name": "p1", "color": "blue"}]});
    let view = there_and_back(&l, issue.clone());
    assert_eq!(
        view,
        json!({"name": "Crash", "body": "b", "category": "bug"})
    );
    // An edit in the view goes back; what the view never had comes from the complement.
    let (_, c) = l.forward(&issue).unwrap();
    let edited = json!({"name": "Changed the name", "body": "b", "category": "Bug"});
    let back = l.backward(&edited, Some(&c)).unwrap();
    assert_eq!(back["title"], "Changed the name");
    assert_eq!(
        back["labels"][0]["name"], "Bug",
        "the edit wins over the complement"
    );
    assert_eq!(back["labels"][1], json!({"name": "p1", "color": "blue"}));
}

/// Where Cambria loses data or crashes, the correct result (README: differences).
#[test]
fn cambrias_losses_are_not_repeated() {
    // `add` keeps a falsy default as given (Cambria's `||` replaced it).
    let l = lens("lens:\n- add: {name: active, type: boolean, default: true}\n- add: {name: count, type: number, default: 0}\n- add: {name: flag, type: [boolean, 'null'], default: false}\n");
    assert_eq!(
        l.forward(&json!({})).unwrap().0,
        json!({"active": true, "count": 0, "flag": false})
    );
    // `head` of an empty array is null, not a removed field; and back it is [] again.
    let l = lens("lens:\n- head: {name: tags}\n");
    assert_eq!(
        there_and_back(&l, json!({"tags": []})),
        json!({"tags": null})
    );
    assert_eq!(
        there_and_back(&l, json!({"tags": ["a", "b", "c"]})),
        json!({"tags": "a"})
    );
    // `in tag` does not reach `tags` (a path segment is matched whole).
    let l =
        lens("lens:\n- in:\n    name: tag\n    lens:\n    - rename: {source: a, destination: b}\n");
    assert_eq!(
        l.forward(&json!({"tags": {"a": 1}})).unwrap().0,
        json!({"tags": {"a": 1}})
    );
    // Arrays of many objects keep their items (map then rename works).
    let l = lens("lens:\n- in:\n    name: xs\n    lens:\n    - map:\n        lens:\n        - rename: {source: a, destination: b}\n");
    let many: Vec<Value> = (0..5).map(|i| json!({"a": i, "c": "x"})).collect();
    assert_eq!(
        there_and_back(&l, json!({"xs": many}))["xs"][4],
        json!({"b": 4, "c": "x"})
    );
    // `plunge` does not depend on key order.
    let l = lens("lens:\n- plunge: {host: tags, name: color}\n");
    assert_eq!(
        l.forward(&json!({"color": "orange", "tags": {}}))
            .unwrap()
            .0,
        json!({"tags": {"color": "orange"}})
    );
}

#[test]
fn ops_beyond_cambria_round_trip() {
    let l = lens("lens:\n- split: {source: name, into: [first_name, last_name], separator: ' '}\n- rename: {source: mail, destination: email}\n");
    assert_eq!(
        there_and_back(
            &l,
            json!({"name": "Ada Lovelace", "mail": "ada@example.org"})
        ),
        json!({"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.org"})
    );
    assert_eq!(
        there_and_back(&l, json!({"name": "Ada"})),
        json!({"first_name": "Ada"})
    );
    assert_eq!(
        there_and_back(&l, json!({"name": "Ada King Lovelace"}))["last_name"],
        "King Lovelace"
    );

    let l = lens("lens:\n- cast: {name: age, from: string, to: number}\n- scale: {name: height, factor: 2.54, offset: 0}\n- copy: {source: id, destination: legacy_id}\n- set: {name: kind, value: user}\n");
    let view = there_and_back(&l, json!({"age": "042", "height": 70, "id": 7}));
    assert_eq!(
        view,
        json!({"age": 42, "height": 177.8, "id": 7, "legacy_id": 7, "kind": "user"})
    );
    // Without the complement, the reverse alone gives what it can.
    assert_eq!(l.backward(&view, None).unwrap()["age"], "42");
}

#[test]
fn rename_of_a_pattern_moves_every_matching_field_and_back() {
    let l = lens("lens:\n- rename: {pattern: 'legacy_*', to: 'old_*'}\n");
    assert_eq!(
        there_and_back(&l, json!({"legacy_a": 1, "legacy_": 2, "keep": 3})),
        json!({"old_a": 1, "old_": 2, "keep": 3})
    );
    // A field already at a target name is kept in the complement.
    assert_eq!(
        there_and_back(&l, json!({"legacy_a": 1, "old_a": 9, "old_b": 8})),
        json!({"old_a": 1, "old_b": 8})
    );
    // Without a complement (a document written at the new version) every
    // matching field goes back.
    assert_eq!(
        l.backward(&json!({"old_b": 8, "z": 0}), None).unwrap(),
        json!({"legacy_b": 8, "z": 0})
    );
    // A suffix, and a pattern onto everything (quoted: `*` alone is a YAML alias).
    let l = lens("lens:\n- rename: {pattern: '*_at', to: '*'}\n");
    assert_eq!(
        there_and_back(&l, json!({"created_at": 1, "name": "n"})),
        json!({"created": 1, "name": "n"})
    );
    let reverse = l.reversed().to_yaml();
    assert!(reverse.contains("pattern: '*'"), "{reverse}");
    let e = Lens::parse(
        Path::new("a.lens.yaml"),
        "lens:\n- rename: {pattern: 'a*b*', to: 'c*'}\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("exactly one `*`"), "{e}");
}

#[test]
fn a_document_an_op_cannot_take_is_a_clear_error() {
    let l = lens("lens:\n- in:\n    name: meta\n    lens:\n    - hoist: {host: owner, name: id}\n");
    let e = l.forward(&json!({"meta": {"owner": 5}})).unwrap_err();
    assert_eq!(
        e.to_string(),
        "meta.hoist owner.id: field `owner` is a number, not an object"
    );
    let l = lens("lens:\n- convert:\n    name: s\n    mapping: [{a: 1}, {'1': a}]\n");
    assert!(l
        .forward(&json!({"s": "zzz"}))
        .unwrap_err()
        .to_string()
        .contains("no mapping for the value \"zzz\""));
}

#[test]
fn bad_lens_files_name_the_file_and_line() {
    let e = Lens::parse(Path::new("a.lens.yaml"), "lens:\n- rename: {source: a\n").unwrap_err();
    assert!(matches!(&e, Error::File { line, .. } if *line >= 2), "{e}");
    assert!(e.to_string().starts_with("a.lens.yaml:"), "{e}");
    let e = Lens::parse(Path::new("a.lens.yaml"), "lens:\n- twist: {name: a}\n").unwrap_err();
    assert!(e.to_string().contains("op 1: unknown op \"twist\""), "{e}");
    let e = Lens::parse(
        Path::new("a.lens.yaml"),
        "lens:\n- add: {name: a}\n- wrap: {name: 3}\n",
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("op 2: `wrap`: argument `name` must be a non-empty string"),
        "{e}"
    );
    let e = Lens::parse(Path::new("a.lens.json"), "{\"lens\": [}").unwrap_err();
    assert!(e.to_string().starts_with("a.lens.json:1:"), "{e}");
    let e = Lens::parse(Path::new("a.lens.yaml"), "ops: []\n").unwrap_err();
    assert!(e.to_string().contains("top-level key `lens`"), "{e}");
}

#[test]
fn the_reverse_lens_is_printed_in_cambrias_format() {
    let l = lens("lens:\n- rename: {source: a, destination: b}\n- wrap: {name: c}\n");
    let yaml = l.reversed().to_yaml();
    let back = Lens::parse(Path::new("r.lens.yaml"), &yaml).expect("the printed reverse parses");
    assert_eq!(back.ops, l.reversed().ops);
    assert!(
        yaml.find("head").unwrap() < yaml.find("rename").unwrap(),
        "{yaml}"
    );
}

#[test]
fn the_version_graph_walks_the_shortest_path_both_ways() {
    let d = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(d.path().join(name), text).unwrap();
    write(
        "1.0.0--1.1.0.lens.yaml",
        "lens:\n- rename: {source: a, destination: b}\n",
    );
    write("1.1.0--2.0.0.lens.yaml", "lens:\n- wrap: {name: b}\n");
    let versions = || vec!["1.0.0".to_string(), "1.1.0".into(), "2.0.0".into()];
    let g = Graph::load_dir(d.path(), versions()).unwrap();
    assert_eq!(
        g.translate(&json!({"a": 1}), "1.0.0", "2.0.0").unwrap(),
        json!({"b": [1]})
    );
    assert_eq!(
        g.translate(&json!({"b": [1]}), "2.0.0", "1.0.0").unwrap(),
        json!({"a": 1})
    );
    assert_eq!(g.path("1.1.0", "1.1.0").unwrap().len(), 0);

    write("2.0.0--1.1.0.lens.yaml", "lens: []\n");
    let e = Graph::load_dir(d.path(), versions())
        .unwrap_err()
        .to_string();
    assert!(e.contains("a second lens between"), "{e}");
    std::fs::remove_file(d.path().join("2.0.0--1.1.0.lens.yaml")).unwrap();
    write("2.0.0--3.0.0.lens.yaml", "lens: []\n");
    let e = Graph::load_dir(d.path(), versions())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("2.0.0--3.0.0.lens.yaml") && e.contains("3.0.0, which is not declared"),
        "{e}"
    );
    std::fs::remove_file(d.path().join("2.0.0--3.0.0.lens.yaml")).unwrap();
    let e = Graph::load_dir(d.path(), [versions(), vec!["4.0.0".into()]].concat())
        .unwrap_err()
        .to_string();
    assert!(e.contains("version 4.0.0 has no lens path"), "{e}");
}

// ---- the lens laws, over generated documents and generated op chains ----

const FIELDS: [&str; 8] = ["a", "b", "c", "d", "e", "x_a", "x_b", "a_x"];

/// Patterns over those names: a prefix, a suffix, everything.
const GLOBS: [&str; 5] = ["x_*", "y_*", "*", "*_x", "a*"];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-1000i64..1000).prop_map(Value::from),
        "[a-z ]{0,8}".prop_map(Value::String),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(&FIELDS[..]).prop_map(str::to_string),
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn doc() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        prop::sample::select(&FIELDS[..]).prop_map(str::to_string),
        value(),
        0..5,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn field() -> impl Strategy<Value = String> {
    prop::sample::select(&FIELDS[..]).prop_map(str::to_string)
}

fn op_yaml() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        (field(), field()).prop_map(|(s, d)| format!("rename: {{source: {s}, destination: {d}}}")),
        (
            prop::sample::select(&GLOBS[..]),
            prop::sample::select(&GLOBS[..])
        )
            .prop_map(|(s, d)| format!("rename: {{pattern: '{s}', to: '{d}'}}")),
        (field(), scalar()).prop_map(|(n, v)| format!("add: {{name: {n}, default: {v}}}")),
        field().prop_map(|n| format!("remove: {{name: {n}}}")),
        (field(), field()).prop_map(|(h, n)| format!("hoist: {{host: {h}, name: {n}}}")),
        (field(), field()).prop_map(|(h, n)| format!("plunge: {{host: {h}, name: {n}}}")),
        field().prop_map(|n| format!("wrap: {{name: {n}}}")),
        field().prop_map(|n| format!("head: {{name: {n}}}")),
        (field(), field()).prop_map(|(s, d)| format!("copy: {{source: {s}, destination: {d}}}")),
        (field(), scalar()).prop_map(|(n, v)| format!("set: {{name: {n}, value: {v}}}")),
        (field(), field(), field()).prop_map(|(s, a, b)| format!(
            "split: {{source: {s}, into: [{a}, {b}], separator: ' '}}"
        )),
        (field(), field(), field()).prop_map(|(a, b, t)| format!(
            "join: {{sources: [{a}, {b}], into: {t}, separator: '-'}}"
        )),
        field().prop_map(|n| format!("cast: {{name: {n}, from: number, to: string}}")),
        field().prop_map(|n| format!("scale: {{name: {n}, factor: 3, offset: 1}}")),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            (field(), prop::collection::vec(inner.clone(), 1..3))
                .prop_map(|(n, ops)| format!("in: {{name: {n}, lens: [{}]}}", ops.join(", "))),
            prop::collection::vec(inner, 1..3)
                .prop_map(|ops| format!("map: {{lens: [{}]}}", ops.join(", "))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// GetPut: a document translated forward and back with its complement is
    /// exactly the original, for every op and random chains of them.
    #[test]
    fn forward_then_backward_with_the_complement_is_the_original(
        d in doc(),
        ops in prop::collection::vec(op_yaml(), 1..6),
    ) {
        let yaml = format!("lens: [{}]", ops.iter().map(|o| format!("{{{o}}}")).collect::<Vec<_>>().join(", "));
        let l = Lens::parse(Path::new("gen.lens.yaml"), &yaml).expect("generated lens parses");
        if let Ok((view, c)) = l.forward(&d) {
            let back = l.backward(&view, Some(&c)).expect("the way back of a translated document");
            prop_assert_eq!(back, d, "lens {}", yaml);
        }
    }

    /// PutGet on the view itself: translating back and forward again gives the
    /// same view (nothing the forward direction made is changed by the trip).
    #[test]
    fn backward_then_forward_gives_the_view_again(
        d in doc(),
        ops in prop::collection::vec(op_yaml(), 1..6),
    ) {
        let yaml = format!("lens: [{}]", ops.iter().map(|o| format!("{{{o}}}")).collect::<Vec<_>>().join(", "));
        let l = Lens::parse(Path::new("gen.lens.yaml"), &yaml).expect("generated lens parses");
        if let Ok((view, c)) = l.forward(&d) {
            let back = l.backward(&view, Some(&c)).expect("back");
            let (again, _) = l.forward(&back).expect("forward again");
            prop_assert_eq!(again, view, "lens {}", yaml);
        }
    }
}

/// Ops that fuse (and some that do not, to make chains fall back).
fn fusable_yaml() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (field(), field()).prop_map(|(s, d)| format!("rename: {{source: {s}, destination: {d}}}")),
        2 => (field(), scalar()).prop_map(|(n, v)| format!("add: {{name: {n}, default: {v}}}")),
        2 => (field(), field()).prop_map(|(s, d)| format!("copy: {{source: {s}, destination: {d}}}")),
        2 => (field(), scalar()).prop_map(|(n, v)| format!("set: {{name: {n}, value: {v}}}")),
        2 => field().prop_map(|n| format!("wrap: {{name: {n}}}")),
        1 => field().prop_map(|n| format!("remove: {{name: {n}}}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// A fused chain gives what the ops give one by one, on every document it
    /// applies to, and those documents keep no complement.
    #[test]
    fn a_fused_chain_equals_its_ops_one_by_one(
        d in doc(),
        ops in prop::collection::vec(fusable_yaml(), 1..8),
    ) {
        let yaml = format!("lens: [{}]", ops.iter().map(|o| format!("{{{o}}}")).collect::<Vec<_>>().join(", "));
        let l = Lens::parse(Path::new("gen.lens.yaml"), &yaml).expect("generated lens parses");
        if let Ok(f) = instar_lens::fuse::fuse(&l.ops) {
            if f.applies(&d) {
                let mut fused = d.clone();
                f.apply(&mut fused);
                let (stepwise, c) = l.forward(&d).expect("fusable ops take any object");
                prop_assert_eq!(fused, stepwise, "lens {}", yaml);
                prop_assert!(c.is_empty(), "lens {} kept a complement for {}", yaml, d);
            }
        }
    }
}

#[test]
fn each_side_of_a_lens_has_a_json_schema() {
    use instar_lens::schema::{sides, Schema};
    let l = lens("lens:\n- split: {source: name, into: [first_name, last_name], separator: ' '}\n- rename: {source: mail, destination: email}\n- remove: {name: legacy, type: string}\n- add: {name: age, type: number, default: 0}\n- convert:\n    name: status\n    mapping: [{a: active, b: blocked}, {active: a, blocked: b}]\n- wrap: {name: tags}\n");
    let (source, dest) = sides(&l.ops);
    assert_eq!(dest["properties"]["first_name"]["type"], "string");
    assert_eq!(dest["properties"]["age"]["type"], "number");
    assert_eq!(
        dest["properties"]["status"]["enum"],
        json!(["active", "blocked"])
    );
    assert_eq!(dest["properties"]["tags"]["type"], "array");
    assert_eq!(dest["required"], json!(["age"]));
    // `join` writes `name` only when a part is there: otherwise it keeps what it had.
    assert!(source["properties"].get("name").is_none(), "{source}");
    assert_eq!(source["properties"]["legacy"]["type"], "string");
    assert_eq!(source["properties"]["status"]["enum"], json!(["a", "b"]));
    assert!(source["properties"].get("age").is_none(), "{source}");

    // What the lens produces is valid at its destination, and back at its source.
    let dest = Schema::new(dest).unwrap();
    let source = Schema::new(source).unwrap();
    let doc =
        json!({"name": "Ada Lovelace", "mail": "a@b", "legacy": "x", "status": "a", "tags": "t"});
    let (view, c) = l.forward(&doc).unwrap();
    dest.validate(&view).unwrap();
    source
        .validate(&l.backward(&view, Some(&c)).unwrap())
        .unwrap();
    // A document the lens never produced is named where it breaks the schema.
    let e = dest
        .validate(&json!({"age": "old", "first_name": "A"}))
        .unwrap_err();
    assert_eq!(e, "/age: expected number, found string");
    let e = dest.validate(&json!({"first_name": "A"})).unwrap_err();
    assert_eq!(e, "/: the field `age` is missing");
    let e = dest
        .validate(&json!({"age": 1, "status": "gone"}))
        .unwrap_err();
    assert!(e.starts_with("/status: \"gone\" is not one of"), "{e}");
}

#[test]
fn a_declared_schema_is_validated_in_its_supported_subset() {
    use instar_lens::schema::Schema;
    let s = Schema::new(json!({
        "type": "object",
        "required": ["id"],
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "email": {"type": "string", "minLength": 3},
            "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": true},
            "address": {"type": "object", "properties": {"zip": {"type": "string"}}, "additionalProperties": false},
            "role": {"anyOf": [{"const": "admin"}, {"const": "user"}]}
        }
    }))
    .unwrap();
    s.validate(&json!({"id": 3, "email": "a@b", "tags": ["x"], "address": {"zip": "1"}}))
        .unwrap();
    for (doc, err) in [
        (json!({"id": 0}), "/id: 0 breaks minimum 1"),
        (json!({"id": 1.5}), "/id: expected integer, found number"),
        (
            json!({"id": 1, "tags": ["x", 2]}),
            "/tags/1: expected string, found number",
        ),
        (
            json!({"id": 1, "tags": ["x", "x"]}),
            "/tags: item 1 repeats an earlier item",
        ),
        (
            json!({"id": 1, "address": {"zip": "1", "street": "s"}}),
            "/address/street: no value is allowed here",
        ),
        (
            json!({"id": 1, "role": "root"}),
            "/role: matches none of anyOf",
        ),
        (
            json!({"id": 1, "email": "ab"}),
            "/email: length 2 is out of bounds",
        ),
    ] {
        assert_eq!(s.validate(&doc).unwrap_err(), err, "{doc}");
    }
    let e = Schema::new(json!({"properties": {"a": {"pattern": "^x"}}})).unwrap_err();
    assert!(
        e.starts_with("/properties/a/pattern: the keyword `pattern` is not supported"),
        "{e}"
    );
    let e = Schema::new(json!({"type": "text"})).unwrap_err();
    assert_eq!(e, "/type: must be a JSON type or a list of them");
}

/// A stand-in for a WebAssembly module (the host lives in instar-wasm):
/// doubles `n`, fails a stream holding a document with `"bad": true`, and
/// counts the streams it was given.
#[derive(Debug, Default)]
struct Doubler {
    streams: std::sync::atomic::AtomicUsize,
}

impl instar_lens::wasm::Stage for Doubler {
    fn hash(&self) -> &str {
        "sha256:test"
    }
    fn can(&self, _inverse: bool) -> bool {
        true
    }
    fn takes_arguments(&self) -> bool {
        false
    }
    fn run(
        &self,
        inverse: bool,
        _: Option<&Value>,
        inputs: Vec<Value>,
    ) -> Result<instar_lens::wasm::Outputs, String> {
        self.streams
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut out = instar_lens::wasm::Outputs {
            items: Vec::new(),
            one_to_one: true,
        };
        for mut d in inputs {
            if d["bad"] == json!(true) {
                return Err("a bad document".to_string());
            }
            if d["error"] == json!(true) {
                out.items.push(Err("an error item".to_string()));
                continue;
            }
            if let Some(n) = d["n"].as_i64() {
                d["n"] = json!(if inverse { n / 2 } else { n * 2 });
            }
            // Two items for one document: no longer one to one.
            if d["twice"] == json!(true) {
                out.one_to_one = false;
                out.items.push(Ok(d.clone()));
            }
            out.items.push(Ok(d));
        }
        Ok(out)
    }
}

struct Loads(std::sync::Arc<Doubler>);

impl instar_lens::wasm::Loader for Loads {
    fn load(&self, _: &Path) -> Result<std::sync::Arc<dyn instar_lens::wasm::Stage>, String> {
        Ok(self.0.clone())
    }
}

#[test]
fn a_batch_streams_through_a_wasm_stage_once_and_equals_one_by_one() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("1.0.0--2.0.0.lens.yaml"),
        "lens:\n- rename: {source: a, destination: b}\n- wasm: {path: double.wasm}\n- remove: {name: c, type: string}\n",
    )
    .unwrap();
    let stage = std::sync::Arc::new(Doubler::default());
    let g = Graph::load_dir_with(
        d.path(),
        vec!["1.0.0".into(), "2.0.0".into()],
        Some(&Loads(stage.clone())),
    )
    .unwrap();
    let docs: Vec<Value> = (0..20)
        .map(|i| json!({"a": i, "n": i, "c": format!("c{i}")}))
        .collect();
    let items = |docs: &[Value]| -> Vec<_> {
        docs.iter()
            .map(|d| (d.clone(), "1.0.0".to_string(), Default::default()))
            .collect()
    };
    let before = stage.streams.load(std::sync::atomic::Ordering::Relaxed);
    let many = g.moved_many(items(&docs), "2.0.0");
    assert_eq!(
        stage.streams.load(std::sync::atomic::Ordering::Relaxed) - before,
        1,
        "one stream for the batch"
    );
    for (d, m) in docs.iter().zip(&many) {
        let one = g.moved(d, "1.0.0", "2.0.0", Default::default()).unwrap();
        assert_eq!(m.as_ref().unwrap(), &one);
    }
    // And back down with the complements kept: the originals.
    let back: Vec<_> = many
        .into_iter()
        .map(|r| {
            let (b, c) = r.unwrap();
            (b, "2.0.0".to_string(), c)
        })
        .collect();
    for (d, r) in docs.iter().zip(g.moved_many(back, "1.0.0")) {
        assert_eq!(&r.unwrap().0, d);
    }
    // An error item is that document's error; the stream goes on.
    let mut mixed = docs.clone();
    mixed[3]["error"] = json!(true);
    let out = g.moved_many(items(&mixed), "2.0.0");
    assert!(out[3]
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("an error item"));
    assert!(out.iter().enumerate().all(|(i, r)| i == 3 || r.is_ok()));
    // Not one item per document: run again one by one, so no document gets
    // another's translation.
    let mut mixed = docs.clone();
    mixed[2]["twice"] = json!(true);
    let out = g.moved_many(items(&mixed), "2.0.0");
    assert!(out[2]
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("2 items for one document"));
    assert_eq!(out[3].as_ref().unwrap().0["n"], json!(6));
    // A stream that fails is run again document by document: only the bad one errs.
    let mut mixed = docs.clone();
    mixed[5]["bad"] = json!(true);
    let out = g.moved_many(items(&mixed), "2.0.0");
    for (i, r) in out.iter().enumerate() {
        match r {
            Err(e) if i == 5 => assert!(e.to_string().contains("a bad document"), "{e}"),
            Ok(_) if i != 5 => {}
            other => panic!("{i}: {other:?}"),
        }
    }
}
