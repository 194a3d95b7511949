//! Lens operations: Cambria's (`rename`, `add`, `remove`, `hoist`, `plunge`,
//! `wrap`, `head`, `in`, `map`, `convert`) and what real schema changes need
//! beyond them (`copy`, `set`, `split`, `join`, `cast`, `scale`), read from
//! Cambria's lens format (`- op: {args}`) and written back in it.

use serde_json::{json, Map, Value};

use crate::Error;

/// A JSON type, as `add`, `remove` and `cast` name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `"string"`.
    String,
    /// `"number"`.
    Number,
    /// `"boolean"`.
    Boolean,
    /// `"array"`.
    Array,
    /// `"object"`.
    Object,
    /// `"null"`.
    Null,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "string" => Kind::String,
            "number" | "integer" => Kind::Number,
            "boolean" => Kind::Boolean,
            "array" => Kind::Array,
            "object" => Kind::Object,
            "null" => Kind::Null,
            _ => return None,
        })
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Number => "number",
            Kind::Boolean => "boolean",
            Kind::Array => "array",
            Kind::Object => "object",
            Kind::Null => "null",
        }
    }

    /// The value a field of this type has when none is given.
    pub fn default_value(self) -> Value {
        match self {
            Kind::String => json!(""),
            Kind::Number => json!(0),
            Kind::Boolean => json!(false),
            Kind::Array => json!([]),
            Kind::Object => json!({}),
            Kind::Null => Value::Null,
        }
    }
}

/// A field as `add` and `remove` declare it.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// Its name.
    pub name: String,
    /// Its type(s), as written (a list may include `null`).
    pub types: Vec<Kind>,
    /// Its default, exactly as given (`""`, `0` and `false` are kept).
    pub default: Option<Value>,
}

impl Field {
    /// The value a document without the field gets: the default as given, else
    /// `null` when the type allows it, else the first type's default.
    pub fn default_value(&self) -> Value {
        if let Some(d) = &self.default {
            return d.clone();
        }
        if self.types.contains(&Kind::Null) {
            return Value::Null;
        }
        self.types
            .first()
            .map_or(Value::Null, |k| k.default_value())
    }
}

/// A field-name pattern with exactly one `*` (`legacy_*`, `*_at`, `*`): a
/// literal prefix and suffix around any text (possibly empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    /// The text before `*`.
    pub prefix: String,
    /// The text after `*`.
    pub suffix: String,
}

impl Glob {
    /// Reads `text`, which must hold exactly one `*`.
    pub fn parse(text: &str) -> Option<Glob> {
        let (prefix, suffix) = text.split_once('*')?;
        (!suffix.contains('*')).then(|| Glob {
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
        })
    }

    /// The text `*` stands for in `key`, when `key` matches.
    pub fn capture<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.prefix.as_str())?
            .strip_suffix(self.suffix.as_str())
    }

    /// The name with `*` replaced by `middle`.
    pub fn fill(&self, middle: &str) -> String {
        format!("{}{middle}{}", self.prefix, self.suffix)
    }

    /// `key` renamed from this pattern to `to`, when it matches and moves.
    pub fn rewrite(&self, key: &str, to: &Glob) -> Option<String> {
        let out = to.fill(self.capture(key)?);
        (out != key).then_some(out)
    }
}

impl std::fmt::Display for Glob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}*{}", self.prefix, self.suffix)
    }
}

/// One operation of a lens.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Moves field `source` to `destination`.
    Rename {
        /// The old name.
        source: String,
        /// The new name.
        destination: String,
    },
    /// Moves every field whose name matches `from` to the name `to` gives
    /// it (`legacy_*` → `old_*`: `legacy_a` becomes `old_a`).
    RenameMatching {
        /// The pattern of the old names.
        from: Glob,
        /// The pattern of the new names.
        to: Glob,
    },
    /// Adds a field with its default where it is missing.
    Add(Field),
    /// Removes a field (its reverse adds it back, with its default).
    Remove(Field),
    /// Moves `host.name` up to `name`.
    Hoist {
        /// The object holding the field.
        host: String,
        /// The field.
        name: String,
    },
    /// Moves `name` down into `host.name`.
    Plunge {
        /// The object to hold the field (created when missing).
        host: String,
        /// The field.
        name: String,
    },
    /// A value becomes a one-item array (`null` becomes `[]`).
    Wrap {
        /// The field.
        name: String,
    },
    /// An array becomes its first item (`[]` becomes `null`).
    Head {
        /// The field.
        name: String,
    },
    /// Applies a lens to the object in field `name`.
    In {
        /// The field.
        name: String,
        /// The lens.
        lens: Vec<Op>,
    },
    /// Applies a lens to every item of the array this op applies to.
    Map {
        /// The lens.
        lens: Vec<Op>,
    },
    /// Maps a field's values through a table, and back through another.
    Convert {
        /// The field.
        name: String,
        /// Forward table: the value's text (`true`, `3`, `todo`) to the new value.
        forward: Vec<(String, Value)>,
        /// Reverse table.
        reverse: Vec<(String, Value)>,
    },
    /// Copies field `source` to `destination` (the reverse removes the copy).
    Copy {
        /// The field copied.
        source: String,
        /// The copy.
        destination: String,
    },
    /// Sets a field to a constant (the reverse removes it).
    Set {
        /// The field.
        name: String,
        /// The value.
        value: Value,
    },
    /// Splits a string field into several, at a separator.
    Split {
        /// The string field.
        source: String,
        /// The fields it becomes, in order (the last takes the rest).
        into: Vec<String>,
        /// The separator.
        separator: String,
    },
    /// Joins several fields into one string, with a separator.
    Join {
        /// The fields joined, in order (missing ones are skipped).
        sources: Vec<String>,
        /// The string field.
        into: String,
        /// The separator.
        separator: String,
    },
    /// Converts a field between string, number and boolean.
    Cast {
        /// The field.
        name: String,
        /// The type it has.
        from: Kind,
        /// The type it gets.
        to: Kind,
    },
    /// A number becomes `factor · x + offset` (units).
    Scale {
        /// The field.
        name: String,
        /// The factor (not 0).
        factor: f64,
        /// The offset.
        offset: f64,
    },
    /// A WebAssembly module (the DefraDB Lens ABI) as one stage.
    Wasm(crate::wasm::Wasm),
}

/// The ops of a lens from its JSON form (YAML is read into JSON first):
/// Cambria's `{"lens": [ {op: {args}} … ]}`, or the list itself.
pub fn parse_lens(v: &Value) -> Result<Vec<Op>, Error> {
    if let Some(stages) = defra_lenses(v) {
        return stages;
    }
    let list = match v {
        Value::Object(o) => o
            .get("lens")
            .ok_or_else(|| Error::Lens("expected a top-level key `lens` (a list of ops)".into()))?,
        other => other,
    };
    let Value::Array(items) = list else {
        return Err(Error::Lens("`lens` must be a list of ops".into()));
    };
    items
        .iter()
        .enumerate()
        .filter(|(_, item)| !item.is_null())
        .map(|(i, item)| parse_op(item).map_err(|e| e.at(i + 1)))
        .collect()
}

/// DefraDB's own lens config, `{"lenses": [{"path", "inverse", "arguments"}]}`
/// (keys case-insensitive, as its Go host reads them): one `wasm` stage each.
fn defra_lenses(v: &Value) -> Option<Result<Vec<Op>, Error>> {
    let o = v.as_object()?;
    let (_, list) = o.iter().find(|(k, _)| k.eq_ignore_ascii_case("lenses"))?;
    let Value::Array(items) = list else {
        return Some(Err(Error::Lens(
            "`lenses` must be a list of modules".into(),
        )));
    };
    Some(
        items
            .iter()
            .enumerate()
            .map(|(i, item)| wasm_stage("lenses", item).map_err(|e| e.at(i + 1)))
            .collect(),
    )
}

/// A `wasm` op's arguments (or a DefraDB stage): `path`, optional `arguments`
/// (an object) and `inverse` (a boolean), keys case-insensitive.
fn wasm_stage(op: &str, args: &Value) -> Result<Op, Error> {
    let o = args
        .as_object()
        .ok_or_else(|| Error::Lens(format!("`{op}`: a stage is a map with `path`")))?;
    let get = |k: &str| {
        o.iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v)
    };
    let bad =
        |arg: &str, want: &str| Error::Lens(format!("`{op}`: argument `{arg}` must be {want}"));
    let path = match get("path") {
        Some(Value::String(p)) if !p.is_empty() => p.clone(),
        Some(_) => return Err(bad("path", "a non-empty string")),
        None => return Err(Error::Lens(format!("`{op}` needs the argument `path`"))),
    };
    let inverse = match get("inverse") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("inverse", "true or false")),
    };
    let arguments = match get("arguments") {
        None | Some(Value::Null) => None,
        Some(Value::Object(a)) if a.is_empty() => None,
        Some(a @ Value::Object(_)) => Some(a.clone()),
        Some(_) => return Err(bad("arguments", "a map")),
    };
    if let Some(other) = o.keys().find(|k| {
        !["path", "inverse", "arguments"]
            .iter()
            .any(|x| k.eq_ignore_ascii_case(x))
    }) {
        return Err(Error::Lens(format!(
            "`{op}`: unknown argument `{other}` (path, arguments, inverse)"
        )));
    }
    Ok(Op::Wasm(crate::wasm::Wasm {
        path,
        arguments,
        inverse,
        stage: None,
    }))
}

fn parse_op(item: &Value) -> Result<Op, Error> {
    // Cambria's file form `{rename: {args}}`, or its in-memory form `{op: rename, …args}`.
    let form = || {
        Error::Lens(
            "each op is a map of one key, e.g. `- rename: {source: a, destination: b}`".into(),
        )
    };
    let (name, args): (String, Value) = match item {
        Value::Object(o) if o.get("op").is_some_and(Value::is_string) => {
            let mut args = o.clone();
            let name = args
                .remove("op")
                .and_then(|v| v.as_str().map(str::to_string));
            (name.ok_or_else(form)?, Value::Object(args))
        }
        Value::Object(o) if o.len() == 1 => {
            let (k, v) = o.iter().next().ok_or_else(form)?;
            (k.clone(), v.clone())
        }
        _ => return Err(form()),
    };
    let name = name.as_str();
    let a = Args {
        op: name,
        args: &args,
    };
    Ok(match name {
        "rename" if a.args.get("pattern").is_some() => Op::RenameMatching {
            from: a.glob("pattern")?,
            to: a.glob("to")?,
        },
        "rename" => Op::Rename {
            source: a.text("source")?,
            destination: a.text("destination")?,
        },
        "add" => Op::Add(a.field()?),
        "remove" => Op::Remove(a.field()?),
        "hoist" => Op::Hoist {
            host: a.text("host")?,
            name: a.text("name")?,
        },
        "plunge" => Op::Plunge {
            host: a.text("host")?,
            name: a.text("name")?,
        },
        "wrap" => Op::Wrap { name: a.text("name")? },
        "head" => Op::Head { name: a.text("name")? },
        "in" => Op::In {
            name: a.text("name")?,
            lens: a.lens()?,
        },
        "map" => Op::Map { lens: a.lens()? },
        "wasm" => wasm_stage("wasm", &args)?,
        "convert" => {
            let mapping = a.get("mapping")?;
            let pair = mapping
                .as_array()
                .filter(|m| m.len() == 2)
                .ok_or_else(|| a.bad("mapping", "a list of two tables (forward, then reverse)"))?;
            Op::Convert {
                name: a.text("name")?,
                forward: table(&a, &pair[0])?,
                reverse: table(&a, &pair[1])?,
            }
        }
        "copy" => Op::Copy {
            source: a.text("source")?,
            destination: a.text("destination")?,
        },
        "set" => Op::Set {
            name: a.text("name")?,
            value: a.get("value")?.clone(),
        },
        "split" => Op::Split {
            source: a.text("source")?,
            into: a.texts("into")?,
            separator: a.text("separator")?,
        },
        "join" => Op::Join {
            sources: a.texts("sources")?,
            into: a.text("into")?,
            separator: a.text("separator")?,
        },
        "cast" => Op::Cast {
            name: a.text("name")?,
            from: a.kind("from")?,
            to: a.kind("to")?,
        },
        "scale" => {
            let factor = a.number("factor")?;
            if factor == 0.0 || !(1.0 / factor).is_finite() {
                return Err(a.bad("factor", "a number other than 0 whose inverse is a number (the reverse divides by it)"));
            }
            Op::Scale {
                name: a.text("name")?,
                factor,
                offset: a.args.get("offset").map_or(Ok(0.0), |_| a.number("offset"))?,
            }
        }
        other => {
            return Err(Error::Lens(format!(
                "unknown op {other:?} (rename, add, remove, hoist, plunge, wrap, head, in, map, convert, copy, set, split, join, cast, scale, wasm)"
            )))
        }
    })
}

struct Args<'a> {
    op: &'a str,
    args: &'a Value,
}

impl Args<'_> {
    fn bad(&self, arg: &str, want: &str) -> Error {
        Error::Lens(format!("`{}`: argument `{arg}` must be {want}", self.op))
    }

    fn get(&self, arg: &str) -> Result<&Value, Error> {
        self.args
            .get(arg)
            .ok_or_else(|| Error::Lens(format!("`{}` needs the argument `{arg}`", self.op)))
    }

    fn text(&self, arg: &str) -> Result<String, Error> {
        match self.get(arg)? {
            Value::String(s) if !s.is_empty() || arg == "separator" => Ok(s.clone()),
            _ => Err(self.bad(arg, "a non-empty string")),
        }
    }

    fn glob(&self, arg: &str) -> Result<Glob, Error> {
        match self.get(arg)? {
            Value::String(s) => Glob::parse(s),
            _ => None,
        }
        .ok_or_else(|| {
            self.bad(
                arg,
                "a field-name pattern with exactly one `*` (quoted in YAML: '*' alone is an alias)",
            )
        })
    }

    fn texts(&self, arg: &str) -> Result<Vec<String>, Error> {
        let list = self.get(arg)?.as_array().filter(|l| !l.is_empty());
        list.and_then(|l| l.iter().map(|v| v.as_str().map(str::to_string)).collect())
            .ok_or_else(|| self.bad(arg, "a list of field names"))
    }

    fn number(&self, arg: &str) -> Result<f64, Error> {
        self.get(arg)?
            .as_f64()
            .ok_or_else(|| self.bad(arg, "a number"))
    }

    fn kind(&self, arg: &str) -> Result<Kind, Error> {
        self.get(arg)?
            .as_str()
            .and_then(Kind::parse)
            .filter(|k| matches!(k, Kind::String | Kind::Number | Kind::Boolean))
            .ok_or_else(|| self.bad(arg, "string, number or boolean"))
    }

    fn lens(&self) -> Result<Vec<Op>, Error> {
        let inner = self.get("lens")?;
        if !inner.is_array() {
            return Err(self.bad("lens", "a list of ops"));
        }
        parse_lens(inner).map_err(|e| e.inside(self.op))
    }

    fn field(&self) -> Result<Field, Error> {
        let types = match self.args.get("type") {
            None => Vec::new(),
            Some(Value::String(s)) => {
                vec![Kind::parse(s).ok_or_else(|| self.bad("type", "a JSON type"))?]
            }
            Some(Value::Array(l)) => l
                .iter()
                .map(|t| match t {
                    Value::Null => Some(Kind::Null),
                    Value::String(s) => Kind::parse(s),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| self.bad("type", "a JSON type or a list of them"))?,
            Some(_) => return Err(self.bad("type", "a JSON type or a list of them")),
        };
        Ok(Field {
            name: self.text("name")?,
            types,
            default: self.args.get("default").cloned(),
        })
    }
}

fn table(a: &Args, v: &Value) -> Result<Vec<(String, Value)>, Error> {
    let o = v
        .as_object()
        .ok_or_else(|| a.bad("mapping", "a list of two tables (forward, then reverse)"))?;
    Ok(o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// The lens in Cambria's format, as JSON: `{"lens": [ … ]}`'s list.
pub fn to_json(ops: &[Op]) -> Value {
    Value::Array(ops.iter().map(op_json).collect())
}

fn field_json(f: &Field) -> Value {
    let mut o = Map::new();
    o.insert("name".into(), json!(f.name));
    match f.types.as_slice() {
        [] => {}
        [one] => {
            o.insert("type".into(), json!(one.name()));
        }
        many => {
            o.insert(
                "type".into(),
                json!(many.iter().map(|k| k.name()).collect::<Vec<_>>()),
            );
        }
    }
    if let Some(d) = &f.default {
        o.insert("default".into(), d.clone());
    }
    Value::Object(o)
}

fn op_json(op: &Op) -> Value {
    let table = |t: &[(String, Value)]| Value::Object(t.iter().cloned().collect());
    match op {
        Op::Rename {
            source,
            destination,
        } => json!({"rename": {"source": source, "destination": destination}}),
        Op::RenameMatching { from, to } => {
            json!({"rename": {"pattern": from.to_string(), "to": to.to_string()}})
        }
        Op::Add(f) => json!({ "add": field_json(f) }),
        Op::Remove(f) => json!({ "remove": field_json(f) }),
        Op::Hoist { host, name } => json!({"hoist": {"host": host, "name": name}}),
        Op::Plunge { host, name } => json!({"plunge": {"host": host, "name": name}}),
        Op::Wrap { name } => json!({"wrap": {"name": name}}),
        Op::Head { name } => json!({"head": {"name": name}}),
        Op::In { name, lens } => json!({"in": {"name": name, "lens": to_json(lens)}}),
        Op::Map { lens } => json!({"map": {"lens": to_json(lens)}}),
        Op::Convert {
            name,
            forward,
            reverse,
        } => {
            json!({"convert": {"name": name, "mapping": [table(forward), table(reverse)]}})
        }
        Op::Copy {
            source,
            destination,
        } => json!({"copy": {"source": source, "destination": destination}}),
        Op::Set { name, value } => json!({"set": {"name": name, "value": value}}),
        Op::Split {
            source,
            into,
            separator,
        } => {
            json!({"split": {"source": source, "into": into, "separator": separator}})
        }
        Op::Join {
            sources,
            into,
            separator,
        } => {
            json!({"join": {"sources": sources, "into": into, "separator": separator}})
        }
        Op::Cast { name, from, to } => {
            json!({"cast": {"name": name, "from": from.name(), "to": to.name()}})
        }
        Op::Scale {
            name,
            factor,
            offset,
        } => {
            json!({"scale": {"name": name, "factor": factor, "offset": offset}})
        }
        Op::Wasm(w) => {
            let mut o = Map::new();
            o.insert("path".into(), json!(w.path));
            if let Some(a) = &w.arguments {
                o.insert("arguments".into(), a.clone());
            }
            o.insert("inverse".into(), json!(w.inverse));
            json!({ "wasm": Value::Object(o) })
        }
    }
}
