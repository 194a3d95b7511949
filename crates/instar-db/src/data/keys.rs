//! The SQL shape of a data migration (table, key columns, placeholders) and key values.

use crate::conn::{Conn, Query, Row};
use serde_json::Value;

use crate::engine::Engine;
use crate::Error;

/// The SQL pieces of one data migration, quoted for its engine.
pub(super) struct Shape<'a> {
    pub(super) e: &'static dyn Engine,
    pub(super) table: String,
    pub(super) cols: Vec<String>,
    pub(super) statement: &'a str,
    /// Per key column, the type to cast a bound text value to, for key types the
    /// driver cannot carry natively (PostgreSQL `uuid`, dates …); `None` for
    /// integers and text.
    pub(super) casts: Vec<Option<String>>,
}

impl Shape<'_> {
    /// The key columns as a projection: cast to text where the type needs it.
    pub(super) fn list(&self) -> String {
        self.cols
            .iter()
            .zip(&self.casts)
            .map(|(c, t)| match t {
                Some(_) => format!("CAST({c} AS {})", self.e.text_type()),
                None => c.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
    /// The key columns as they are (GROUP BY).
    pub(super) fn plain(&self) -> String {
        self.cols.join(", ")
    }
    /// The key as compared: the columns as they are (their bound values are cast
    /// to the column types, see [`Shape::marks`]), so a `uuid` compares with a `uuid`.
    pub(super) fn tuple(&self) -> String {
        if self.cols.len() == 1 {
            self.cols[0].clone()
        } else {
            format!("({})", self.plain())
        }
    }
    /// The query for the key `offset` rows into the range after the (optional)
    /// lower bound and up to the upper one (binds: lower key if `has_lower`, upper key).
    pub(super) fn key_at(&self, has_lower: bool, offset: u64) -> String {
        let mut k = 0;
        format!(
            "SELECT {} FROM {} WHERE {} ORDER BY {} LIMIT 1 OFFSET {offset}",
            self.list(),
            self.table,
            self.range(has_lower, &mut k),
            self.order(false),
        )
    }
    /// Placeholders for one key, numbered from `*n`.
    pub(super) fn marks(&self, n: &mut usize) -> String {
        let v: Vec<String> = self
            .casts
            .iter()
            .map(|t| {
                *n += 1;
                match t {
                    Some(t) => format!("CAST({} AS {t})", self.e.placeholder(*n)),
                    None => self.e.placeholder(*n),
                }
            })
            .collect();
        if v.len() == 1 {
            v[0].clone()
        } else {
            format!("({})", v.join(", "))
        }
    }
    pub(super) fn order(&self, desc: bool) -> String {
        let dir = if desc { " DESC" } else { "" };
        self.cols
            .iter()
            .map(|c| format!("{c}{dir}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
    /// `key > last AND key <= upper` (without the lower bound for the first batch).
    pub(super) fn range(&self, has_lower: bool, n: &mut usize) -> String {
        let t = self.tuple();
        let lower = if has_lower {
            format!("{t} > {} AND ", self.marks(n))
        } else {
            String::new()
        };
        format!("({lower}{t} <= {})", self.marks(n))
    }
    pub(super) fn exact(&self, n: &mut usize) -> String {
        format!("({} = {})", self.tuple(), self.marks(n))
    }
}

/// Binds a key's values; a number that is not a 64-bit signed integer is refused,
/// never bound as something else.
pub(super) fn bind_key<'q>(mut q: Query<'q>, key: &[Value]) -> Result<Query<'q>, Error> {
    for v in key {
        q = match v {
            Value::Number(n) => match n.as_i64() {
                Some(i) => q.bind(i),
                None => return Err(unsupported_key(&format!("the key value {n}"))),
            },
            Value::String(s) => q.bind(s.clone()),
            other => q.bind(other.to_string()),
        };
    }
    Ok(q)
}

fn unsupported_key(what: &str) -> Error {
    Error::Unsupported(format!(
        "{what} is not an integer that fits 64 bits, nor text: data migrations walk keys of integers (up to 9223372036854775807), text, or (PostgreSQL) any type that casts to text; use such a key column"
    ))
}

pub(super) fn decode_key(r: &Row, n: usize) -> Result<Vec<Value>, Error> {
    (0..n)
        .map(|i| {
            if let Ok(None) = r.try_get::<Option<String>>(i) {
                return Ok(Value::Null);
            }
            if let Ok(v) = r.try_get::<i64>(i) {
                return Ok(Value::from(v));
            }
            if let Ok(v) = r.try_get::<i32>(i) {
                return Ok(Value::from(v));
            }
            if let Ok(v) = r.try_get::<f64>(i) {
                // Floating-point keys cannot be carried exactly through a checkpoint.
                return Err(unsupported_key(&format!(
                    "key column {} holds {v}, which",
                    i + 1
                )));
            }
            if let Ok(v) = r.try_get::<String>(i) {
                return Ok(Value::from(v));
            }
            r.try_get::<Vec<u8>>(i)
                .map(|b| Value::from(String::from_utf8_lossy(&b).into_owned()))
                .map_err(|_| unsupported_key(&format!("key column {}", i + 1)))
        })
        .collect()
}

pub(super) fn key_json(k: &[Value]) -> String {
    Value::from(k.to_vec()).to_string()
}

pub(super) fn parse_key(s: &str) -> Result<Vec<Value>, Error> {
    serde_json::from_str(s)
        .map_err(|e| Error::Unsupported(format!("corrupt checkpoint key {s:?}: {e}")))
}

pub(super) async fn fetch_key(
    conn: &mut Conn,
    sql: &str,
    binds: &[&[Value]],
    width: usize,
) -> Result<Option<Vec<Value>>, Error> {
    let mut q = crate::conn::query(sql);
    for k in binds {
        q = bind_key(q, k)?;
    }
    let row = q
        .fetch_optional(conn)
        .await
        .map_err(|e| Error::query("finding the next batch", e))?;
    row.map(|r| decode_key(&r, width)).transpose()
}
