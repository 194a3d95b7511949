//! One walk over a migration's ops for every engine: the ops served alike
//! (added, dropped and renamed columns) through the engine's [`Flavor`], a
//! changed column's shadow, backfill and checks, and an index's columns;
//! the engine writes only what differs (its triggers, its index statement).

use instar_core::online::Op;

use super::{served_index, shape_of, Changed, Expansion, Flavor, Shape};
use crate::online::Catalog;

/// What the engine is asked to write.
pub(crate) enum Served<'a> {
    /// A changed column (its shadow is in the shapes, its backfill and checks
    /// in the expansion): the engine adds the shadow, its sync triggers, and
    /// the statements that swap it into place at complete.
    Alter(&'a Changed),
    /// An index on `table`: its name, `UNIQUE ` or nothing, its columns.
    Index {
        table: &'a str,
        name: String,
        unique: &'static str,
        cols: String,
    },
}

/// The engine's part: writes what `Served` asks into the expansion, and the
/// statements `complete` runs on the tables into the list.
pub(crate) type EngineSide<'e> =
    dyn FnMut(Served<'_>, &mut Expansion, &mut Vec<String>) -> Result<(), String> + 'e;

/// What the walk gives back: the statements `complete` runs on the tables
/// (after dropping what hangs on them), and every changed column.
pub(crate) struct Walked {
    pub physical: Vec<String>,
    pub changed: Vec<Changed>,
}

/// Walks `ops`; `rename` turns a rename's statement into the engine's (MariaDB
/// guards it), `engine` writes what differs. Rollback statements come out in
/// reverse op order.
pub(crate) fn walk(
    ops: &[Op],
    cat: &Catalog,
    flavor: &Flavor,
    shapes: &mut [Shape],
    x: &mut Expansion,
    rename: &dyn Fn(&str, &str, String) -> String,
    engine: &mut EngineSide<'_>,
) -> Result<Walked, String> {
    let e = flavor.e;
    let mut w = Walked {
        physical: Vec::new(),
        changed: Vec::new(),
    };
    let mut marks = Vec::new();
    for op in ops {
        marks.push(x.rollback.len());
        match op {
            Op::AddColumn { .. } => flavor.add_columns(op, cat, shapes, x)?,
            Op::DropColumn {
                table,
                column,
                down,
            } => w
                .physical
                .push(flavor.drop_column(cat, table, column, down, shapes)?),
            Op::RenameColumn { table, column, to } => {
                let stmt = flavor.rename_column(table, column, to, shapes);
                w.physical.push(rename(table, column, stmt));
            }
            Op::AlterColumn { .. } => {
                let ch = Changed::of(e, op, cat)?;
                if let Some(n) = shape_of(shapes, &ch.table)
                    .new
                    .iter_mut()
                    .find(|(n, _)| n.eq_ignore_ascii_case(&ch.column))
                {
                    n.1 = ch.shadow.clone();
                }
                let base = (flavor.table)(&ch.table);
                x.fills.push(ch.fill(e, &base));
                let (round_trip, in_sync) = ch.probes(e, &base);
                x.round_trips.push(round_trip);
                x.in_sync.push(in_sync);
                engine(Served::Alter(&ch), x, &mut w.physical)?;
                x.rollback.push(format!(
                    "ALTER TABLE {base} DROP COLUMN{} {}",
                    flavor.undo_if,
                    e.quote(&ch.shadow)
                ));
                w.changed.push(ch);
            }
            Op::CreateIndex { table, .. } => {
                let (name, unique, cols) = served_index(e, op, shapes);
                engine(
                    Served::Index {
                        table,
                        name,
                        unique,
                        cols,
                    },
                    x,
                    &mut w.physical,
                )?;
            }
            other => return Err(format!("{} is not served at two versions", other.name())),
        }
    }
    super::reverse_ops(&mut x.rollback, &marks);
    Ok(w)
}
