//! Fusing a chain of forward lenses into one edit of the original document.
//!
//! Walking ten lenses means ten passes over a document; most of them only move
//! and add top-level fields. [`fuse`] evaluates such a chain once, over field
//! names instead of values: the result says, for each top-level field that
//! changes, where its final value comes from (an original field, a constant,
//! a wrapped original field) and which fields go away — so `rename a→b` then
//! `rename b→c` is one move of `a` to `c`, whatever the chain's length.
//!
//! The fused form is exact only where every op of the chain would keep no
//! complement (a rename onto a free name, an add where the field is missing …).
//! It states that as conditions on the original document ([`Fused::absent`],
//! [`Fused::present`]); a document that meets them is translated by
//! [`Fused::apply`], or by one SQL `UPDATE` built from the same form; any other
//! document goes through the lenses op by op, which keeps its complement.

use serde_json::{Map, Value};

use crate::op::Op;

/// Where a field's final value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// The original document's field of that name.
    Field(String),
    /// A constant.
    Const(Value),
    /// A value wrapped in a one-item array (`null` becomes `[]`).
    Wrap(Box<Source>),
}

impl Source {
    /// The original fields the value reads.
    fn reads<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Source::Field(f) => out.push(f),
            Source::Const(_) => {}
            Source::Wrap(inner) => inner.reads(out),
        }
    }

    fn eval(&self, doc: &Map<String, Value>) -> Value {
        match self {
            Source::Field(f) => doc.get(f).cloned().unwrap_or(Value::Null),
            Source::Const(v) => v.clone(),
            Source::Wrap(inner) => match inner.eval(doc) {
                Value::Null => Value::Array(Vec::new()),
                v => Value::Array(vec![v]),
            },
        }
    }
}

/// A chain of forward lenses as one edit of the original document.
#[derive(Debug, Clone, PartialEq)]
pub struct Fused {
    /// Original fields that must be missing for the edit to be exact.
    pub absent: Vec<String>,
    /// Original fields that must be present (the edit reads them).
    pub present: Vec<String>,
    /// The top-level fields that change, in name order: their final value,
    /// or `None` when the field goes away.
    pub fields: Vec<(String, Option<Source>)>,
}

/// Why a chain cannot be fused: the first op that has no fused form.
pub type NotFused = String;

/// A field's value at some point of the chain: `None` is missing.
type Sym = Option<Source>;

struct State {
    fields: std::collections::BTreeMap<String, Sym>,
    absent: Vec<String>,
}

impl State {
    fn get(&self, name: &str) -> Sym {
        match self.fields.get(name) {
            Some(s) => s.clone(),
            None => Some(Source::Field(name.to_string())),
        }
    }

    /// The op is exact only if this value is missing at that point.
    fn require_missing(&mut self, s: &Sym, op: &Op) -> Result<(), NotFused> {
        match s {
            None => Ok(()),
            Some(Source::Field(f)) => {
                if !self.absent.contains(f) {
                    self.absent.push(f.clone());
                }
                Ok(())
            }
            Some(Source::Wrap(inner)) => self.require_missing(&Some((**inner).clone()), op),
            Some(Source::Const(_)) => Err(format!(
                "`{}` always meets a value an earlier op put there, so it keeps a complement",
                crate::describe(op)
            )),
        }
    }
}

/// The fused form of `ops` run one after another (the ops of each lens of a
/// forward path, in order), or why there is none.
pub fn fuse<'a>(ops: impl IntoIterator<Item = &'a Op>) -> Result<Fused, NotFused> {
    fuse_with(ops, false)
}

/// [`fuse`], where a `remove` drops its field whatever it holds: for an
/// edit with no complement to keep it in (a column of documents changed
/// online, whose round trip is checked on the rows themselves).
pub fn fuse_forgetting<'a>(ops: impl IntoIterator<Item = &'a Op>) -> Result<Fused, NotFused> {
    fuse_with(ops, true)
}

fn fuse_with<'a>(ops: impl IntoIterator<Item = &'a Op>, forget: bool) -> Result<Fused, NotFused> {
    let mut st = State {
        fields: Default::default(),
        absent: Vec::new(),
    };
    for op in ops {
        step(&mut st, op, forget)?;
    }
    let mut present: Vec<String> = Vec::new();
    for s in st.fields.values().flatten() {
        let mut reads = Vec::new();
        s.reads(&mut reads);
        for f in reads {
            if !present.iter().any(|p| p == f) {
                present.push(f.to_string());
            }
        }
    }
    if let Some(both) = present.iter().find(|p| st.absent.contains(p)) {
        return Err(format!(
            "field `{both}` would have to be both missing and present"
        ));
    }
    present.sort();
    st.absent.sort();
    // A field that ends where it started is no change.
    let fields = st
        .fields
        .into_iter()
        .filter(|(name, s)| !matches!(s, Some(Source::Field(f)) if f == name))
        .collect();
    Ok(Fused {
        absent: st.absent,
        present,
        fields,
    })
}

fn step(st: &mut State, op: &Op, forget: bool) -> Result<(), NotFused> {
    match op {
        Op::Rename {
            source,
            destination,
        }
        | Op::Copy {
            source,
            destination,
        } => {
            let d = st.get(destination);
            st.require_missing(&d, op)?;
            let v = st.get(source);
            st.fields.insert(destination.clone(), v);
            if matches!(op, Op::Rename { .. }) {
                st.fields.insert(source.clone(), None);
            }
        }
        Op::Add(f) => {
            let cur = st.get(&f.name);
            st.require_missing(&cur, op)?;
            st.fields
                .insert(f.name.clone(), Some(Source::Const(f.default_value())));
        }
        Op::Set { name, value } => {
            let cur = st.get(name);
            st.require_missing(&cur, op)?;
            st.fields
                .insert(name.clone(), Some(Source::Const(value.clone())));
        }
        // Exact only when the value is the field's default (an added field
        // removed again): anything else is kept in a complement.
        Op::Remove(f) => match st.get(&f.name) {
            _ if forget => {
                st.fields.insert(f.name.clone(), None);
            }
            Some(Source::Const(v)) if v == f.default_value() => {
                st.fields.insert(f.name.clone(), None);
            }
            _ => {
                return Err(format!(
                    "`{}` keeps the removed value in the document's complement",
                    crate::describe(op)
                ))
            }
        },
        Op::Wrap { name } => {
            let v = st.get(name).map(|s| Source::Wrap(Box::new(s)));
            st.fields.insert(name.clone(), v);
        }
        other => {
            return Err(format!(
                "`{}` has no fused form (only rename, copy, add, set, wrap and remove of an added field fuse)",
                crate::describe(other)
            ))
        }
    }
    Ok(())
}

impl Fused {
    /// Whether `doc` meets the conditions under which the fused edit is exact.
    pub fn applies(&self, doc: &Value) -> bool {
        let Value::Object(o) = doc else {
            return false;
        };
        self.absent.iter().all(|f| !o.contains_key(f))
            && self.present.iter().all(|f| o.contains_key(f))
    }

    /// The fused edit, in place, on a document it [`applies`](Fused::applies) to.
    pub fn apply(&self, doc: &mut Value) {
        let Value::Object(o) = doc else {
            return;
        };
        let values: Vec<Option<Value>> = self
            .fields
            .iter()
            .map(|(_, s)| s.as_ref().map(|s| s.eval(o)))
            .collect();
        for ((name, _), v) in self.fields.iter().zip(values) {
            match v {
                Some(v) => {
                    o.insert(name.clone(), v);
                }
                None => {
                    o.remove(name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::parse_lens;
    use serde_json::json;

    fn ops(v: Value) -> Vec<Op> {
        parse_lens(&v).unwrap()
    }

    #[test]
    fn a_chain_of_renames_is_one_move() {
        let l = ops(json!([
            {"rename": {"source": "a", "destination": "b"}},
            {"rename": {"source": "b", "destination": "c"}},
            {"add": {"name": "n", "type": "number", "default": 0}},
            {"wrap": {"name": "c"}},
        ]));
        let f = fuse(&l).unwrap();
        assert_eq!(f.absent, vec!["b", "c", "n"]);
        assert_eq!(f.present, vec!["a"]);
        let mut d = json!({"a": 1, "z": true});
        assert!(f.applies(&d));
        f.apply(&mut d);
        assert_eq!(d, json!({"c": [1], "n": 0, "z": true}));
        let (stepwise, c) = crate::forward(&l, &json!({"a": 1, "z": true})).unwrap();
        assert_eq!(stepwise, d);
        assert!(c.is_empty());
    }

    #[test]
    fn lossy_ops_do_not_fuse() {
        for l in [
            json!([{"remove": {"name": "a"}}]),
            json!([{"head": {"name": "a"}}]),
            json!([{"set": {"name": "a", "value": 1}}, {"add": {"name": "a"}}]),
        ] {
            assert!(fuse(&ops(l)).is_err());
        }
        let added_then_removed = ops(json!([
            {"add": {"name": "a", "type": "string"}},
            {"remove": {"name": "a", "type": "string"}},
        ]));
        let f = fuse(&added_then_removed).unwrap();
        assert_eq!(f.fields, vec![("a".to_string(), None)]);
    }
}
