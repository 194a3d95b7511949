//! Two versions on PostgreSQL: one schema of views per version
//! (`instar_<version>`), each over the shared base tables. A client picks its
//! version with `search_path` (`SET search_path = instar_0002, public`); the
//! triggers that keep a changed column and its shadow in step tell the
//! writer's version from it. Clients that set nothing write the base tables
//! as the old version.

use instar_core::online::{made_up_name, Op};

use super::walk::{walk, Served};
use super::{derived, view, Expansion, Flavor, Shape};
use crate::engine::Engine;
use crate::online::Catalog;

/// The schema of views serving `version`.
pub(crate) fn schema_of(version: &str) -> String {
    let v: String = version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("instar_{v}")
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
    let (old_schema, new_schema) = (schema_of(old_version), schema_of(new_version));
    let mut shapes = shapes.to_vec();
    let mut x = Expansion::new(
        old_version,
        new_version,
        old_schema.clone(),
        new_schema.clone(),
    );
    // Contract and rollback drop the version views first: they hold the columns.
    x.contract
        .push(format!("DROP SCHEMA IF EXISTS {} CASCADE", q(&old_schema)));
    x.contract
        .push(format!("DROP SCHEMA IF EXISTS {} CASCADE", q(&new_schema)));
    x.rollback
        .push(format!("DROP SCHEMA IF EXISTS {} CASCADE", q(&new_schema)));
    let flavor = Flavor {
        e,
        table: &bt,
        add_if: "",
        undo_if: " IF EXISTS",
        drop_if: "",
        set_default: true,
    };
    // Updates fire only for the column their version writes (the WHEN runs
    // without calling the function): the backfill, which sets the shadow from
    // an old-version session, fires nothing.
    let is_new = format!("current_setting('search_path') LIKE '%{new_schema}%'");
    let function = |table: &str, column: &str, suffix: &str| {
        let v = new_schema.trim_start_matches("instar_");
        format!(
            "{}.{}",
            q(base),
            q(&format!("instar_{v}_{table}_{column}{suffix}"))
        )
    };
    let mut engine = |served: Served<'_>, x: &mut Expansion, physical: &mut Vec<String>| {
        match served {
            Served::Alter(ch) => {
                let (table, column, s) = (&ch.table, &ch.column, &ch.shadow);
                let up_new = ch.up_of_new(e);
                let down_new = ch.down_of(e, &format!("NEW.{}", q(s)), &|c| c.to_string());
                let f = function(table, column, "");
                let trigger = |what: &str| {
                    q(&made_up_name(
                        &format!("instar_{table}"),
                        std::slice::from_ref(column),
                        what,
                    ))
                };
                // Added without a default (which would fill every existing row
                // with it, and the backfill fills only empty ones), given one after.
                x.expand.push(format!(
                    "ALTER TABLE {} ADD COLUMN {} {}",
                    bt(table),
                    q(s),
                    ch.ty
                ));
                if !ch.shadow_default().is_empty() {
                    x.expand.push(format!(
                        "ALTER TABLE {} ALTER COLUMN {} SET{}",
                        bt(table),
                        q(s),
                        ch.shadow_default()
                    ));
                }
                x.expand.push(format!(
                    "CREATE FUNCTION {f}() RETURNS trigger LANGUAGE plpgsql AS $instar$ BEGIN IF {is_new} THEN NEW.{c} := ({down_new}); ELSE NEW.{s2} := ({up_new}); END IF; RETURN NEW; END $instar$",
                    c = q(column),
                    s2 = q(s)
                ));
                x.expand.push(format!(
                    "CREATE TRIGGER {} BEFORE INSERT ON {} FOR EACH ROW EXECUTE FUNCTION {f}()",
                    trigger("ins"),
                    bt(table)
                ));
                x.expand.push(format!("CREATE TRIGGER {} BEFORE UPDATE OF {} ON {} FOR EACH ROW WHEN (NOT {is_new}) EXECUTE FUNCTION {f}()", trigger("upd_old"), ch.up_cols().iter().map(|c| q(c)).collect::<Vec<_>>().join(", "), bt(table)));
                x.expand.push(format!("CREATE TRIGGER {} BEFORE UPDATE OF {} ON {} FOR EACH ROW WHEN ({is_new}) EXECUTE FUNCTION {f}()", trigger("upd_new"), q(s), bt(table)));
                // The function goes with its triggers.
                let drop = format!("DROP FUNCTION IF EXISTS {f}() CASCADE");
                x.contract.push(drop.clone());
                x.rollback.push(drop);
                physical.push(format!(
                    "ALTER TABLE {} DROP COLUMN {}",
                    bt(table),
                    q(column)
                ));
                physical.push(format!(
                    "ALTER TABLE {} RENAME COLUMN {} TO {}",
                    bt(table),
                    q(s),
                    q(column)
                ));
                if ch.was_not_null {
                    physical.push(format!(
                        "ALTER TABLE {} ALTER COLUMN {} SET NOT NULL",
                        bt(table),
                        q(column)
                    ));
                }
            }
            Served::Index {
                table,
                name,
                unique,
                cols,
            } => {
                x.expand_outside.push(format!(
                    "CREATE {unique}INDEX CONCURRENTLY IF NOT EXISTS {} ON {} ({cols})",
                    q(&name),
                    bt(table)
                ));
                x.rollback
                    .push(format!("DROP INDEX IF EXISTS {}.{}", q(base), q(&name)));
            }
        }
        Ok(())
    };
    let physical = walk(
        ops,
        cat,
        &flavor,
        &mut shapes,
        &mut x,
        &|_, _, s| s,
        &mut engine,
    )?
    .physical;
    // Columns computed from the row by one version while the other writes them.
    let mut drops = Vec::new();
    for d in derived(e, ops, cat, &shapes)? {
        let f = function(&d.table, &d.column, "_d");
        let when = if d.for_new {
            is_new.clone()
        } else {
            format!("NOT {is_new}")
        };
        let name = |what: &str| {
            q(&made_up_name(
                &format!("instar_{}", d.table),
                std::slice::from_ref(&d.column),
                what,
            ))
        };
        x.expand.push(format!(
            "CREATE FUNCTION {f}() RETURNS trigger LANGUAGE plpgsql AS $instar$ BEGIN NEW.{} := ({}); RETURN NEW; END $instar$",
            q(&d.column),
            d.value
        ));
        x.expand.push(format!("CREATE TRIGGER {} BEFORE INSERT ON {} FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION {f}()", name("d_ins"), bt(&d.table)));
        if !d.watched.is_empty() {
            x.expand.push(format!(
                "CREATE TRIGGER {} BEFORE UPDATE OF {} ON {} FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION {f}()",
                name("d_upd"),
                d.watched.iter().map(|c| q(c)).collect::<Vec<_>>().join(", "),
                bt(&d.table)
            ));
        }
        d.fill(e, &bt(&d.table), &mut x);
        drops.push(format!("DROP FUNCTION IF EXISTS {f}() CASCADE"));
    }
    x.contract.extend(drops.iter().cloned());
    x.contract.extend(physical);
    for (schema, new) in [(&old_schema, false), (&new_schema, true)] {
        x.views
            .push(format!("CREATE SCHEMA IF NOT EXISTS {}", q(schema)));
        for s in &shapes {
            let cols = if new { &s.new } else { &s.old };
            x.views
                .push(format!("DROP VIEW IF EXISTS {}.{}", q(schema), q(&s.table)));
            x.views.push(view(
                e,
                "CREATE VIEW",
                schema,
                &bt(&s.table),
                &s.table,
                cols,
            ));
        }
    }
    // The views go at complete: a client keeping `search_path = instar_<new>,
    // public` then finds the base tables, which have the new version's shape
    // (views kept would block the next migration's DDL on their columns).
    // Before the columns they read go (after the new version's views).
    x.rollback.splice(1..1, drops);
    Ok(x)
}
