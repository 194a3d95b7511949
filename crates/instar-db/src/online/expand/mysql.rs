//! Two versions on MariaDB. Views cannot carry triggers there, so the base
//! tables' triggers tell the writer's version from a session variable the
//! client sets (`SET @instar_version = '0002'`); the new version's views live
//! in a database of their own (`<db>_instar_<version>`), which its clients
//! use as their default database. DDL commits by itself, so every statement
//! of `start`, `complete` and `rollback` is idempotent: a command killed half
//! way is run again from its beginning.

use instar_core::online::{made_up_name, Op};

use super::walk::{walk, Served};
use super::{derived, view, Expansion, Flavor, Shape};
use crate::engine::Engine;
use crate::online::Catalog;

/// The database of views serving `version` of database `db`.
pub(crate) fn views_db(db: &str, version: &str) -> String {
    let v = super::postgres::schema_of(version);
    let mut name = format!("{db}_{v}");
    if name.len() > 64 {
        name = format!("{}_{v}", &db[..64 - v.len() - 1]);
    }
    name
}

/// Runs `then` only while `table` has `column` (MariaDB's anonymous block):
/// a contract step run a second time does nothing.
fn while_column(table: &str, column: &str, then: &str) -> String {
    let lit = |s: &str| format!("'{}'", s.replace('\'', "''"));
    format!(
        "BEGIN NOT ATOMIC IF EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = {} AND column_name = {}) THEN {then}; END IF; END",
        lit(table),
        lit(column)
    )
}

pub(super) fn expansion(
    e: &dyn Engine,
    ops: &[Op],
    cat: &Catalog,
    shapes: &[Shape],
    old_version: &str,
    new_version: &str,
    base: &str,
) -> Result<Expansion, String> {
    let q = |s: &str| e.quote(s);
    let bt = |t: &str| format!("{}.{}", q(base), q(t));
    let (old_db, new_db) = (views_db(base, old_version), views_db(base, new_version));
    let mut shapes = shapes.to_vec();
    let mut x = Expansion::new(old_version, new_version, old_db.clone(), new_db.clone());
    x.contract = vec![
        format!("DROP DATABASE IF EXISTS {}", q(&old_db)),
        format!("DROP DATABASE IF EXISTS {}", q(&new_db)),
    ];
    x.rollback = vec![format!("DROP DATABASE IF EXISTS {}", q(&new_db))];
    let lit = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let is_new = format!("@instar_version <=> {}", lit(new_version));
    let flavor = Flavor {
        e,
        table: &bt,
        add_if: " IF NOT EXISTS",
        undo_if: " IF EXISTS",
        drop_if: " IF EXISTS",
        set_default: true,
    };
    let mut engine = |served: Served<'_>, x: &mut Expansion, physical: &mut Vec<String>| {
        match served {
            Served::Alter(ch) => {
                let (t, s) = (&ch.table, &ch.shadow);
                let (c, s2) = (q(&ch.column), q(s));
                let up_new = ch.up_of_new(e);
                let down_new = ch.down_of(e, &format!("NEW.{s2}"), &|c| c.to_string());
                let old_changed = ch
                    .up_cols()
                    .iter()
                    .map(|x| format!("NOT (NEW.{c2} <=> OLD.{c2})", c2 = q(x)))
                    .collect::<Vec<_>>()
                    .join(" OR ");
                let name = |what: &str| {
                    q(&made_up_name(
                        &format!("instar_{t}"),
                        std::slice::from_ref(&ch.column),
                        what,
                    ))
                };
                // Added without a default (which would fill every existing row
                // with it, and the backfill fills only empty ones), given one after.
                x.expand.push(format!(
                    "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {s2} {}",
                    bt(t),
                    ch.ty
                ));
                if !ch.shadow_default().is_empty() {
                    x.expand.push(format!(
                        "ALTER TABLE {} MODIFY COLUMN {s2} {}{}",
                        bt(t),
                        ch.ty,
                        ch.shadow_default()
                    ));
                }
                x.expand.push(format!(
                    "CREATE OR REPLACE TRIGGER {} BEFORE INSERT ON {} FOR EACH ROW BEGIN IF {is_new} THEN SET NEW.{c} = ({down_new}); ELSE SET NEW.{s2} = ({up_new}); END IF; END",
                    name("ins"),
                    bt(t)
                ));
                // An update changes the other column only when its version's
                // column changed: the backfill (which sets the shadow from an
                // old-version session) leaves the old column alone.
                x.expand.push(format!(
                    "CREATE OR REPLACE TRIGGER {} BEFORE UPDATE ON {} FOR EACH ROW BEGIN IF {is_new} THEN IF NOT (NEW.{s2} <=> OLD.{s2}) THEN SET NEW.{c} = ({down_new}); END IF; ELSEIF {old_changed} THEN SET NEW.{s2} = ({up_new}); END IF; END",
                    name("upd"),
                    bt(t)
                ));
                for what in ["ins", "upd"] {
                    let drop = format!("DROP TRIGGER IF EXISTS {}.{}", q(base), name(what));
                    x.contract.push(drop.clone());
                    x.rollback.push(drop);
                }
                let null = if ch.was_not_null { " NOT NULL" } else { "" };
                physical.push(while_column(
                    t,
                    s,
                    &format!(
                        "ALTER TABLE {} DROP COLUMN {c}, CHANGE COLUMN {s2} {c} {}{null}",
                        bt(t),
                        ch.ty
                    ),
                ));
            }
            Served::Index {
                table,
                name,
                unique,
                cols,
            } => {
                x.expand_outside.push(format!("CREATE {unique}INDEX IF NOT EXISTS {} ON {} ({cols}) ALGORITHM=INPLACE LOCK=NONE", q(&name), bt(table)));
                x.rollback.push(format!(
                    "DROP INDEX IF EXISTS {} ON {}",
                    q(&name),
                    bt(table)
                ));
            }
        }
        Ok(())
    };
    // A contract step run a second time must do nothing.
    let rename = |table: &str, column: &str, stmt: String| while_column(table, column, &stmt);
    let physical = walk(ops, cat, &flavor, &mut shapes, &mut x, &rename, &mut engine)?.physical;
    // Columns computed from the row by one version while the other writes them.
    let mut drops = Vec::new();
    for d in derived(e, ops, cat, &shapes)? {
        let when = if d.for_new {
            is_new.clone()
        } else {
            format!("NOT ({is_new})")
        };
        let name = |what: &str| {
            q(&made_up_name(
                &format!("instar_{}", d.table),
                std::slice::from_ref(&d.column),
                what,
            ))
        };
        let set = format!("SET NEW.{} = ({})", q(&d.column), d.value);
        x.expand.push(format!(
            "CREATE OR REPLACE TRIGGER {} BEFORE INSERT ON {} FOR EACH ROW BEGIN IF {when} THEN {set}; END IF; END",
            name("d_ins"),
            bt(&d.table)
        ));
        let changed = d
            .watched
            .iter()
            .map(|c| format!("NOT (NEW.{c2} <=> OLD.{c2})", c2 = q(c)))
            .collect::<Vec<_>>()
            .join(" OR ");
        if !changed.is_empty() {
            x.expand.push(format!(
                "CREATE OR REPLACE TRIGGER {} BEFORE UPDATE ON {} FOR EACH ROW BEGIN IF {when} AND ({changed}) THEN {set}; END IF; END",
                name("d_upd"),
                bt(&d.table)
            ));
        }
        d.fill(e, &bt(&d.table), &mut x);
        for what in ["d_ins", "d_upd"] {
            drops.push(format!("DROP TRIGGER IF EXISTS {}.{}", q(base), name(what)));
        }
    }
    x.contract.extend(drops.iter().cloned());
    x.contract.extend(physical);
    // Before the columns they read go (after the new version's views).
    x.rollback.splice(1..1, drops);
    // `USE <views database>` hides the base database: every table gets a view
    // there, the changed ones in each version's shape.
    let others: Vec<Shape> = cat
        .all_tables
        .iter()
        .filter(|t| !shapes.iter().any(|s| s.table.eq_ignore_ascii_case(t)))
        .map(|t| Shape {
            table: t.clone(),
            key: Vec::new(),
            old: Vec::new(),
            new: Vec::new(),
        })
        .collect();
    for (db, new) in [(&old_db, false), (&new_db, true)] {
        x.views
            .push(format!("CREATE DATABASE IF NOT EXISTS {}", q(db)));
        for s in &shapes {
            let cols = if new { &s.new } else { &s.old };
            x.views.push(view(
                e,
                "CREATE OR REPLACE VIEW",
                db,
                &bt(&s.table),
                &s.table,
                cols,
            ));
        }
        for s in &others {
            x.views.push(format!(
                "CREATE OR REPLACE VIEW {}.{} AS SELECT * FROM {}",
                q(db),
                q(&s.table),
                bt(&s.table)
            ));
        }
    }
    x.connect_new = vec![
        format!("USE {}", q(&new_db)),
        format!("SET @instar_version = {}", lit(new_version)),
    ];
    Ok(x)
}
