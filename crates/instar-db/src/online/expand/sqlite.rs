//! Two versions on SQLite. Views there are read-only and `INSTEAD OF`
//! triggers exist only on views, so the old version keeps the base tables
//! (its clients change nothing), and a connection opens the new version by
//! running [`Expansion::connect_new`]: TEMP views named like the tables
//! (they hide them on that connection only) with TEMP `INSTEAD OF` triggers
//! that write the base table in both shapes. Base-table triggers fill a
//! changed column's shadow for rows the old version writes.

use instar_core::online::{made_up_name, Op};

use super::walk::{walk, Served};
use super::{derived, Changed, Expansion, Flavor, Shape};
use crate::engine::Engine;
use crate::online::Catalog;

pub(super) fn expansion(
    e: &dyn Engine,
    ops: &[Op],
    cat: &Catalog,
    shapes: &[Shape],
    old_version: &str,
    new_version: &str,
) -> Result<Expansion, String> {
    let q = |s: &str| e.quote(s);
    let mut shapes = shapes.to_vec();
    let mut x = Expansion::new(old_version, new_version, String::new(), String::new());
    let quoted = |t: &str| e.quote(t);
    let flavor = Flavor {
        e,
        table: &quoted,
        add_if: "",
        undo_if: "",
        drop_if: "",
        set_default: false,
    };
    let mut engine = |served: Served<'_>, x: &mut Expansion, physical: &mut Vec<String>| {
        match served {
            Served::Alter(ch) => {
                let (t, s) = (&ch.table, &ch.shadow);
                // No default here (SQLite adds only constant ones): the new
                // version's insert trigger applies it, translated.
                x.expand.push(format!(
                    "ALTER TABLE {} ADD COLUMN {} {}",
                    q(t),
                    q(s),
                    ch.ty
                ));
                let (make, drop) = refill(
                    e,
                    t,
                    &ch.key,
                    s,
                    &ch.up_of_new(e),
                    &ch.up_cols(),
                    &ch.column,
                    "",
                );
                x.expand.extend(make);
                x.contract.extend(drop.iter().cloned());
                x.rollback.extend(drop);
                physical.push(format!(
                    "ALTER TABLE {} DROP COLUMN {}",
                    q(t),
                    q(&ch.column)
                ));
                physical.push(format!(
                    "ALTER TABLE {} RENAME COLUMN {} TO {}",
                    q(t),
                    q(s),
                    q(&ch.column)
                ));
            }
            Served::Index {
                table,
                name,
                unique,
                cols,
            } => {
                x.expand.push(format!(
                    "CREATE {unique}INDEX IF NOT EXISTS {} ON {} ({cols})",
                    q(&name),
                    q(table)
                ));
                x.rollback
                    .push(format!("DROP INDEX IF EXISTS {}", q(&name)));
            }
        }
        Ok(())
    };
    let walked = walk(
        ops,
        cat,
        &flavor,
        &mut shapes,
        &mut x,
        &|_, _, s| s,
        &mut engine,
    )?;
    let (physical, changed) = (walked.physical, walked.changed);
    // A TEMP trigger cannot name main.t, and `t` in it is its own TEMP view:
    // it writes through a pass-through view of main's, whose triggers (in
    // main) reach the table. Dropped first by complete and rollback.
    let derived = derived(e, ops, cat, &shapes)?;
    let mut passes = Vec::new();
    for s in &shapes {
        passes.push(format!(
            "DROP VIEW IF EXISTS {}",
            q(&pass_through(&s.table))
        ));
        x.expand.extend(pass(e, s));
        x.connect_new
            .extend(connect(e, s, &changed, &derived, &|p| {
                default_of(cat, ops, &changed, &s.table, p)
            }));
    }
    // Columns computed from the row: an added one's `up` by base-table
    // triggers (old-version writes); a dropped one's `down` by the new
    // version's TEMP triggers (see `connect`).
    let mut drops = Vec::new();
    for d in derived.iter().filter(|d| !d.for_new) {
        let (make, drop) = refill(
            e, &d.table, &d.key, &d.column, &d.value, &d.watched, &d.column, "d_",
        );
        x.expand.extend(make);
        d.fill(e, &q(&d.table), &mut x);
        drops.extend(drop);
    }
    x.rollback.splice(0..0, drops.iter().cloned());
    x.contract.extend(drops);
    x.contract.splice(0..0, passes.iter().cloned());
    x.rollback.splice(0..0, passes);
    x.contract.extend(physical);
    Ok(x)
}

/// Base-table triggers that compute `target` from the row (`value`, over
/// `NEW."col"`) for rows the old version writes: an insert that leaves it
/// empty, an update of a column in `watched` that leaves it as it was.
/// Returns them and the statements dropping them; `column` and `prefix` name them.
#[allow(clippy::too_many_arguments)]
fn refill(
    e: &dyn Engine,
    table: &str,
    key: &[String],
    target: &str,
    value: &str,
    watched: &[String],
    column: &str,
    prefix: &str,
) -> (Vec<String>, Vec<String>) {
    let q = |s: &str| e.quote(s);
    let by_key = key
        .iter()
        .map(|k| format!("{k2} = NEW.{k2}", k2 = q(k)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let set = format!(
        "UPDATE {} SET {} = ({value}) WHERE {by_key}",
        q(table),
        q(target)
    );
    let name = |what: &str| {
        q(&made_up_name(
            &format!("instar_{table}"),
            &[column.to_string()],
            &format!("{prefix}{what}"),
        ))
    };
    let c = q(target);
    let mut make = vec![format!(
        "CREATE TRIGGER {} AFTER INSERT ON {} WHEN NEW.{c} IS NULL BEGIN {set}; END",
        name("ins"),
        q(table)
    )];
    if !watched.is_empty() {
        let changed = watched
            .iter()
            .map(|w| format!("NEW.{w2} IS NOT OLD.{w2}", w2 = q(w)))
            .collect::<Vec<_>>()
            .join(" OR ");
        make.push(format!(
            "CREATE TRIGGER {} AFTER UPDATE OF {} ON {} WHEN NEW.{c} IS OLD.{c} AND ({changed}) BEGIN {set}; END",
            name("upd"),
            watched.iter().map(|w| q(w)).collect::<Vec<_>>().join(", "),
            q(table)
        ));
    }
    let drop = ["ins", "upd"]
        .iter()
        .map(|w| format!("DROP TRIGGER IF EXISTS {}", name(w)))
        .collect();
    (make, drop)
}

/// The view of main through which the new version's TEMP triggers write `table`.
fn pass_through(table: &str) -> String {
    format!("_instar_w_{table}")
}

/// Every physical column of `s` while both versions are served.
fn physical(s: &Shape) -> Vec<String> {
    let mut cols: Vec<String> = s.old.iter().map(|(_, p)| p.clone()).collect();
    for (_, p) in &s.new {
        if !cols.iter().any(|c| c.eq_ignore_ascii_case(p)) {
            cols.push(p.clone());
        }
    }
    cols
}

/// The pass-through view of `s` and its triggers (in main: `t` there is the table).
fn pass(e: &dyn Engine, s: &Shape) -> Vec<String> {
    let q = |n: &str| e.quote(n);
    let (t, v) = (q(&s.table), q(&pass_through(&s.table)));
    let cols = physical(s);
    let list = cols.iter().map(|c| q(c)).collect::<Vec<_>>().join(", ");
    let news = cols
        .iter()
        .map(|c| format!("NEW.{}", q(c)))
        .collect::<Vec<_>>()
        .join(", ");
    let sets = cols
        .iter()
        .map(|c| format!("{} = NEW.{}", q(c), q(c)))
        .collect::<Vec<_>>()
        .join(", ");
    let by_key = s
        .key
        .iter()
        .map(|k| format!("{} = OLD.{}", q(k), q(k)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let trigger = |what: &str| q(&format!("{}_{what}", pass_through(&s.table)));
    vec![
        format!("CREATE VIEW {v} AS SELECT {list} FROM {t}"),
        format!("CREATE TRIGGER {} INSTEAD OF INSERT ON {v} BEGIN INSERT INTO {t} ({list}) VALUES ({news}); END", trigger("insert")),
        format!("CREATE TRIGGER {} INSTEAD OF UPDATE ON {v} BEGIN UPDATE {t} SET {sets} WHERE {by_key}; END", trigger("update")),
        format!("CREATE TRIGGER {} INSTEAD OF DELETE ON {v} BEGIN DELETE FROM {t} WHERE {by_key}; END", trigger("delete")),
    ]
}

/// The default of physical column `p` of `table` while both versions are
/// served: the catalog's, an added column's, or a shadow's (translated).
fn default_of(
    cat: &Catalog,
    ops: &[Op],
    changed: &[Changed],
    table: &str,
    p: &str,
) -> Option<String> {
    if let Some(ch) = changed
        .iter()
        .find(|c| c.table.eq_ignore_ascii_case(table) && c.shadow.eq_ignore_ascii_case(p))
    {
        let d = ch.shadow_default();
        return (!d.is_empty()).then(|| d.trim_start_matches(" DEFAULT ").to_string());
    }
    if let Some(c) = cat.table(table).and_then(|t| t.column(p)) {
        return c.default.clone();
    }
    ops.iter().find_map(|op| match op {
        Op::AddColumn {
            column, default, ..
        } if column.eq_ignore_ascii_case(p)
            && op.tables().iter().any(|t| t.eq_ignore_ascii_case(table)) =>
        {
            default.clone()
        }
        _ => None,
    })
}

/// What a connection runs to see table `s` at the new version. An insert
/// that leaves a column out gets its default; an update writes a changed
/// column's old twin only when the new value changed.
fn connect(
    e: &dyn Engine,
    s: &Shape,
    changed: &[Changed],
    derived: &[super::Derived],
    default_of: &dyn Fn(&str) -> Option<String>,
) -> Vec<String> {
    let q = |n: &str| e.quote(n);
    let t = &s.table;
    // The new version's name for an old column (the changed one keeps its name).
    let new_name = |old: &str| {
        s.new
            .iter()
            .find(|(_, p)| p.eq_ignore_ascii_case(old))
            .map_or_else(|| old.to_string(), |(n, _)| n.clone())
    };
    let mine: Vec<&Changed> = changed
        .iter()
        .filter(|c| c.table.eq_ignore_ascii_case(t))
        .collect();
    // Each physical column written, and its value from the new version's row.
    let mut writes: Vec<(String, String)> = s
        .new
        .iter()
        .map(|(n, p)| (p.clone(), format!("NEW.{}", q(n))))
        .collect();
    let mut updates = writes.clone();
    for ch in &mine {
        let new_value = format!("NEW.{}", q(&ch.column));
        let down = ch.down_of(e, &new_value, &new_name);
        updates.push((
            ch.column.clone(),
            format!(
                "CASE WHEN {new_value} IS NOT OLD.{} THEN ({down}) ELSE {} END",
                q(&ch.column),
                q(&ch.column)
            ),
        ));
        writes.push((ch.column.clone(), down));
    }
    // A dropped column the new version's rows compute (`down`).
    for d in derived
        .iter()
        .filter(|d| d.for_new && d.table.eq_ignore_ascii_case(t))
    {
        writes.push((d.column.clone(), d.value_new.clone()));
        updates.push((d.column.clone(), d.value_new.clone()));
    }
    let inserts: Vec<(String, String)> = writes
        .iter()
        .map(|(p, v)| match default_of(p) {
            Some(d) => (p.clone(), format!("COALESCE({v}, {d})")),
            None => (p.clone(), v.clone()),
        })
        .collect();
    let list = s
        .new
        .iter()
        .map(|(n, p)| {
            if n == p {
                q(p)
            } else {
                format!("{} AS {}", q(p), q(n))
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let by_key = s
        .key
        .iter()
        .map(|k| format!("{} = OLD.{}", q(k), q(&new_name(k))))
        .collect::<Vec<_>>()
        .join(" AND ");
    let trigger = |what: &str| q(&format!("instar_{t}_{what}"));
    vec![
        format!("DROP VIEW IF EXISTS temp.{}", q(t)),
        format!("CREATE TEMP VIEW {} AS SELECT {list} FROM main.{}", q(t), q(t)),
        format!(
            "CREATE TEMP TRIGGER {} INSTEAD OF INSERT ON {} BEGIN INSERT INTO {} ({}) VALUES ({}); END",
            trigger("insert"),
            q(t),
            q(&pass_through(t)),
            inserts.iter().map(|(p, _)| q(p)).collect::<Vec<_>>().join(", "),
            inserts.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>().join(", ")
        ),
        format!(
            "CREATE TEMP TRIGGER {} INSTEAD OF UPDATE ON {} BEGIN UPDATE {} SET {} WHERE {by_key}; END",
            trigger("update"),
            q(t),
            q(&pass_through(t)),
            updates.iter().map(|(p, v)| format!("{} = {v}", q(p))).collect::<Vec<_>>().join(", ")
        ),
        format!(
            "CREATE TEMP TRIGGER {} INSTEAD OF DELETE ON {} BEGIN DELETE FROM {} WHERE {by_key}; END",
            trigger("delete"),
            q(t),
            q(&pass_through(t))
        ),
    ]
}
