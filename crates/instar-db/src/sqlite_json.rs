//! SQLite's JSON functions for lens pushdown (`json_set`, `json_remove`, `->`).

use serde_json::Value;

use crate::json_sql::JsonSql;

pub(crate) struct SqliteJson;

fn path(field: &str) -> String {
    format!("'$.\"{field}\"'")
}

impl JsonSql for SqliteJson {
    fn text(&self, s: &str) -> String {
        format!("'{}'", s.replace('\'', "''"))
    }
    fn doc(&self, col: &str, _ty: Option<&str>) -> Result<String, String> {
        Ok(col.to_string())
    }
    fn store(&self, expr: &str, _ty: Option<&str>) -> String {
        expr.to_string()
    }
    fn shape(&self, doc: &str, absent: &[&str], present: &[&str]) -> String {
        let mut terms = vec![format!("json_type({doc}) = 'object'")];
        terms.extend(
            absent
                .iter()
                .map(|f| format!("json_type({doc}, {}) IS NULL", path(f))),
        );
        terms.extend(
            present
                .iter()
                .map(|f| format!("json_type({doc}, {}) IS NOT NULL", path(f))),
        );
        // CASE is evaluated lazily: a body that is not JSON is never parsed.
        format!(
            "(CASE WHEN json_valid({doc}) THEN ({}) ELSE 0 END)",
            terms.join(" AND ")
        )
    }
    fn get(&self, doc: &str, field: &str) -> String {
        format!("json({doc} -> {})", path(field))
    }
    fn constant(&self, v: &Value) -> String {
        format!("json({})", self.text(&v.to_string()))
    }
    fn wrap(&self, v: &str) -> String {
        format!("(CASE WHEN json_type({v}) = 'null' THEN json_array() ELSE json_array({v}) END)")
    }
    fn same(&self, a: &str, b: &str) -> String {
        // SQLite keeps JSON as text and compares it as text: compare each
        // document's leaves by path instead (object keys in any order).
        let canon = |d: &str| {
            format!(
                "(SELECT group_concat(k, ',') FROM (SELECT fullkey || ':' || type || '=' || COALESCE(quote(atom), '') AS k FROM json_tree({d}) ORDER BY fullkey))"
            )
        };
        format!("(({a}) IS ({b}) OR {} IS {})", canon(a), canon(b))
    }
    fn edit(&self, doc: &str, remove: &[&str], set: &[(&str, String)]) -> String {
        let mut e = doc.to_string();
        if !remove.is_empty() {
            let paths: Vec<String> = remove.iter().map(|f| path(f)).collect();
            e = format!("json_remove({e}, {})", paths.join(", "));
        }
        if !set.is_empty() {
            let pairs: Vec<String> = set
                .iter()
                .map(|(f, v)| format!("{}, {v}", path(f)))
                .collect();
            e = format!("json_set({e}, {})", pairs.join(", "));
        }
        e
    }
}
