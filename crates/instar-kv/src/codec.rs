//! How records are encoded: JSON or MessagePack (any serde type an
//! application stores with `serde_json` or `rmp-serde` reads as a JSON value).

use serde_json::Value;

/// The encoding of a collection's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// JSON text (`serde_json::to_vec`).
    #[default]
    Json,
    /// MessagePack with field names (`rmp_serde::to_vec_named`).
    #[serde(alias = "messagepack")]
    Msgpack,
}

impl Encoding {
    /// Parses a name from a config file; bincode is refused with the reason.
    pub fn parse(name: &str) -> Result<Encoding, String> {
        match name {
            "json" => Ok(Encoding::Json),
            "msgpack" | "messagepack" => Ok(Encoding::Msgpack),
            "bincode" => Err("bincode records carry no field names, so no lens can read them; migrate them with a RecordMigration in Rust (decode with your own types), or store them as JSON or MessagePack".into()),
            other => Err(format!("unknown encoding {other:?} (json or msgpack)")),
        }
    }

    /// A record's value.
    pub fn decode(self, bytes: &[u8]) -> Result<Value, String> {
        match self {
            Encoding::Json => serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}")),
            Encoding::Msgpack => {
                rmp_serde::from_slice(bytes).map_err(|e| format!("not MessagePack: {e}"))
            }
        }
    }

    /// A value's bytes.
    pub fn encode(self, value: &Value) -> Result<Vec<u8>, String> {
        match self {
            Encoding::Json => serde_json::to_vec(value).map_err(|e| e.to_string()),
            Encoding::Msgpack => rmp_serde::to_vec_named(value).map_err(|e| e.to_string()),
        }
    }
}

/// Versions as records carry them: a plain integer (`2`) or semver (`"2.1.0"`).
/// Ordered numerically, then by semver; `None` when the two kinds are mixed or
/// a text is neither.
pub fn compare(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    if let (Ok(x), Ok(y)) = (a.parse::<u64>(), b.parse::<u64>()) {
        return Some(x.cmp(&y));
    }
    let x = semver::Version::parse(a).ok()?;
    let y = semver::Version::parse(b).ok()?;
    Some(x.cmp(&y))
}

/// Whether `v` is a version a record may carry.
pub fn is_version(v: &str) -> bool {
    v.parse::<u64>().is_ok() || semver::Version::parse(v).is_ok()
}

/// A record's version field as text (`2` and `"2"` alike), `None` when absent
/// or null; an error for any other JSON type.
pub fn version_text(v: Option<&Value>) -> Result<Option<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) if n.is_u64() => Ok(Some(n.to_string())),
        Some(other) => Err(format!("its version field holds {other}, not a version")),
    }
}

/// The JSON a version is written as: a number for a plain integer, else text.
pub fn version_value(v: &str) -> Value {
    match v.parse::<u64>() {
        Ok(n) => Value::from(n),
        Err(_) => Value::from(v),
    }
}
