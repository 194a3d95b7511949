//! PostgreSQL's `jsonb` functions for lens pushdown (`-`, `||`, `jsonb_build_object`).

use serde_json::Value;

use crate::json_sql::JsonSql;

pub(crate) struct PostgresJson;

impl JsonSql for PostgresJson {
    fn text(&self, s: &str) -> String {
        format!("'{}'", s.replace('\'', "''"))
    }
    fn doc(&self, col: &str, ty: Option<&str>) -> Result<String, String> {
        match ty.map(str::to_ascii_lowercase).as_deref() {
            Some("jsonb") => Ok(col.to_string()),
            Some("json") => Ok(format!("CAST({col} AS jsonb)")),
            Some(other) => Err(format!(
                "the body column is {other}, which may hold text that is not JSON (declare it jsonb or json)"
            )),
            None => Err("the body column's type is unknown".into()),
        }
    }
    fn store(&self, expr: &str, ty: Option<&str>) -> String {
        match ty {
            Some(t) if !t.eq_ignore_ascii_case("jsonb") => format!("CAST({expr} AS {t})"),
            _ => expr.to_string(),
        }
    }
    fn shape(&self, doc: &str, absent: &[&str], present: &[&str]) -> String {
        let mut terms = vec![format!("jsonb_typeof({doc}) = 'object'")];
        terms.extend(
            absent
                .iter()
                .map(|f| format!("NOT jsonb_exists({doc}, {})", self.text(f))),
        );
        terms.extend(
            present
                .iter()
                .map(|f| format!("jsonb_exists({doc}, {})", self.text(f))),
        );
        format!("({})", terms.join(" AND "))
    }
    fn get(&self, doc: &str, field: &str) -> String {
        format!("({doc} -> {})", self.text(field))
    }
    fn constant(&self, v: &Value) -> String {
        format!("CAST({} AS jsonb)", self.text(&v.to_string()))
    }
    fn wrap(&self, v: &str) -> String {
        format!("(CASE WHEN jsonb_typeof({v}) = 'null' THEN CAST('[]' AS jsonb) ELSE jsonb_build_array({v}) END)")
    }
    fn same(&self, a: &str, b: &str) -> String {
        // jsonb compares values, not text.
        format!("CAST(({a}) AS jsonb) IS NOT DISTINCT FROM CAST(({b}) AS jsonb)")
    }
    fn edit(&self, doc: &str, remove: &[&str], set: &[(&str, String)]) -> String {
        let mut e = doc.to_string();
        if !remove.is_empty() {
            let names: Vec<String> = remove.iter().map(|f| self.text(f)).collect();
            e = format!("({e} - CAST(ARRAY[{}] AS text[]))", names.join(", "));
        }
        if !set.is_empty() {
            let pairs: Vec<String> = set
                .iter()
                .map(|(f, v)| format!("{}, {v}", self.text(f)))
                .collect();
            e = format!("({e} || jsonb_build_object({}))", pairs.join(", "));
        }
        e
    }
}
