//! A fused lens chain ([`instar_lens::fuse::Fused`]) as SQL: the expression
//! that edits a document in the engine's JSON functions, and the condition a
//! row must meet for that edit to be exact. Each engine spells the pieces in
//! its own module ([`JsonSql`]); this module puts them together, and knows no
//! engine.

use instar_lens::fuse::{Fused, Source};
use serde_json::Value;

/// One engine's JSON functions, as SQL text.
pub(crate) trait JsonSql: Sync {
    /// A string literal.
    fn text(&self, s: &str) -> String;
    /// The body column `col` (declared type `ty`, where the engine reports
    /// one) as the engine's JSON value; `None` when documents in such a
    /// column cannot be edited in SQL (and why).
    fn doc(&self, col: &str, ty: Option<&str>) -> Result<String, String>;
    /// A JSON value stored back into a body column of type `ty`.
    fn store(&self, expr: &str, ty: Option<&str>) -> String;
    /// The condition that `doc` is a JSON object whose top-level fields are
    /// `absent` and `present` as listed (false, never an error, for a body
    /// that is not JSON).
    fn shape(&self, doc: &str, absent: &[&str], present: &[&str]) -> String;
    /// The JSON value of top-level field `field` of `doc`.
    fn get(&self, doc: &str, field: &str) -> String;
    /// A JSON constant.
    fn constant(&self, v: &Value) -> String;
    /// `[v]`, and `[]` for `null`.
    fn wrap(&self, v: &str) -> String;
    /// `doc` without the fields `remove` and with `set` (name, JSON value) set.
    fn edit(&self, doc: &str, remove: &[&str], set: &[(&str, String)]) -> String;
    /// The condition that SQL values `a` and `b` hold the same JSON value
    /// (whatever the spacing and the order of object keys), or are both NULL.
    fn same(&self, a: &str, b: &str) -> String;
}

/// A field name every engine's JSON path syntax carries as it is.
fn plain_name(f: &str) -> bool {
    !f.is_empty()
        && f.chars()
            .all(|c| !c.is_control() && c != '"' && c != '\\' && c != '\'')
}

/// The edit and its condition, for a body column `col` of type `ty`; or why
/// the chain cannot be pushed down on this engine.
pub(crate) fn pushdown(
    j: &dyn JsonSql,
    fused: &Fused,
    col: &str,
    ty: Option<&str>,
) -> Result<(String, String), String> {
    let names = fused
        .absent
        .iter()
        .chain(&fused.present)
        .chain(fused.fields.iter().map(|(n, _)| n));
    if let Some(odd) = names.into_iter().find(|f| !plain_name(f)) {
        return Err(format!(
            "field name {odd:?} holds a quote, a backslash or a control character"
        ));
    }
    let doc = j.doc(col, ty)?;
    let value = |s: &Source| -> String {
        fn go(j: &dyn JsonSql, doc: &str, s: &Source) -> String {
            match s {
                Source::Field(f) => j.get(doc, f),
                Source::Const(v) => j.constant(v),
                Source::Wrap(inner) => j.wrap(&go(j, doc, inner)),
            }
        }
        go(j, &doc, s)
    };
    let remove: Vec<&str> = fused
        .fields
        .iter()
        .filter(|(_, s)| s.is_none())
        .map(|(n, _)| n.as_str())
        .collect();
    let set: Vec<(&str, String)> = fused
        .fields
        .iter()
        .filter_map(|(n, s)| s.as_ref().map(|s| (n.as_str(), value(s))))
        .collect();
    let edit = j.store(&j.edit(&doc, &remove, &set), ty);
    let absent: Vec<&str> = fused.absent.iter().map(String::as_str).collect();
    let present: Vec<&str> = fused.present.iter().map(String::as_str).collect();
    Ok((edit, j.shape(&doc, &absent, &present)))
}
