//! `instar lens apply|check|test`: a lens file alone, with no database.

fn lens_file(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("1.0.0--2.0.0.lens.yaml");
    std::fs::write(
        &p,
        "lens:\n- split: {source: name, into: [first_name, last_name], separator: ' '}\n- rename: {source: mail, destination: email}\n- remove: {name: legacy, type: string}\n",
    )
    .unwrap();
    p
}

#[test]
fn apply_translates_a_json_array_both_ways() {
    let d = tempfile::tempdir().unwrap();
    let p = lens_file(d.path());
    let out = crate::instar_in(d.path())
        .args(["lens", "apply"])
        .arg(&p)
        .write_stdin(r#"[{"name": "Ada Lovelace", "mail": "ada@example.org", "legacy": "x"}, {"name": "Grace"}]"#)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!([
            {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.org"},
            {"first_name": "Grace"}
        ])
    );
    let out = crate::instar_in(d.path())
        .args(["lens", "apply", "--reverse"])
        .arg(&p)
        .write_stdin(r#"[{"first_name": "Ada", "last_name": "Lovelace", "email": "a@b"}]"#)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!([{"name": "Ada Lovelace", "mail": "a@b", "legacy": ""}])
    );
}

#[test]
fn check_prints_the_reverse_and_bad_input_is_named() {
    let d = tempfile::tempdir().unwrap();
    let p = lens_file(d.path());
    let out = crate::instar_in(d.path())
        .args(["lens", "check"])
        .arg(&p)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("join") && text.contains("add"),
        "{text}"
    );
    assert!(
        text.contains("JSON Schema of its destination side"),
        "{text}"
    );
    let out = crate::instar_in(d.path())
        .args(["lens", "check", "--format", "json"])
        .arg(&p)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["schemas"]["destination"]["properties"]["first_name"]["type"],
        "string"
    );
    assert_eq!(
        v["schemas"]["source"]["properties"]["legacy"]["type"],
        "string"
    );

    std::fs::write(&p, "lens:\n- rename: {source: a\n").unwrap();
    let out = crate::instar_in(d.path())
        .args(["lens", "check"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1.0.0--2.0.0.lens.yaml:"), "{err}");

    std::fs::write(&p, "lens:\n- hoist: {host: meta, name: id}\n").unwrap();
    let out = crate::instar_in(d.path())
        .args(["lens", "apply"])
        .arg(&p)
        .write_stdin(r#"[{"meta": {}}, {"meta": 3}]"#)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("document 2")
            && err.contains("hoist meta.id")
            && err.contains("not an object"),
        "{err}"
    );

    let out = crate::instar_in(d.path())
        .args(["lens", "apply"])
        .arg(&p)
        .write_stdin("{not json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stdin:1: not JSON"));
}

#[test]
fn test_runs_the_examples_beside_the_lens() {
    let d = tempfile::tempdir().unwrap();
    let p = lens_file(d.path());
    let examples = d.path().join("1.0.0--2.0.0.examples.yaml");
    std::fs::write(
        &examples,
        "- name: split and rename\n  input: {name: Ada Lovelace, mail: a@b, legacy: old}\n  output: {first_name: Ada, last_name: Lovelace, email: a@b}\n",
    )
    .unwrap();
    let out = crate::instar_in(d.path())
        .args(["-v", "lens", "test"])
        .arg(&p)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 example(s), 0 failed"), "{text}");
    assert!(
        text.contains("the reverse lens alone gives"),
        "the dropped field is named: {text}"
    );

    std::fs::write(
        &examples,
        "- input: {name: Ada Lovelace}\n  output: {first_name: Ada, last_name: Byron}\n",
    )
    .unwrap();
    let out = crate::instar_in(d.path())
        .args(["lens", "test"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("FAILED example 1"));
}
