//! Column types as classes every engine shares, the values a copy carries,
//! and the conversions between them (a value that does not fit is named).

use serde_json::Value as J;

/// What a declared column type holds, whatever the engine calls it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// Integers (and MySQL's `tinyint(1)` booleans read as integers).
    Int,
    /// Floating point.
    Real,
    /// Single-precision floating point (PostgreSQL `real`, MySQL `float`):
    /// values are compared at that precision.
    Real32,
    /// Exact decimals (carried as text).
    Decimal,
    /// Booleans.
    Bool,
    /// Text, UUIDs, enums.
    Text,
    /// JSON.
    Json,
    /// Date and time of day.
    Timestamp,
    /// A date with a time zone (PostgreSQL `timestamptz`): carried in UTC.
    TimestampTz,
    /// A date.
    Date,
    /// A time of day.
    Time,
    /// Bytes.
    Blob,
    /// SQLite's untyped column: what is stored.
    Any,
    /// A type no other engine has (arrays, geometry, intervals …).
    Other(String),
}

impl Class {
    /// The class of a declared type on engine `d` (as its catalog writes it).
    pub fn of_in(declared: &str, d: instar_core::Dialect) -> Class {
        let t = declared.trim().to_lowercase();
        let single = match d {
            instar_core::Dialect::Postgres => t == "real" || t == "float4",
            instar_core::Dialect::MySql => t == "float" || t.starts_with("float unsigned"),
            instar_core::Dialect::Sqlite => false,
        };
        if single {
            return Class::Real32;
        }
        Class::of(declared)
    }

    /// The class of a declared type (as the engine's catalog writes it).
    pub fn of(declared: &str) -> Class {
        let t = declared.to_lowercase();
        let has = |w: &str| t.contains(w);
        if t.trim().is_empty() {
            Class::Any
        } else if t.ends_with("[]")
            || has("interval")
            || has("geometry")
            || has("point")
            || has("inet")
            || has("range")
        {
            Class::Other(declared.to_string())
        } else if t.starts_with("tinyint(1)") || has("bool") {
            Class::Bool
        } else if has("int") || has("serial") {
            Class::Int
        } else if has("real") || has("double") || has("float") {
            Class::Real
        } else if has("numeric") || has("decimal") {
            Class::Decimal
        } else if has("json") {
            Class::Json
        } else if has("with time zone") || has("timestamptz") {
            Class::TimestampTz
        } else if has("timestamp") || has("datetime") {
            Class::Timestamp
        } else if has("date") {
            Class::Date
        } else if has("time") {
            Class::Time
        } else if has("blob") || has("bytea") || has("binary") {
            Class::Blob
        } else if has("char")
            || has("text")
            || has("clob")
            || has("uuid")
            || has("enum")
            || has("set(")
            || has("string")
        {
            Class::Text
        } else {
            Class::Other(declared.to_string())
        }
    }

    /// Whether values of class `self` can be stored in a column of class `to`.
    pub fn maps_to(&self, to: &Class) -> bool {
        use Class::*;
        if self == to || matches!(self, Any | Text) || matches!(to, Any) {
            return true;
        }
        match self {
            Int => matches!(to, Real | Real32 | Decimal | Bool | Text | Json),
            Real | Real32 | Decimal => matches!(to, Real | Real32 | Decimal | Int | Text | Json),
            Bool => matches!(to, Int | Text),
            Json => matches!(to, Text),
            Timestamp | TimestampTz => matches!(to, Timestamp | TimestampTz | Date | Text),
            Date => matches!(to, Timestamp | TimestampTz | Text),
            Time => matches!(to, Text),
            Blob => false,
            Other(_) => matches!(to, Text),
            Text | Any => true,
        }
    }
}

/// One value on its way.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A float.
    Real(f64),
    /// A boolean.
    Bool(bool),
    /// Text.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
}

impl Cell {
    /// As JSON (a checkpoint's key).
    pub fn to_json(&self) -> J {
        match self {
            Cell::Null => J::Null,
            Cell::Int(n) => J::from(*n),
            Cell::Real(f) => J::from(*f),
            Cell::Bool(b) => J::from(*b),
            Cell::Text(s) => J::from(s.clone()),
            Cell::Bytes(b) => J::from(b.clone()),
        }
    }

    /// From a checkpoint's JSON.
    pub fn from_json(v: &J) -> Cell {
        match v {
            J::Null => Cell::Null,
            J::Bool(b) => Cell::Bool(*b),
            J::Number(n) => n
                .as_i64()
                .map_or_else(|| Cell::Real(n.as_f64().unwrap_or(0.0)), Cell::Int),
            J::String(s) => Cell::Text(s.clone()),
            J::Array(a) => Cell::Bytes(
                a.iter()
                    .filter_map(|x| x.as_u64())
                    .map(|x| x as u8)
                    .collect(),
            ),
            J::Object(_) => Cell::Text(v.to_string()),
        }
    }

    /// As text, the way every engine's text input reads it.
    pub fn text(&self) -> Option<String> {
        match self {
            Cell::Null => None,
            Cell::Int(n) => Some(n.to_string()),
            Cell::Real(f) => Some(f.to_string()),
            Cell::Bool(b) => Some(if *b { "true" } else { "false" }.into()),
            Cell::Text(s) => Some(s.clone()),
            Cell::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        }
    }
}

/// A timestamp's text in the form every engine reads: `YYYY-MM-DD
/// HH:MM:SS[.ffffff]`, in UTC when it carried an offset of zero.
pub fn plain_timestamp(s: &str) -> String {
    let mut t = s.trim().replacen('T', " ", 1);
    for suffix in ["Z", "+00:00", "+00", "+0000", " UTC"] {
        if let Some(stripped) = t.strip_suffix(suffix) {
            t = stripped.to_string();
            break;
        }
    }
    if let Some((whole, frac)) = t.split_once('.') {
        let frac = frac.trim_end_matches('0');
        t = if frac.is_empty() {
            whole.to_string()
        } else {
            format!("{whole}.{frac}")
        };
    }
    t
}

/// `cell` as a value of class `to`, or why it cannot be one.
pub fn fit(cell: Cell, to: &Class) -> Result<Cell, String> {
    use Class::*;
    let bad = |c: &Cell| format!("{c:?} cannot be stored as {to:?}");
    Ok(match (cell, to) {
        (Cell::Null, _) => Cell::Null,
        (c, Any) => c,
        (Cell::Int(n), Int) => Cell::Int(n),
        (Cell::Bool(b), Int) => Cell::Int(b as i64),
        (Cell::Real(f), Int) if f.fract() == 0.0 && f.abs() < 9.0e15 => Cell::Int(f as i64),
        (Cell::Text(s), Int) => {
            Cell::Int(s.trim().parse().map_err(|_| bad(&Cell::Text(s.clone())))?)
        }
        (Cell::Int(n), Real | Real32) => Cell::Real(n as f64),
        (Cell::Real(f), Real | Real32) => Cell::Real(f),
        (Cell::Text(s), Real | Real32) => {
            Cell::Real(s.trim().parse().map_err(|_| bad(&Cell::Text(s.clone())))?)
        }
        (Cell::Int(n), Decimal) => Cell::Text(n.to_string()),
        (Cell::Real(f), Decimal) => Cell::Text(f.to_string()),
        (Cell::Bool(b), Bool) => Cell::Bool(b),
        (Cell::Int(n), Bool) if n == 0 || n == 1 => Cell::Bool(n == 1),
        (Cell::Text(s), Bool) => match s.trim().to_lowercase().as_str() {
            "1" | "t" | "true" | "yes" | "on" => Cell::Bool(true),
            "0" | "f" | "false" | "no" | "off" => Cell::Bool(false),
            _ => return Err(bad(&Cell::Text(s))),
        },
        (Cell::Bytes(b), Blob) => Cell::Bytes(b),
        (Cell::Text(s), Blob) => Cell::Bytes(s.into_bytes()),
        (Cell::Bytes(b), _) => match String::from_utf8(b) {
            Ok(s) => fit(Cell::Text(s), to)?,
            Err(e) => return Err(bad(&Cell::Bytes(e.into_bytes()))),
        },
        (c, Timestamp) => Cell::Text(plain_timestamp(&c.text().unwrap_or_default())),
        // Carried in UTC: said so, whatever the target session's time zone.
        (c, TimestampTz) => {
            let t = plain_timestamp(&c.text().unwrap_or_default());
            let has_offset = t.get(11..).is_some_and(|time| time.contains(['+', '-']));
            Cell::Text(if has_offset || t.len() <= 10 {
                t
            } else {
                format!("{t}+00")
            })
        }
        (Cell::Text(s), Json) => {
            serde_json::from_str::<J>(&s).map_err(|_| format!("{s:?} is not JSON"))?;
            Cell::Text(s)
        }
        (c, Text | Json | Decimal | Date | Time | Other(_)) => {
            Cell::Text(c.text().unwrap_or_default())
        }
        (c, _) => return Err(bad(&c)),
    })
}

/// A value in a form that compares equal across engines (verification):
/// numbers by value, JSON by structure, timestamps without a zero offset.
pub fn canonical(cell: &Cell, class: &Class) -> J {
    match (cell, class) {
        (Cell::Null, _) => J::Null,
        (c, Class::Json) => {
            let text = c.text().unwrap_or_default();
            serde_json::from_str(&text).unwrap_or(J::String(text))
        }
        (c, Class::Timestamp | Class::TimestampTz) => {
            J::String(plain_timestamp(&c.text().unwrap_or_default()))
        }
        (c, Class::Bool) => match fit(c.clone(), &Class::Bool) {
            Ok(Cell::Bool(b)) => J::Bool(b),
            _ => c.to_json(),
        },
        (c, Class::Real32) => match fit(c.clone(), &Class::Real) {
            // What a single-precision column keeps of the value.
            Ok(Cell::Real(f)) => J::String(format!("{:e}", f as f32)),
            _ => c.to_json(),
        },
        (c, Class::Real | Class::Decimal) => match fit(c.clone(), &Class::Real) {
            // Twelve significant digits: engines print floats differently.
            Ok(Cell::Real(f)) => J::String(format!("{f:.12e}")),
            _ => c.to_json(),
        },
        (c, Class::Int) => match fit(c.clone(), &Class::Int) {
            Ok(Cell::Int(n)) => J::from(n),
            _ => c.to_json(),
        },
        (Cell::Bytes(b), _) => J::from(b.clone()),
        (c, _) => J::String(c.text().unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_of_each_engines_types() {
        assert_eq!(Class::of("INTEGER"), Class::Int);
        assert_eq!(Class::of("bigint"), Class::Int);
        assert_eq!(Class::of("tinyint(1)"), Class::Bool);
        assert_eq!(Class::of("boolean"), Class::Bool);
        assert_eq!(Class::of("character varying(20)"), Class::Text);
        assert_eq!(Class::of("timestamp with time zone"), Class::TimestampTz);
        assert_eq!(Class::of("timestamp(3) with time zone"), Class::TimestampTz);
        assert_eq!(
            Class::of_in("real", instar_core::Dialect::Postgres),
            Class::Real32
        );
        assert_eq!(
            Class::of_in("REAL", instar_core::Dialect::Sqlite),
            Class::Real
        );
        assert_eq!(
            canonical(&Cell::Real(2.0 / 7.0), &Class::Real32),
            canonical(&Cell::Real((2.0f32 / 7.0) as f64), &Class::Real32)
        );
        assert_eq!(Class::of("datetime(6)"), Class::Timestamp);
        assert_eq!(Class::of("jsonb"), Class::Json);
        assert_eq!(Class::of("longtext"), Class::Text);
        assert_eq!(Class::of("bytea"), Class::Blob);
        assert_eq!(Class::of(""), Class::Any);
        assert_eq!(Class::of("integer[]"), Class::Other("integer[]".into()));
        assert!(!Class::of("integer[]").maps_to(&Class::Int));
        assert!(Class::of("integer[]").maps_to(&Class::Text));
        assert!(!Class::Blob.maps_to(&Class::Int));
    }

    #[test]
    fn values_fit_or_say_why_not() {
        assert_eq!(fit(Cell::Int(1), &Class::Bool), Ok(Cell::Bool(true)));
        assert_eq!(fit(Cell::Text("12".into()), &Class::Int), Ok(Cell::Int(12)));
        assert!(fit(Cell::Text("twelve".into()), &Class::Int).is_err());
        assert_eq!(
            fit(
                Cell::Text("2024-01-02T03:04:05.500000Z".into()),
                &Class::Timestamp
            ),
            Ok(Cell::Text("2024-01-02 03:04:05.5".into()))
        );
        assert!(fit(Cell::Text("{".into()), &Class::Json).is_err());
        assert_eq!(
            canonical(&Cell::Text("{\"a\": 1}".into()), &Class::Json),
            serde_json::json!({"a": 1})
        );
        assert_eq!(
            canonical(&Cell::Int(1), &Class::Bool),
            canonical(&Cell::Bool(true), &Class::Bool)
        );
        assert_eq!(
            canonical(&Cell::Text("1.5".into()), &Class::Real),
            canonical(&Cell::Real(1.5), &Class::Real)
        );
    }
}
