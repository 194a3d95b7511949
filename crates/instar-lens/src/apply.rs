//! Running a lens over one document, forward or backward, with its complement.
//!
//! Every op touches a few fields of the object it applies to (its footprint).
//! Going forward, an op whose reverse would not give those fields back exactly
//! (a `remove`, a `head` of a longer array, a many-to-one `convert`, a lossy
//! `cast`, a `rename` onto a field that was there) records them in the
//! document's **complement**, with what the op made of them. Going backward,
//! the reverse op runs, and the recorded fields are put back where the view
//! still holds what the op made: so `backward(forward(d)) == d` always
//! (GetPut), and an edited field is never overwritten by the old value
//! (PutGet holds for every op whose reverse is exact on its range).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use crate::op::{Glob, Kind, Op};
use crate::Error;

/// What forward translation dropped, op by op, to make the way back exact.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Complement(Vec<Option<Entry>>);

impl Complement {
    /// Whether nothing was dropped (no complement needs storing).
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }

    fn get(&self, i: usize) -> Option<&Entry> {
        self.0.get(i).and_then(Option::as_ref)
    }
}

/// One op's part of a complement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Entry {
    /// The footprint's fields before the op, and what the op made of them;
    /// `[]` is a missing field, `[v]` a present one.
    Fields {
        before: Vec<Vec<Value>>,
        after: Vec<Vec<Value>>,
        /// The fields, for an op whose footprint depends on the document
        /// (`rename` of a pattern); otherwise the op's own footprint.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        keys: Vec<String>,
    },
    /// `in`: the nested lens's complement.
    Nested(Complement),
    /// `map`: each item's complement, by position.
    Items(Vec<Complement>),
}

/// Runs `ops` forward over `doc`: the translated document and its complement.
pub fn forward(ops: &[Op], doc: &Value) -> Result<(Value, Complement), Error> {
    let mut out = doc.clone();
    let c = forward_in(ops, &mut out)?;
    Ok((out, c))
}

/// Runs `ops` backward over `doc` (a document at the lens's far side), using
/// the complement its forward translation kept, if any.
pub fn backward(ops: &[Op], doc: &Value, c: Option<&Complement>) -> Result<Value, Error> {
    let mut out = doc.clone();
    backward_in(ops, &mut out, c)?;
    Ok(out)
}

/// [`forward`] in place: `doc` becomes the translated document.
pub fn forward_mut(ops: &[Op], doc: &mut Value) -> Result<Complement, Error> {
    forward_in(ops, doc)
}

/// [`backward`] in place.
pub fn backward_mut(ops: &[Op], doc: &mut Value, c: Option<&Complement>) -> Result<(), Error> {
    backward_in(ops, doc, c)
}

/// The lens that undoes `ops`: each op's reverse, in reverse order.
pub fn reverse(ops: &[Op]) -> Vec<Op> {
    ops.iter().rev().map(reverse_op).collect()
}

/// One op's reverse.
pub fn reverse_op(op: &Op) -> Op {
    use crate::op::Field;
    let removal = |name: &str| {
        Op::Remove(Field {
            name: name.to_string(),
            types: Vec::new(),
            default: None,
        })
    };
    match op {
        Op::Rename {
            source,
            destination,
        } => Op::Rename {
            source: destination.clone(),
            destination: source.clone(),
        },
        Op::RenameMatching { from, to } => Op::RenameMatching {
            from: to.clone(),
            to: from.clone(),
        },
        Op::Add(f) => Op::Remove(f.clone()),
        Op::Remove(f) => Op::Add(f.clone()),
        Op::Hoist { host, name } => Op::Plunge {
            host: host.clone(),
            name: name.clone(),
        },
        Op::Plunge { host, name } => Op::Hoist {
            host: host.clone(),
            name: name.clone(),
        },
        Op::Wrap { name } => Op::Head { name: name.clone() },
        Op::Head { name } => Op::Wrap { name: name.clone() },
        Op::In { name, lens } => Op::In {
            name: name.clone(),
            lens: reverse(lens),
        },
        Op::Map { lens } => Op::Map {
            lens: reverse(lens),
        },
        Op::Convert {
            name,
            forward,
            reverse,
        } => Op::Convert {
            name: name.clone(),
            forward: reverse.clone(),
            reverse: forward.clone(),
        },
        Op::Copy { destination, .. } => removal(destination),
        Op::Set { name, .. } => removal(name),
        Op::Split {
            source,
            into,
            separator,
        } => Op::Join {
            sources: into.clone(),
            into: source.clone(),
            separator: separator.clone(),
        },
        Op::Join {
            sources,
            into,
            separator,
        } => Op::Split {
            source: into.clone(),
            into: sources.clone(),
            separator: separator.clone(),
        },
        Op::Cast { name, from, to } => Op::Cast {
            name: name.clone(),
            from: *to,
            to: *from,
        },
        Op::Scale {
            name,
            factor,
            offset,
        } => Op::Scale {
            name: name.clone(),
            factor: 1.0 / factor,
            offset: -offset / factor,
        },
        Op::Wasm(w) => Op::Wasm(w.flipped()),
    }
}

fn forward_in(ops: &[Op], scope: &mut Value) -> Result<Complement, Error> {
    let mut c = Complement(Vec::with_capacity(ops.len()));
    for op in ops {
        c.0.push(forward_op(op, scope)?);
    }
    while c.0.last().is_some_and(Option::is_none) {
        c.0.pop();
    }
    Ok(c)
}

fn backward_in(ops: &[Op], scope: &mut Value, c: Option<&Complement>) -> Result<(), Error> {
    for (i, op) in ops.iter().enumerate().rev() {
        backward_op(op, scope, c.and_then(|c| c.get(i)))?;
    }
    Ok(())
}

/// The fields an op reads and writes in the object it applies to.
fn footprint(op: &Op) -> Vec<&str> {
    match op {
        Op::Rename {
            source,
            destination,
        }
        | Op::Copy {
            source,
            destination,
        } => {
            vec![source, destination]
        }
        Op::Add(f) | Op::Remove(f) => vec![&f.name],
        Op::Hoist { host, name } | Op::Plunge { host, name } => vec![host, name],
        Op::Wrap { name }
        | Op::Head { name }
        | Op::Convert { name, .. }
        | Op::Set { name, .. }
        | Op::Cast { name, .. }
        | Op::Scale { name, .. } => vec![name],
        Op::Split { source, into, .. } => std::iter::once(source)
            .chain(into)
            .map(String::as_str)
            .collect(),
        Op::Join { sources, into, .. } => {
            sources.iter().chain([into]).map(String::as_str).collect()
        }
        Op::In { .. } | Op::Map { .. } | Op::RenameMatching { .. } | Op::Wasm(_) => Vec::new(),
    }
}

/// The fields a pattern rename touches in `obj`, either way: the names that
/// match either pattern, and what each becomes or came from.
fn matching_footprint(obj: &Map<String, Value>, from: &Glob, to: &Glob) -> Vec<String> {
    let mut keys = std::collections::BTreeSet::new();
    for k in obj.keys() {
        for (a, b) in [(from, to), (to, from)] {
            if let Some(other) = a.capture(k).map(|m| b.fill(m)) {
                keys.insert(k.clone());
                keys.insert(other);
            }
        }
    }
    keys.into_iter().collect()
}

fn snapshot(obj: &Map<String, Value>, keys: &[&str]) -> Vec<Vec<Value>> {
    keys.iter()
        .map(|k| obj.get(*k).cloned().into_iter().collect())
        .collect()
}

fn restore(obj: &mut Map<String, Value>, keys: &[&str], values: &[Vec<Value>]) {
    for (k, v) in keys.iter().zip(values) {
        match v.first() {
            Some(v) => {
                obj.insert((*k).to_string(), v.clone());
            }
            None => {
                obj.remove(*k);
            }
        }
    }
}

fn object<'a>(op: &Op, scope: &'a mut Value) -> Result<&'a mut Map<String, Value>, Error> {
    match scope {
        Value::Object(o) => Ok(o),
        other => Err(Error::document(
            op,
            format!("applies to an object, and this is {}", kind_of(other)),
        )),
    }
}

/// A module stage: the value is replaced by what the module returns for it
/// (it keeps no complement: a module is opaque).
fn wasm_op(op: &Op, w: &crate::wasm::Wasm, scope: &mut Value) -> Result<(), Error> {
    let out = w
        .run_one(scope.take())
        .map_err(|message| Error::document(op, message))?;
    *scope = out;
    Ok(())
}

fn forward_op(op: &Op, scope: &mut Value) -> Result<Option<Entry>, Error> {
    match op {
        Op::Wasm(w) => wasm_op(op, w, scope).map(|()| None),
        Op::In { name, lens } => {
            let obj = object(op, scope)?;
            let Some(inner) = obj.get_mut(name).filter(|v| !v.is_null()) else {
                return Ok(None);
            };
            if !inner.is_object() && !inner.is_array() {
                return Err(Error::document(
                    op,
                    format!(
                        "field `{name}` is {}, not an object or an array",
                        kind_of(inner)
                    ),
                ));
            }
            let c = forward_in(lens, inner).map_err(|e| e.within(name))?;
            Ok((!c.is_empty()).then_some(Entry::Nested(c)))
        }
        Op::Map { lens } => {
            let Value::Array(items) = scope else {
                return Err(Error::document(
                    op,
                    format!("applies to an array, and this is {}", kind_of(scope)),
                ));
            };
            let mut all = Vec::with_capacity(items.len());
            for (i, item) in items.iter_mut().enumerate() {
                all.push(forward_in(lens, item).map_err(|e| e.within(&i.to_string()))?);
            }
            Ok(all
                .iter()
                .any(|c| !c.is_empty())
                .then_some(Entry::Items(all)))
        }
        _ => {
            let obj = object(op, scope)?;
            if exact_here(op, obj) {
                apply(op, obj)?;
                return Ok(None);
            }
            let owned = match op {
                Op::RenameMatching { from, to } => matching_footprint(obj, from, to),
                _ => Vec::new(),
            };
            let keys = if owned.is_empty() {
                footprint(op)
            } else {
                owned.iter().map(String::as_str).collect()
            };
            let before = snapshot(obj, &keys);
            apply(op, obj)?;
            let after = snapshot(obj, &keys);
            // Would the reverse give the fields back? Tried on the footprint alone.
            let mut probe: Map<String, Value> = Map::new();
            restore(&mut probe, &keys, &after);
            let exact =
                apply(&reverse_op(op), &mut probe).is_ok() && snapshot(&probe, &keys) == before;
            Ok((!exact).then_some(Entry::Fields {
                before,
                after,
                keys: owned,
            }))
        }
    }
}

/// Whether `op`'s reverse gives `obj`'s fields back exactly, known without
/// trying it (the common cases, which then keep no complement and cost no copy).
fn exact_here(op: &Op, obj: &Map<String, Value>) -> bool {
    match op {
        // Onto a free name (or nothing to move, and nothing to move back).
        Op::Rename { destination, .. } => !obj.contains_key(destination.as_str()),
        // x ↔ [x], null ↔ [], missing stays missing.
        Op::Wrap { .. } => true,
        // Every moved field lands on a free name, and nothing else moves back.
        Op::RenameMatching { to, .. } => obj.keys().all(|k| to.capture(k).is_none()),
        // A field added where it was missing is removed again.
        Op::Add(f) => !obj.contains_key(&f.name),
        // host.name moves to a free name and back; nothing moves either way.
        Op::Hoist { host, name } => {
            !obj.contains_key(name.as_str())
                && match obj.get(host.as_str()) {
                    Some(Value::Object(h)) => h.contains_key(name.as_str()),
                    None | Some(Value::Null) => true,
                    Some(_) => false,
                }
        }
        Op::Plunge { host, name } => match obj.get(host.as_str()) {
            Some(Value::Object(h)) => !h.contains_key(name.as_str()),
            None | Some(Value::Null) => !obj.contains_key(name.as_str()),
            Some(_) => false,
        },
        // A value whose mapping maps back to it.
        Op::Convert {
            name,
            forward,
            reverse,
        } => match obj.get(name.as_str()) {
            None => true,
            Some(v) => {
                let key = table_key(v);
                forward
                    .iter()
                    .find(|(k, _)| *k == key)
                    .and_then(|(_, w)| {
                        let back = table_key(w);
                        reverse.iter().find(|(k, _)| *k == back)
                    })
                    .is_some_and(|(_, b)| b == v)
            }
        },
        // splitn then join with the same separator is the string again, onto free fields.
        Op::Split { source, into, .. } => {
            !into.contains(source)
                && into.iter().enumerate().all(|(i, f)| !into[..i].contains(f))
                && into.iter().all(|f| !obj.contains_key(f.as_str()))
                && obj.get(source.as_str()).is_none_or(Value::is_string)
        }
        _ => false,
    }
}

fn backward_op(op: &Op, scope: &mut Value, entry: Option<&Entry>) -> Result<(), Error> {
    match op {
        Op::Wasm(w) => {
            let back = w.flipped();
            wasm_op(&Op::Wasm(back.clone()), &back, scope)
        }
        Op::In { name, lens } => {
            let obj = object(op, scope)?;
            let Some(inner) = obj.get_mut(name).filter(|v| !v.is_null()) else {
                return Ok(());
            };
            let nested = match entry {
                Some(Entry::Nested(c)) => Some(c),
                _ => None,
            };
            backward_in(lens, inner, nested).map_err(|e| e.within(name))
        }
        Op::Map { lens } => {
            let Value::Array(items) = scope else {
                return Err(Error::document(
                    op,
                    format!("applies to an array, and this is {}", kind_of(scope)),
                ));
            };
            for (i, item) in items.iter_mut().enumerate() {
                let c = match entry {
                    Some(Entry::Items(all)) => all.get(i),
                    _ => None,
                };
                backward_in(lens, item, c).map_err(|e| e.within(&i.to_string()))?;
            }
            Ok(())
        }
        _ => {
            let obj = object(op, scope)?;
            // Where the view still holds what the op made, the fields go back as
            // they were; anywhere else (an edit) the reverse op decides.
            if let Some(Entry::Fields {
                before,
                after,
                keys: owned,
            }) = entry
            {
                let keys: Vec<&str> = match op {
                    Op::RenameMatching { .. } => owned.iter().map(String::as_str).collect(),
                    _ => footprint(op),
                };
                // A pattern rename's view must hold no matching field it did not make.
                let same_fields = match op {
                    Op::RenameMatching { from, to } => matching_footprint(obj, to, from)
                        .iter()
                        .all(|k| owned.contains(k)),
                    _ => true,
                };
                if same_fields && *after == snapshot(obj, &keys) {
                    restore(obj, &keys, before);
                    return Ok(());
                }
            }
            apply(&reverse_op(op), obj)?;
            // An edited first item of a `head`: the items after it still come back
            // (not after the field was emptied: `null` is no first item).
            if let (Op::Head { name }, Some(Entry::Fields { before, .. })) = (op, entry) {
                if let (Some(Value::Array(orig)), Some(Value::Array(now))) =
                    (before.first().and_then(|v| v.first()), obj.get_mut(name))
                {
                    if !now.is_empty() {
                        now.extend(orig.iter().skip(1).cloned());
                    }
                }
            }
            Ok(())
        }
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The text a value is looked up by in a `convert` table (`true`, `3`, `todo`).
fn table_key(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        Value::Number(Number::from(x as i64))
    } else {
        Number::from_f64(x).map_or(Value::Null, Value::Number)
    }
}

/// One field op on object `obj`.
fn apply(op: &Op, obj: &mut Map<String, Value>) -> Result<(), Error> {
    match op {
        Op::Rename {
            source,
            destination,
        } => {
            if let Some(v) = obj.remove(source) {
                obj.insert(destination.clone(), v);
            }
        }
        Op::RenameMatching { from, to } => {
            // All at once: a name that is both moved and a target is not moved twice.
            let moves: Vec<(String, String)> = obj
                .keys()
                .filter_map(|k| from.rewrite(k, to).map(|d| (k.clone(), d)))
                .collect();
            let values: Vec<(String, Value)> = moves
                .into_iter()
                .filter_map(|(s, d)| obj.remove(&s).map(|v| (d, v)))
                .collect();
            obj.extend(values);
        }
        Op::Add(f) => {
            if !obj.contains_key(&f.name) {
                obj.insert(f.name.clone(), f.default_value());
            }
        }
        Op::Remove(f) => {
            obj.remove(&f.name);
        }
        Op::Hoist { host, name } => match obj.get_mut(host) {
            None | Some(Value::Null) => {}
            Some(Value::Object(h)) => {
                if let Some(v) = h.remove(name) {
                    obj.insert(name.clone(), v);
                }
            }
            Some(other) => {
                return Err(Error::document(
                    op,
                    format!("field `{host}` is {}, not an object", kind_of(other)),
                ))
            }
        },
        Op::Plunge { host, name } => {
            if let Some(Value::Object(_)) | None | Some(Value::Null) = obj.get(host) {
            } else {
                return Err(Error::document(
                    op,
                    format!("field `{host}` is not an object"),
                ));
            }
            if let Some(v) = obj.remove(name) {
                let h = obj
                    .entry(host.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if h.is_null() {
                    *h = Value::Object(Map::new());
                }
                if let Value::Object(h) = h {
                    h.insert(name.clone(), v);
                }
            }
        }
        Op::Wrap { name } => {
            if let Some(v) = obj.get_mut(name) {
                *v = match v.take() {
                    Value::Null => Value::Array(Vec::new()),
                    other => Value::Array(vec![other]),
                };
            }
        }
        Op::Head { name } => match obj.get_mut(name) {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) => {
                let first = if a.is_empty() {
                    Value::Null
                } else {
                    a.swap_remove(0)
                };
                obj.insert(name.clone(), first);
            }
            Some(other) => {
                return Err(Error::document(
                    op,
                    format!("field `{name}` is {}, not an array", kind_of(other)),
                ))
            }
        },
        Op::Convert { name, forward, .. } => {
            if let Some(v) = obj.get_mut(name) {
                let key = table_key(v);
                let Some((_, to)) = forward.iter().find(|(k, _)| *k == key) else {
                    return Err(Error::document(
                        op,
                        format!("no mapping for the value {v} of `{name}`"),
                    ));
                };
                *v = to.clone();
            }
        }
        Op::Copy {
            source,
            destination,
        } => {
            if let Some(v) = obj.get(source).cloned() {
                obj.insert(destination.clone(), v);
            }
        }
        Op::Set { name, value } => {
            obj.insert(name.clone(), value.clone());
        }
        Op::Split {
            source,
            into,
            separator,
        } => match obj.remove(source) {
            None => {}
            Some(Value::String(s)) => {
                for (field, part) in into.iter().zip(s.splitn(into.len(), separator.as_str())) {
                    obj.insert(field.clone(), Value::String(part.to_string()));
                }
            }
            Some(other) => {
                let what = kind_of(&other);
                obj.insert(source.clone(), other);
                return Err(Error::document(
                    op,
                    format!("field `{source}` is {what}, not a string"),
                ));
            }
        },
        Op::Join {
            sources,
            into,
            separator,
        } => {
            let mut parts = Vec::new();
            for s in sources {
                match obj.remove(s) {
                    Some(Value::String(t)) => parts.push(t),
                    Some(Value::Null) | None => {}
                    Some(other) => parts.push(table_key(&other)),
                }
            }
            if !parts.is_empty() {
                obj.insert(into.clone(), Value::String(parts.join(separator)));
            }
        }
        Op::Cast { name, from, to } => {
            if let Some(v) = obj.get_mut(name).filter(|v| !v.is_null()) {
                *v = cast(v, *from, *to).ok_or_else(|| {
                    Error::document(
                        op,
                        format!(
                            "the value {v} of `{name}` is not a {} that becomes a {}",
                            from.name(),
                            to.name()
                        ),
                    )
                })?;
            }
        }
        Op::Scale {
            name,
            factor,
            offset,
        } => {
            if let Some(v) = obj.get_mut(name).filter(|v| !v.is_null()) {
                let x = v.as_f64().ok_or_else(|| {
                    Error::document(
                        op,
                        format!("field `{name}` is {}, not a number", kind_of(v)),
                    )
                })?;
                let y = factor * x + offset;
                if !y.is_finite() {
                    return Err(Error::document(
                        op,
                        format!("{factor} · {x} + {offset} is not a finite number"),
                    ));
                }
                *v = number(y);
            }
        }
        Op::In { .. } | Op::Map { .. } | Op::Wasm(_) => {}
    }
    Ok(())
}

fn cast(v: &Value, from: Kind, to: Kind) -> Option<Value> {
    let is = |k: Kind| match k {
        Kind::String => v.is_string(),
        Kind::Number => v.is_number(),
        Kind::Boolean => v.is_boolean(),
        _ => false,
    };
    if is(to) && !is(from) {
        // Already translated (a document written at the far side): left as it is.
        return Some(v.clone());
    }
    Some(match (v, to) {
        (Value::String(s), Kind::Number) => {
            number(s.trim().parse::<f64>().ok().filter(|x| x.is_finite())?)
        }
        (Value::String(s), Kind::Boolean) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Value::Bool(true),
            "false" | "0" | "no" | "" => Value::Bool(false),
            _ => return None,
        },
        (Value::Number(n), Kind::String) => Value::String(n.to_string()),
        (Value::Number(n), Kind::Boolean) => Value::Bool(n.as_f64() != Some(0.0)),
        (Value::Bool(b), Kind::String) => Value::String(b.to_string()),
        (Value::Bool(b), Kind::Number) => Value::from(u8::from(*b)),
        (v, _) if is(to) => v.clone(),
        _ => return None,
    })
}

/// [`forward_mut`] over many documents at once, for a batch: a top-level
/// `wasm` stage takes every document still going (`errs[i]` is `None`) in
/// one stream through one instance; every other op runs per document. A
/// document that fails gets its error in `errs` and goes no further. A stream
/// that fails, or does not return exactly one document per document, is run
/// again one document at a time, so each error names its own document.
pub fn forward_many(ops: &[Op], docs: &mut [Value], errs: &mut [Option<Error>]) -> Vec<Complement> {
    let mut comps = vec![Complement(Vec::with_capacity(ops.len())); docs.len()];
    for op in ops {
        if let Op::Wasm(w) = op {
            wasm_many(op, w, docs, errs);
            for c in &mut comps {
                c.0.push(None);
            }
            continue;
        }
        for (i, d) in docs.iter_mut().enumerate() {
            if errs[i].is_some() {
                continue;
            }
            match forward_op(op, d) {
                Ok(e) => comps[i].0.push(e),
                Err(e) => errs[i] = Some(e),
            }
        }
    }
    for c in &mut comps {
        while c.0.last().is_some_and(Option::is_none) {
            c.0.pop();
        }
    }
    comps
}

/// [`backward_mut`] over many documents at once (see [`forward_many`]).
pub fn backward_many(
    ops: &[Op],
    docs: &mut [Value],
    comps: &[Option<&Complement>],
    errs: &mut [Option<Error>],
) {
    for (k, op) in ops.iter().enumerate().rev() {
        if let Op::Wasm(w) = op {
            let back = w.flipped();
            wasm_many(&Op::Wasm(back.clone()), &back, docs, errs);
            continue;
        }
        for (i, d) in docs.iter_mut().enumerate() {
            if errs[i].is_some() {
                continue;
            }
            let entry = comps.get(i).copied().flatten().and_then(|c| c.get(k));
            if let Err(e) = backward_op(op, d, entry) {
                errs[i] = Some(e);
            }
        }
    }
}

fn wasm_many(op: &Op, w: &crate::wasm::Wasm, docs: &mut [Value], errs: &mut [Option<Error>]) {
    let live: Vec<usize> = (0..docs.len()).filter(|&i| errs[i].is_none()).collect();
    if live.is_empty() {
        return;
    }
    let inputs: Vec<Value> = live.iter().map(|&i| docs[i].clone()).collect();
    match w.run(inputs) {
        // Item k is input k's translation: each document gets its own.
        Ok(out) if out.one_to_one && out.items.len() == live.len() => {
            for (i, item) in live.into_iter().zip(out.items) {
                match crate::wasm::one(item) {
                    Ok(v) => docs[i] = v,
                    Err(m) => errs[i] = Some(Error::document(op, m)),
                }
            }
        }
        // A fault somewhere, or items not one per document as read: each
        // document alone says what it gives.
        _ => {
            for i in live {
                if let Err(e) = wasm_op(op, w, &mut docs[i]) {
                    errs[i] = Some(e);
                }
            }
        }
    }
}
