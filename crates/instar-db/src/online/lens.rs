//! `alter_column … lens = "<collection>"`: the up and down expressions of a
//! column holding a collection's JSON documents, made from the collection's
//! declarative lenses (fused into one edit, read backwards for down) in the
//! engine's JSON functions. The op then compiles, and is served at two
//! versions, like any `alter_column` with `up` and `down`: the sample check
//! before `start` runs `down(up(x)) = x` on real documents, so a lens that
//! loses something (a `remove` whose default is not the value) is reported.

use std::collections::BTreeMap;

use instar_core::online::Op;

use super::Catalog;
use crate::data::DocCollection;
use crate::engine::Engine;

/// The collections an online migration's lenses may name, by name.
pub type Collections = BTreeMap<String, DocCollection>;

/// `ops` with each `alter_column` that names a `lens` given its `up`, `down`
/// and types; the other ops as they are.
pub(crate) fn resolve(
    e: &dyn Engine,
    ops: &[Op],
    cat: &Catalog,
    collections: &Collections,
) -> Result<Vec<Op>, String> {
    ops.iter()
        .map(|op| match op {
            Op::AlterColumn {
                table,
                column,
                ty,
                lossy,
                lens: Some(name),
                from_version: Some(from),
                to_version: Some(to),
                ..
            } => {
                let coll = collections.get(name).ok_or_else(|| {
                    format!(
                        "alter_column {table}.{column}: collection {name} is not declared in instar.toml ([collections.{name}] with its versions and lenses)"
                    )
                })?;
                let col = cat.need_column(table, column)?;
                let new_ty = if ty.trim().is_empty() {
                    col.ty.clone()
                } else {
                    ty.clone()
                };
                let up = edit(e, coll, (from, to), column, &col.ty, true)?;
                let down = edit(e, coll, (from, to), column, &new_ty, false)?;
                Ok(Op::AlterColumn {
                    table: table.clone(),
                    column: column.clone(),
                    ty: new_ty,
                    from_type: Some(col.ty.clone()),
                    up: Some(up),
                    down: Some(down),
                    lossy: *lossy,
                    // Kept: the column's values are compared as JSON.
                    lens: Some(name.clone()),
                    from_version: None,
                    to_version: None,
                })
            }
            other => Ok(other.clone()),
        })
        .collect()
}

/// The SQL expression moving a document in `column` (of type `ty`) along the
/// lenses `from → to` (`forward`), or back.
fn edit(
    e: &dyn Engine,
    coll: &DocCollection,
    (from, to): (&str, &str),
    column: &str,
    ty: &str,
    forward: bool,
) -> Result<String, String> {
    let steps = coll
        .graph
        .path(from, to)
        .map_err(|err| format!("lens from {from} to {to}: {err}"))?;
    if let Some(back) = steps.iter().find(|s| !s.forward) {
        return Err(format!(
            "the lenses from {from} to {to} go back through {}: name versions in the order the collection declares them",
            back.lens.path.display()
        ));
    }
    let ops: Vec<instar_lens::Op> = steps
        .iter()
        .flat_map(|s| s.lens.ops.iter().cloned())
        .collect();
    let ops = if forward {
        ops
    } else {
        instar_lens::reverse(&ops)
    };
    let fused = instar_lens::fuse::fuse_forgetting(ops.iter()).map_err(|why| {
        format!(
            "the lenses from {from} to {to} cannot be written as one SQL expression ({why}); move the documents with a documents migration (kind = \"documents\") instead"
        )
    })?;
    let (edit, _) =
        crate::json_sql::pushdown(e.json(), &fused, column, Some(ty)).map_err(|why| {
            format!("the lenses from {from} to {to} cannot be written in SQL here: {why}")
        })?;
    Ok(edit)
}
