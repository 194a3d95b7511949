//! The pure lens language of Instar: no database, no async.
//!
//! A **lens** is a list of [`Op`]s that translates a JSON document from one
//! version of its shape to the next, and back by its [`reverse`]. Lens files
//! use Cambria's format (`lens:` then `- op: {args}`, nested `lens:` for `in`
//! and `map`), in YAML or JSON, so an existing Cambria lens reads unchanged.
//! Forward translation keeps a [`Complement`] of what it dropped, so that the
//! way back returns exactly the original document.
//!
//! - [`Lens::load`] reads a file (errors name file and line);
//! - [`Lens::forward`] / [`Lens::backward`] translate one document;
//! - [`graph::Graph`] joins lenses into a version graph and finds the path
//!   between two versions;
//! - [`schema`] derives the JSON Schema each side of a lens declares, and
//!   validates documents against it (or against a declared one).
#![deny(missing_docs)]

mod apply;
pub mod fuse;
pub mod graph;
pub mod op;
pub mod schema;
pub mod wasm;

use std::path::{Path, PathBuf};

pub use apply::{backward, backward_mut, forward, forward_mut, reverse, reverse_op, Complement};
pub use op::{Field, Glob, Kind, Op};
use serde_json::Value;

/// Everything that can go wrong with a lens or a document going through one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The lens itself is wrong (an unknown op, a missing or mistyped argument).
    #[error("{0}")]
    Lens(String),
    /// A lens file cannot be read or parsed.
    #[error("{path}:{line}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// 1-based line (0 when unknown).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// One document cannot go through an op (a path into a field that is not
    /// an object, a value with no mapping …).
    #[error("{at}{op}: {message}")]
    Document {
        /// Where in the document (`metadata.tags.3.`), empty at its top.
        at: String,
        /// The op, as written in the lens (`head labels`).
        op: String,
        /// What is wrong.
        message: String,
    },
}

impl Error {
    pub(crate) fn document(op: &Op, message: String) -> Error {
        Error::Document {
            at: String::new(),
            op: describe(op),
            message,
        }
    }

    /// The same error for the op at (1-based) position `n` of a lens.
    pub(crate) fn at(self, n: usize) -> Error {
        match self {
            Error::Lens(m) => Error::Lens(format!("op {n}: {m}")),
            other => other,
        }
    }

    /// The same error, inside op `op`'s nested lens.
    pub(crate) fn inside(self, op: &str) -> Error {
        match self {
            Error::Lens(m) => Error::Lens(format!("in `{op}`'s lens: {m}")),
            other => other,
        }
    }

    /// A document error one field deeper.
    pub(crate) fn within(self, field: &str) -> Error {
        match self {
            Error::Document { at, op, message } => Error::Document {
                at: format!("{field}.{at}"),
                op,
                message,
            },
            other => other,
        }
    }
}

/// An op as a person reads it in a message: its name and main field.
pub fn describe(op: &Op) -> String {
    match op {
        Op::Rename {
            source,
            destination,
        } => format!("rename {source} → {destination}"),
        Op::RenameMatching { from, to } => format!("rename {from} → {to}"),
        Op::Add(f) => format!("add {}", f.name),
        Op::Remove(f) => format!("remove {}", f.name),
        Op::Hoist { host, name } => format!("hoist {host}.{name}"),
        Op::Plunge { host, name } => format!("plunge {name} into {host}"),
        Op::Wrap { name } => format!("wrap {name}"),
        Op::Head { name } => format!("head {name}"),
        Op::In { name, .. } => format!("in {name}"),
        Op::Map { .. } => "map".into(),
        Op::Convert { name, .. } => format!("convert {name}"),
        Op::Copy {
            source,
            destination,
        } => format!("copy {source} → {destination}"),
        Op::Set { name, .. } => format!("set {name}"),
        Op::Split { source, .. } => format!("split {source}"),
        Op::Join { into, .. } => format!("join into {into}"),
        Op::Cast { name, .. } => format!("cast {name}"),
        Op::Scale { name, .. } => format!("scale {name}"),
        Op::Wasm(w) if w.inverse => format!("wasm {} (inverse)", w.path),
        Op::Wasm(w) => format!("wasm {}", w.path),
    }
}

/// A lens read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Lens {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its ops, in order.
    pub ops: Vec<Op>,
}

impl Lens {
    /// Reads a lens file: YAML (`.yaml`, `.yml`) or JSON (anything else that
    /// parses as JSON). Errors name the file, and the line where the parser knows it.
    pub fn load(path: &Path) -> Result<Lens, Error> {
        Lens::load_with(path, None)
    }

    /// [`Lens::load`], loading the modules of its `wasm` stages with `loader`
    /// (a lens with such a stage and no loader is an error).
    pub fn load_with(path: &Path, loader: Option<&dyn wasm::Loader>) -> Result<Lens, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::File {
            path: path.to_path_buf(),
            line: 0,
            message: format!("cannot read it: {e}"),
        })?;
        Lens::parse_with(path, &text, loader)
    }

    /// Parses the text of lens file `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Lens, Error> {
        Lens::parse_with(path, text, None)
    }

    /// [`Lens::parse`], loading the modules of its `wasm` stages with `loader`.
    pub fn parse_with(
        path: &Path,
        text: &str,
        loader: Option<&dyn wasm::Loader>,
    ) -> Result<Lens, Error> {
        let value = read_value(path, text)?;
        let file_error = |message: String| Error::File {
            path: path.to_path_buf(),
            line: 0,
            message,
        };
        let mut ops = op::parse_lens(&value).map_err(|e| file_error(e.to_string()))?;
        load_stages(&mut ops, path, loader).map_err(file_error)?;
        Ok(Lens {
            path: path.to_path_buf(),
            ops,
        })
    }

    /// The `wasm` stages' modules, nested ones too: path as written, and content hash.
    pub fn modules(&self) -> Vec<(String, String)> {
        fn walk(ops: &[Op], out: &mut Vec<(String, String)>) {
            for op in ops {
                match op {
                    Op::Wasm(w) => out.push((
                        w.path.clone(),
                        w.stage
                            .as_ref()
                            .map_or("not loaded".into(), |s| s.hash().to_string()),
                    )),
                    Op::In { lens, .. } | Op::Map { lens } => walk(lens, out),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.ops, &mut out);
        out
    }

    /// The `wasm` stages that cannot run backward (no `inverse` export, or
    /// no `transform` for a stage that runs inverted): each makes the lens one-way.
    pub fn one_way(&self) -> Vec<String> {
        let mut out = Vec::new();
        one_way_in(&reverse(&self.ops), &mut out);
        out
    }

    /// The lens that undoes this one.
    pub fn reversed(&self) -> Lens {
        Lens {
            path: self.path.clone(),
            ops: reverse(&self.ops),
        }
    }

    /// Translates `doc` forward: the result and its complement.
    pub fn forward(&self, doc: &Value) -> Result<(Value, Complement), Error> {
        forward(&self.ops, doc)
    }

    /// Translates `doc` back, with the complement its forward translation kept.
    pub fn backward(&self, doc: &Value, c: Option<&Complement>) -> Result<Value, Error> {
        backward(&self.ops, doc, c)
    }

    /// The lens in Cambria's YAML format.
    pub fn to_yaml(&self) -> String {
        let doc = serde_json::json!({ "lens": op::to_json(&self.ops) });
        serde_yaml::to_string(&doc).unwrap_or_default()
    }
}

fn load_stages(
    ops: &mut [Op],
    file: &Path,
    loader: Option<&dyn wasm::Loader>,
) -> Result<(), String> {
    for op in ops {
        match op {
            Op::Wasm(w) => {
                let Some(loader) = loader else {
                    return Err(format!(
                        "`wasm {}`: a WebAssembly stage needs the module host, which this program does not have",
                        w.path
                    ));
                };
                let path = w.resolve(file)?;
                let stage = loader
                    .load(&path)
                    .map_err(|e| format!("`wasm {}`: {e}", w.path))?;
                w.stage = Some(stage);
                if let Some(why) = w.misfit() {
                    return Err(format!("`wasm {}`: {why}", w.path));
                }
                if let Some(why) = w.one_way() {
                    return Err(format!(
                        "`wasm {}`: {why}, and the stage runs that way",
                        w.path
                    ));
                }
            }
            Op::In { lens, .. } | Op::Map { lens } => load_stages(lens, file, loader)?,
            _ => {}
        }
    }
    Ok(())
}

fn one_way_in(ops: &[Op], out: &mut Vec<String>) {
    for op in ops {
        match op {
            Op::Wasm(w) => out.extend(w.one_way()),
            Op::In { lens, .. } | Op::Map { lens } => one_way_in(lens, out),
            _ => {}
        }
    }
}

/// Runs `ops` over a stream of documents, as the Lens host's command line
/// does: a `wasm` stage takes the whole stream (it may filter, aggregate or
/// expand it; a nil output is `null`), a declarative op translates each
/// document (a `null` passes through). No complement is kept.
pub fn apply_stream(ops: &[Op], docs: Vec<Value>) -> Result<Vec<Value>, Error> {
    let mut docs = docs;
    // Until a module reshapes the stream, item N is the input's document N.
    let mut reshaped = false;
    for op in ops {
        if let Op::Wasm(w) = op {
            docs = w
                .run(docs)
                .and_then(wasm::Outputs::documents)
                .map_err(|message| Error::document(op, message))?;
            reshaped = true;
            continue;
        }
        for (i, d) in docs.iter_mut().enumerate() {
            if d.is_null() {
                continue;
            }
            forward_mut(std::slice::from_ref(op), d).map_err(|e| match e {
                Error::Document { at, op, message } => Error::Document {
                    at: if reshaped {
                        format!("item {} (from 1) of the stream into it: {at}", i + 1)
                    } else {
                        format!("document {} (from 1): {at}", i + 1)
                    },
                    op,
                    message,
                },
                other => other,
            })?;
        }
    }
    Ok(docs)
}

/// A YAML or JSON file's content as JSON. YAML keys that are not strings
/// (`true:` in a `convert` table) become their text.
pub fn read_value(path: &Path, text: &str) -> Result<Value, Error> {
    let json_like = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if json_like {
        return serde_json::from_str(text).map_err(|e| Error::File {
            path: path.to_path_buf(),
            line: e.line(),
            message: e.to_string(),
        });
    }
    let yaml: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| Error::File {
        path: path.to_path_buf(),
        line: e.location().map_or(0, |l| l.line()),
        message: e.to_string(),
    })?;
    Ok(yaml_to_json(yaml))
}

fn yaml_to_json(v: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let key = match yaml_to_json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(t) => yaml_to_json(t.value),
    }
}
