//! `instar lens apply|check|test`: a lens file alone, no database.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use instar_lens::wasm::Loader;
use instar_lens::Lens;
use serde_json::Value;

use crate::args::LensCommand;
use crate::render::Out;

pub fn run(action: &LensCommand, loader: &dyn Loader, out: &Out) -> Result<i32> {
    match action {
        LensCommand::Apply { file, reverse } => {
            apply(&Lens::load_with(file, Some(loader))?, file, *reverse)
        }
        LensCommand::Check { file } => check(&Lens::load_with(file, Some(loader))?, file, out),
        LensCommand::Test { file } => test(&Lens::load_with(file, Some(loader))?, file, out),
    }
}

/// The Lens host's contract: a JSON array of documents in, the translated
/// array out (a `wasm` stage takes the whole stream; a nil output is `null`).
fn apply(lens: &Lens, file: &Path, reverse: bool) -> Result<i32> {
    let mut input = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut input).context("reading stdin")?;
    let docs: Value = serde_json::from_str(&input)
        .map_err(|e| anyhow::anyhow!("stdin:{}: not JSON: {e}", e.line()))?;
    let Value::Array(docs) = docs else {
        bail!("stdin: expected a JSON array of documents");
    };
    let ops = if reverse {
        if let Some(why) = lens.one_way().first() {
            bail!("{}: the lens is one-way: {why}", file.display());
        }
        instar_lens::reverse(&lens.ops)
    } else {
        lens.ops.clone()
    };
    let translated = instar_lens::apply_stream(&ops, docs)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    println!("{}", Value::Array(translated));
    Ok(0)
}

fn check(lens: &Lens, file: &Path, out: &Out) -> Result<i32> {
    let reverse = lens.reversed();
    let one_way = lens.one_way();
    let (source, destination) = instar_lens::schema::sides(&lens.ops);
    if out.human() && !out.quiet {
        println!(
            "# {}: {} op(s); its reverse:",
            file.display(),
            lens.ops.len()
        );
        print!("{}", reverse.to_yaml());
        for (path, hash) in lens.modules() {
            println!("# module {path}: {hash}");
        }
        for why in &one_way {
            println!("# one-way: {why}; the reverse lens cannot run");
        }
        let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
        println!("# the JSON Schema of its source side (what its reverse gives back):");
        println!("{}", pretty(&source));
        println!("# the JSON Schema of its destination side (what it gives):");
        println!("{}", pretty(&destination));
    }
    out.json(&serde_json::json!({
        "file": file,
        "ops": lens.ops.len(),
        "reverse": instar_lens::op::to_json(&reverse.ops),
        "one_way": one_way,
        "modules": lens.modules().into_iter().map(|(path, hash)| serde_json::json!({"path": path, "hash": hash})).collect::<Vec<_>>(),
        "schemas": {"source": source, "destination": destination},
    }));
    Ok(0)
}

/// `<lens>.examples.yaml` beside `1.0.0--2.0.0.lens.yaml` and its kin.
fn examples_of(file: &Path) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let base = [
        ".lens.yaml",
        ".lens.yml",
        ".lens.json",
        ".yaml",
        ".yml",
        ".json",
    ]
    .iter()
    .find_map(|s| name.strip_suffix(s))
    .unwrap_or(&name);
    file.with_file_name(format!("{base}.examples.yaml"))
}

/// Each example's `output` is what the lens makes of its `input`; the way
/// back with the complement must give the input; `back` (when given) is what
/// the reverse lens alone must give from the output.
fn test(lens: &Lens, file: &Path, out: &Out) -> Result<i32> {
    let one_way = lens.one_way();
    let path = examples_of(file);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no examples for {}: write {} (a list of `input:` / `output:` pairs)",
            file.display(),
            path.display()
        )
    })?;
    let examples = instar_lens::read_value(&path, &text)?;
    let Value::Array(examples) = examples else {
        bail!("{}: expected a list of examples", path.display());
    };
    let mut failures = Vec::new();
    let mut notes = Vec::new();
    for (i, ex) in examples.iter().enumerate() {
        let n = i + 1;
        let name = ex
            .get("name")
            .and_then(Value::as_str)
            .map_or(format!("example {n}"), |s| format!("example {n} ({s})"));
        let Some(input) = ex.get("input") else {
            failures.push(format!("{name}: no `input`"));
            continue;
        };
        let (view, complement) = match lens.forward(input) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        if let Some(want) = ex.get("output").filter(|w| **w != view) {
            failures.push(format!(
                "{name}: the lens gives {view}, the example says {want}"
            ));
        }
        if !one_way.is_empty() {
            notes.push(format!(
                "{name}: the way back is not checked: the lens is one-way ({})",
                one_way.join("; ")
            ));
            continue;
        }
        match lens.backward(&view, Some(&complement)) {
            Ok(back) if back == *input => {}
            Ok(back) => failures.push(format!("{name}: the way back gives {back}, not the input")),
            Err(e) => failures.push(format!("{name}: the way back: {e}")),
        }
        let alone = lens.backward(&view, None);
        match (ex.get("back"), &alone) {
            (Some(want), Ok(got)) if got != want => failures.push(format!(
                "{name}: the reverse lens gives {got}, the example's `back` says {want}"
            )),
            (_, Err(e)) => failures.push(format!("{name}: the reverse lens: {e}")),
            (None, Ok(got)) if got != input => notes.push(format!(
                "{name}: the reverse lens alone gives {got}; the complement kept what it lacks (a document written at the far side without one gets that)"
            )),
            _ => {}
        }
    }
    for n in &notes {
        out.note(n);
    }
    for f in &failures {
        eprintln!("FAILED {f}");
    }
    out.line(format!(
        "{}: {} example(s), {} failed",
        path.display(),
        examples.len(),
        failures.len()
    ));
    out.json(
        &serde_json::json!({ "examples": examples.len(), "failed": failures, "notes": notes }),
    );
    Ok(if failures.is_empty() { 0 } else { 1 })
}
