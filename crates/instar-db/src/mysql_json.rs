//! MySQL's and MariaDB's JSON functions for lens pushdown (`JSON_SET`, `JSON_REMOVE`).

use serde_json::Value;

use crate::json_sql::JsonSql;

pub(crate) struct MySqlJson;

fn path(field: &str) -> String {
    format!("'$.\"{field}\"'")
}

impl JsonSql for MySqlJson {
    fn text(&self, s: &str) -> String {
        // Backslash is an escape in MySQL string literals (unless NO_BACKSLASH_ESCAPES).
        format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
    }
    fn doc(&self, col: &str, _ty: Option<&str>) -> Result<String, String> {
        Ok(col.to_string())
    }
    fn store(&self, expr: &str, _ty: Option<&str>) -> String {
        expr.to_string()
    }
    fn shape(&self, doc: &str, absent: &[&str], present: &[&str]) -> String {
        let mut terms = vec![format!("JSON_TYPE({doc}) = 'OBJECT'")];
        terms.extend(
            absent
                .iter()
                .map(|f| format!("NOT JSON_CONTAINS_PATH({doc}, 'one', {})", path(f))),
        );
        terms.extend(
            present
                .iter()
                .map(|f| format!("JSON_CONTAINS_PATH({doc}, 'one', {})", path(f))),
        );
        format!(
            "(CASE WHEN JSON_VALID({doc}) THEN ({}) ELSE 0 END)",
            terms.join(" AND ")
        )
    }
    fn get(&self, doc: &str, field: &str) -> String {
        format!("JSON_EXTRACT({doc}, {})", path(field))
    }
    fn constant(&self, v: &Value) -> String {
        format!("JSON_EXTRACT({}, '$[0]')", self.text(&format!("[{v}]")))
    }
    fn wrap(&self, v: &str) -> String {
        format!("(CASE WHEN JSON_TYPE({v}) = 'NULL' THEN JSON_ARRAY() ELSE JSON_ARRAY({v}) END)")
    }
    fn same(&self, a: &str, b: &str) -> String {
        // MariaDB keeps JSON as text; JSON_EQUALS compares the values.
        format!("(({a}) <=> ({b}) OR COALESCE(JSON_EQUALS({a}, {b}), 0) = 1)")
    }
    fn edit(&self, doc: &str, remove: &[&str], set: &[(&str, String)]) -> String {
        let mut e = doc.to_string();
        if !remove.is_empty() {
            let paths: Vec<String> = remove.iter().map(|f| path(f)).collect();
            e = format!("JSON_REMOVE({e}, {})", paths.join(", "));
        }
        if !set.is_empty() {
            let pairs: Vec<String> = set
                .iter()
                .map(|(f, v)| format!("{}, {v}", path(f)))
                .collect();
            e = format!("JSON_SET({e}, {})", pairs.join(", "));
        }
        e
    }
}
