//! The JSON Schema each side of a lens declares, and a validator.
//!
//! A lens says a good deal about the documents on either side of it: `add
//! {name: age, type: number}` means every document it writes has a numeric
//! `age`; `split name into [first, last]` means both are strings; `convert`
//! means the value is one of its table's. [`derive`] walks a lens over field
//! names (not documents) and writes that down as a JSON Schema of the
//! documents it produces; the schema of its source side is the same walk over
//! the reversed lens (what translating back produces). Fields a lens does not
//! mention are left open (`additionalProperties` is not restricted): a lens
//! describes a change, not the whole shape.
//!
//! [`Schema`] validates a document against such a schema, or against one a
//! project declares itself, in the subset of JSON Schema (2020-12) listed in
//! [`SUPPORTED`]; a declared schema using any other keyword is refused when it
//! is read, never silently half-checked.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::op::{Kind, Op};

/// What a walk knows of one value.
#[derive(Debug, Clone, Default, PartialEq)]
struct Node {
    types: Option<BTreeSet<&'static str>>,
    values: Option<Vec<Value>>,
    props: BTreeMap<String, Node>,
    required: BTreeSet<String>,
    items: Option<Box<Node>>,
}

impl Node {
    fn typed(kinds: &[&'static str]) -> Node {
        Node {
            types: Some(kinds.iter().copied().collect()),
            ..Node::default()
        }
    }

    fn of_value(v: &Value) -> Node {
        Node {
            values: Some(vec![v.clone()]),
            ..Node::default()
        }
    }

    /// Whether `null` may be its value (unknown counts as yes).
    fn nullable(&self) -> bool {
        self.types.as_ref().is_none_or(|t| t.contains("null"))
            && self
                .values
                .as_ref()
                .is_none_or(|v| v.contains(&Value::Null))
    }

    fn to_json(&self) -> Value {
        let mut o = Map::new();
        if let Some(t) = &self.types {
            let list: Vec<&str> = t.iter().copied().collect();
            o.insert(
                "type".into(),
                match list.as_slice() {
                    [one] => json!(one),
                    many => json!(many),
                },
            );
        }
        match self.values.as_deref() {
            Some([one]) => {
                o.insert("const".into(), one.clone());
            }
            Some(many) => {
                o.insert("enum".into(), Value::Array(many.to_vec()));
            }
            None => {}
        }
        if !self.props.is_empty() {
            let props = self
                .props
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect();
            o.insert("properties".into(), Value::Object(props));
        }
        if !self.required.is_empty() {
            o.insert("required".into(), json!(self.required));
        }
        if let Some(items) = &self.items {
            o.insert("items".into(), items.to_json());
        }
        Value::Object(o)
    }
}

fn kind_names(kinds: &[Kind]) -> Vec<&'static str> {
    kinds.iter().map(|k| k.name()).collect()
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The JSON Schema of the documents `ops` produce (run forward).
pub fn derive(ops: &[Op]) -> Value {
    let mut root = Node::typed(&["object"]);
    walk(ops, &mut root);
    let mut v = root.to_json();
    if let Value::Object(o) = &mut v {
        o.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
    }
    v
}

/// The schemas of both sides of a lens: `(source, destination)`.
pub fn sides(ops: &[Op]) -> (Value, Value) {
    (derive(&crate::reverse(ops)), derive(ops))
}

fn walk(ops: &[Op], node: &mut Node) {
    for op in ops {
        step(op, node);
    }
}

/// Moves what is known of field `from` to field `to`. When `from` may be
/// missing, `to` may keep whatever it had: nothing is known of it then.
fn carry(node: &mut Node, from: &str, to: &str, keep_source: bool) {
    let known = if keep_source {
        node.props.get(from).cloned()
    } else {
        node.props.remove(from)
    };
    let required = if keep_source {
        node.required.contains(from)
    } else {
        node.required.remove(from)
    };
    set(node, to, known.filter(|_| required), required);
}

fn set(node: &mut Node, name: &str, known: Option<Node>, required: bool) {
    match known {
        Some(n) => node.props.insert(name.to_string(), n),
        None => node.props.remove(name),
    };
    if required {
        node.required.insert(name.to_string());
    } else {
        node.required.remove(name);
    }
}

fn forget(node: &mut Node, name: &str) {
    set(node, name, None, false);
}

/// A field converted to `kind`: null passes through unchanged where it could be null.
fn converted(old: Option<&Node>, kind: &'static str) -> Node {
    if old.is_none_or(Node::nullable) {
        Node::typed(&[kind, "null"])
    } else {
        Node::typed(&[kind])
    }
}

fn step(op: &Op, node: &mut Node) {
    match op {
        Op::Rename {
            source,
            destination,
        } => carry(node, source, destination, false),
        Op::Copy {
            source,
            destination,
        } => carry(node, source, destination, true),
        Op::RenameMatching { from, to } => {
            let touched: Vec<String> = node
                .props
                .keys()
                .chain(node.required.iter())
                .filter(|k| from.capture(k).is_some() || to.capture(k).is_some())
                .cloned()
                .collect();
            for k in touched {
                forget(node, &k);
            }
        }
        Op::Add(f) => {
            let mut n = if f.types.is_empty() {
                f.default
                    .as_ref()
                    .map_or_else(Node::default, |d| Node::typed(&[type_of(d)]))
            } else {
                Node::typed(&kind_names(&f.types))
            };
            if let (Some(t), Some(d)) = (&mut n.types, &f.default) {
                // A declared default of another type is still what documents get.
                t.insert(type_of(d));
            }
            set(node, &f.name, Some(n), true);
        }
        Op::Remove(f) => forget(node, &f.name),
        Op::Set { name, value } => set(node, name, Some(Node::of_value(value)), true),
        Op::Hoist { host, name } => {
            let inner = node.props.get_mut(host.as_str()).and_then(|h| {
                let required = h.required.remove(name.as_str());
                h.props.remove(name.as_str()).map(|n| (n, required))
            });
            let host_required = node.required.contains(host.as_str());
            match inner {
                Some((n, required)) => set(node, name, Some(n), required && host_required),
                None => forget(node, name),
            }
        }
        Op::Plunge { host, name } => {
            let known = node.props.remove(name.as_str());
            let required = node.required.remove(name.as_str());
            let h = node.props.entry(host.clone()).or_default();
            // The host becomes an object only when the field is always there.
            if required && h.types.is_some() {
                h.types = Some(["object"].into_iter().collect());
            }
            set(h, name, known, required);
            if required {
                node.required.insert(host.clone());
            }
        }
        Op::Wrap { name } => {
            let old = node.props.get(name.as_str()).cloned().unwrap_or_default();
            let mut items = old;
            // null becomes [], never [null].
            if let Some(t) = &mut items.types {
                t.remove("null");
                if t.is_empty() {
                    items.types = None;
                }
            }
            let mut n = Node::typed(&["array"]);
            n.items = Some(Box::new(items));
            let required = node.required.contains(name.as_str());
            set(node, name, Some(n), required);
        }
        Op::Head { name } => {
            let mut n = node
                .props
                .get(name.as_str())
                .and_then(|a| a.items.as_deref().cloned())
                .unwrap_or_default();
            // [] becomes null.
            if let Some(t) = &mut n.types {
                t.insert("null");
            }
            if let Some(v) = &mut n.values {
                v.push(Value::Null);
            }
            let required = node.required.contains(name.as_str());
            set(node, name, Some(n), required);
        }
        Op::In { name, lens } => walk(lens, node.props.entry(name.clone()).or_default()),
        Op::Map { lens } => {
            let items = node.items.get_or_insert_with(Box::default);
            walk(lens, items);
        }
        Op::Convert { name, forward, .. } => {
            let mut values: Vec<Value> = Vec::new();
            for (_, v) in forward {
                if !values.contains(v) {
                    values.push(v.clone());
                }
            }
            let n = Node {
                values: Some(values),
                ..Node::default()
            };
            let required = node.required.contains(name.as_str());
            set(node, name, Some(n), required);
        }
        Op::Split { source, into, .. } => {
            let required = node.required.remove(source.as_str());
            node.props.remove(source.as_str());
            for (i, f) in into.iter().enumerate() {
                set(node, f, Some(Node::typed(&["string"])), required && i == 0);
            }
        }
        Op::Join { sources, into, .. } => {
            // With every source missing, `into` keeps what it had.
            let some_required = sources.iter().any(|s| node.required.contains(s.as_str()));
            for s in sources {
                forget(node, s);
            }
            let n = some_required.then(|| Node::typed(&["string"]));
            set(node, into, n, some_required);
        }
        Op::Cast { name, to, .. } => {
            let n = converted(node.props.get(name.as_str()), to.name());
            let required = node.required.contains(name.as_str());
            set(node, name, Some(n), required);
        }
        Op::Scale { name, .. } => {
            let n = converted(node.props.get(name.as_str()), "number");
            let required = node.required.contains(name.as_str());
            set(node, name, Some(n), required);
        }
        // A module can make anything of the value: nothing is known after it.
        Op::Wasm(_) => {
            let object = node.types.as_ref().is_some_and(|t| t.contains("object"));
            *node = Node::default();
            if object {
                node.types = Some(["object"].into_iter().collect());
            }
        }
    }
}

/// The keywords [`Schema`] checks; annotations (`title`, `description`,
/// `default`, `examples`, `$schema`, `$id`, `$comment`, `format`,
/// `deprecated`, `readOnly`, `writeOnly`) are accepted and not checked.
pub const SUPPORTED: &[&str] = &[
    "type",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "minProperties",
    "maxProperties",
    "items",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
];

const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "title",
    "description",
    "default",
    "examples",
    "format",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// A JSON Schema, checked to use only the keywords Instar validates.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema(Value);

impl Schema {
    /// `v` as a schema; a keyword outside [`SUPPORTED`] (or a mistyped one)
    /// is an error naming where it is.
    pub fn new(v: Value) -> Result<Schema, String> {
        check(&v, "")?;
        Ok(Schema(v))
    }

    /// Its JSON.
    pub fn json(&self) -> &Value {
        &self.0
    }

    /// Whether `doc` is valid; the error names the first place where it is not
    /// (`/address/zip: expected a string, found a number`).
    pub fn validate(&self, doc: &Value) -> Result<(), String> {
        valid(&self.0, doc, &mut String::new())
    }
}

fn check(s: &Value, at: &str) -> Result<(), String> {
    let o = match s {
        Value::Bool(_) => return Ok(()),
        Value::Object(o) => o,
        _ => return Err(format!("{at}: a schema is an object or a boolean")),
    };
    for (k, v) in o {
        let here = format!("{at}/{k}");
        let bad = |want: &str| Err(format!("{here}: must be {want}"));
        match k.as_str() {
            "properties" => match v {
                Value::Object(p) => {
                    for (name, sub) in p {
                        check(sub, &format!("{here}/{name}"))?;
                    }
                }
                _ => return bad("an object of schemas"),
            },
            "additionalProperties" | "items" | "not" => check(v, &here)?,
            "allOf" | "anyOf" | "oneOf" => match v {
                Value::Array(l) if !l.is_empty() => {
                    for (i, sub) in l.iter().enumerate() {
                        check(sub, &format!("{here}/{i}"))?;
                    }
                }
                _ => return bad("a non-empty list of schemas"),
            },
            "type" => {
                let names = match v {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(l) => l.iter().filter_map(Value::as_str).collect(),
                    _ => Vec::new(),
                };
                let known = [
                    "null", "boolean", "number", "integer", "string", "array", "object",
                ];
                if names.is_empty() || names.iter().any(|t| !known.contains(t)) {
                    return bad("a JSON type or a list of them");
                }
            }
            "required" if !v.as_array().is_some_and(|l| l.iter().all(Value::is_string)) => {
                return bad("a list of field names")
            }
            "enum" if !v.is_array() => return bad("a list"),
            "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" | "multipleOf"
                if !v.is_number() =>
            {
                return bad("a number")
            }
            "minLength" | "maxLength" | "minItems" | "maxItems" | "minProperties"
            | "maxProperties"
                if !v.is_u64() =>
            {
                return bad("a whole number")
            }
            "uniqueItems" if !v.is_boolean() => return bad("true or false"),
            k if SUPPORTED.contains(&k) || ANNOTATIONS.contains(&k) => {}
            other => {
                return Err(format!(
                    "{here}: the keyword `{other}` is not supported (Instar validates: {})",
                    SUPPORTED.join(", ")
                ))
            }
        }
    }
    Ok(())
}

fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "integer" => v.as_f64().is_some_and(|x| x.fract() == 0.0),
        "number" => v.is_number(),
        other => type_of(v) == other,
    }
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn valid(s: &Value, v: &Value, at: &mut String) -> Result<(), String> {
    let o = match s {
        Value::Bool(true) => return Ok(()),
        Value::Bool(false) => return Err(format!("{}: no value is allowed here", show(at))),
        Value::Object(o) => o,
        _ => return Ok(()),
    };
    let fail = |at: &str, what: String| Err(format!("{}: {what}", show(at)));
    if let Some(t) = o.get("type") {
        let types: Vec<&str> = match t {
            Value::String(x) => vec![x.as_str()],
            Value::Array(l) => l.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !types.iter().any(|t| is_type(v, t)) {
            return fail(
                at,
                format!("expected {}, found {}", types.join(" or "), type_of(v)),
            );
        }
    }
    if let Some(c) = o.get("const").filter(|c| !same(c, v)) {
        return fail(at, format!("expected {c}, found {v}"));
    }
    if let Some(Value::Array(l)) = o.get("enum") {
        if !l.iter().any(|e| same(e, v)) {
            return fail(at, format!("{v} is not one of {}", Value::Array(l.clone())));
        }
    }
    valid_number(o, v, at)?;
    valid_length(o, v, at)?;
    match v {
        Value::Object(doc) => valid_object(o, doc, at)?,
        Value::Array(items) => {
            if let Some(item) = o.get("items") {
                for (i, x) in items.iter().enumerate() {
                    let len = at.len();
                    at.push_str(&format!("/{i}"));
                    valid(item, x, at)?;
                    at.truncate(len);
                }
            }
            if o.get("uniqueItems") == Some(&Value::Bool(true)) {
                for (i, x) in items.iter().enumerate() {
                    if items[..i].iter().any(|y| same(x, y)) {
                        return fail(at, format!("item {i} repeats an earlier item"));
                    }
                }
            }
        }
        _ => {}
    }
    valid_combined(o, v, at)
}

fn valid_combined(o: &Map<String, Value>, v: &Value, at: &mut String) -> Result<(), String> {
    if let Some(Value::Array(all)) = o.get("allOf") {
        for s in all {
            valid(s, v, at)?;
        }
    }
    if let Some(Value::Array(any)) = o.get("anyOf") {
        if !any.iter().any(|s| valid(s, v, &mut at.clone()).is_ok()) {
            return Err(format!("{}: matches none of anyOf", show(at)));
        }
    }
    if let Some(Value::Array(one)) = o.get("oneOf") {
        let n = one
            .iter()
            .filter(|s| valid(s, v, &mut at.clone()).is_ok())
            .count();
        if n != 1 {
            return Err(format!(
                "{}: matches {n} of oneOf, not exactly one",
                show(at)
            ));
        }
    }
    if let Some(not) = o.get("not") {
        if valid(not, v, &mut at.clone()).is_ok() {
            return Err(format!("{}: matches the schema under `not`", show(at)));
        }
    }
    Ok(())
}

fn valid_object(
    o: &Map<String, Value>,
    doc: &Map<String, Value>,
    at: &mut String,
) -> Result<(), String> {
    if let Some(Value::Array(req)) = o.get("required") {
        if let Some(missing) = req
            .iter()
            .filter_map(Value::as_str)
            .find(|f| !doc.contains_key(*f))
        {
            return Err(format!("{}: the field `{missing}` is missing", show(at)));
        }
    }
    let bound = |k: &str| o.get(k).and_then(Value::as_u64);
    let n = doc.len() as u64;
    if bound("minProperties").is_some_and(|m| n < m)
        || bound("maxProperties").is_some_and(|m| n > m)
    {
        return Err(format!("{}: {n} fields is out of bounds", show(at)));
    }
    let props = o.get("properties").and_then(Value::as_object);
    for (k, x) in doc {
        let sub = match props.and_then(|p| p.get(k)) {
            Some(s) => s,
            None => match o.get("additionalProperties") {
                Some(s) => s,
                None => continue,
            },
        };
        let len = at.len();
        at.push('/');
        at.push_str(k);
        valid(sub, x, at)?;
        at.truncate(len);
    }
    Ok(())
}

fn valid_number(o: &Map<String, Value>, v: &Value, at: &str) -> Result<(), String> {
    let Some(x) = v.as_f64() else { return Ok(()) };
    let get = |k: &str| o.get(k).and_then(Value::as_f64);
    let broken = if get("minimum").is_some_and(|m| x < m) {
        Some("minimum")
    } else if get("maximum").is_some_and(|m| x > m) {
        Some("maximum")
    } else if get("exclusiveMinimum").is_some_and(|m| x <= m) {
        Some("exclusiveMinimum")
    } else if get("exclusiveMaximum").is_some_and(|m| x >= m) {
        Some("exclusiveMaximum")
    } else if get("multipleOf").is_some_and(|m| {
        // 19.99 is a multiple of 0.01, whatever binary floating point says.
        let q = x / m;
        m != 0.0 && (q - q.round()).abs() > 1e-9 * q.abs().max(1.0)
    }) {
        Some("multipleOf")
    } else {
        None
    };
    match broken {
        Some(k) => Err(format!("{}: {x} breaks {k} {}", show(at), o[k])),
        None => Ok(()),
    }
}

fn valid_length(o: &Map<String, Value>, v: &Value, at: &str) -> Result<(), String> {
    let (n, lo, hi) = match v {
        Value::String(s) => (s.chars().count() as u64, "minLength", "maxLength"),
        Value::Array(a) => (a.len() as u64, "minItems", "maxItems"),
        _ => return Ok(()),
    };
    let get = |k: &str| o.get(k).and_then(Value::as_u64);
    if get(lo).is_some_and(|m| n < m) || get(hi).is_some_and(|m| n > m) {
        return Err(format!("{}: length {n} is out of bounds", show(at)));
    }
    Ok(())
}

fn show(at: &str) -> &str {
    if at.is_empty() {
        "/"
    } else {
        at
    }
}
