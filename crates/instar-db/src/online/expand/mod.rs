//! Expand/contract: an online migration's ops compiled so that the schema
//! before it (the *old* version) and after it (the *new* one) are served at
//! once: what is added sits beside what is there, a changed column gets a
//! shadow column kept in step by triggers and filled by a batched backfill,
//! and each version reads and writes through its own projection. `complete`
//! contracts to the new version alone; `rollback` removes it, losing no write
//! made through either.

mod columns;
mod mysql;
pub(crate) mod postgres;
mod sqlite;
mod walk;

pub(crate) use columns::{derived, Changed, Derived};

use instar_core::online::Op;
use serde::{Deserialize, Serialize};

use super::Catalog;
use crate::engine::Engine;

/// One changed column's backfill: `UPDATE table SET set WHERE {batch}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Fill {
    /// The table walked.
    pub table: String,
    /// Its primary key.
    pub key: Vec<String>,
    /// The `UPDATE … WHERE {batch}`.
    pub statement: String,
}

/// A query returning rows that break a rule, with what the rule is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Probe {
    /// What it checks.
    pub what: String,
    /// The query.
    pub sql: String,
    /// The op declares the change lossy: found rows are reported, not refused.
    pub lossy: bool,
}

/// Everything `start`, `complete` and `rollback` run, compiled once at `start`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Expansion {
    /// The version served as it was.
    pub old_version: String,
    /// The version the migration brings.
    pub new_version: String,
    /// Where each version's views live (PostgreSQL schemas); empty where the
    /// engine serves versions otherwise.
    pub old_schema: String,
    /// The new version's.
    pub new_schema: String,
    /// Run first, in one transaction where the engine can.
    pub expand: Vec<String>,
    /// Run after it, each by itself (concurrent index builds).
    pub expand_outside: Vec<String>,
    /// The backfills of changed columns.
    pub fills: Vec<Fill>,
    /// The version views, made with the expansion (rows the backfill has not
    /// reached yet read `NULL` in a changed column at the new version).
    pub views: Vec<String>,
    /// What `complete` runs (one transaction where the engine can).
    pub contract: Vec<String>,
    /// What `rollback` runs.
    pub rollback: Vec<String>,
    /// Before `start`: rows whose changed value does not come back.
    pub round_trips: Vec<Probe>,
    /// Before `complete`: rows where the two versions disagree.
    pub in_sync: Vec<Probe>,
    /// SQLite: what a connection runs to see the new version (TEMP views and triggers).
    pub connect_new: Vec<String>,
}

impl Expansion {
    /// An expansion with nothing to run yet.
    pub(crate) fn new(
        old_version: &str,
        new_version: &str,
        old_schema: String,
        new_schema: String,
    ) -> Expansion {
        Expansion {
            old_version: old_version.into(),
            new_version: new_version.into(),
            old_schema,
            new_schema,
            expand: Vec::new(),
            expand_outside: Vec::new(),
            fills: Vec::new(),
            views: Vec::new(),
            contract: Vec::new(),
            rollback: Vec::new(),
            round_trips: Vec::new(),
            in_sync: Vec::new(),
            connect_new: Vec::new(),
        }
    }
}

/// A table as each version sees it: (name the version uses, physical column).
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pub table: String,
    pub key: Vec<String>,
    pub old: Vec<(String, String)>,
    pub new: Vec<(String, String)>,
}

/// The name of the shadow column standing for `column` at the new version.
pub(crate) fn shadow(column: &str) -> String {
    format!("_instar_new_{column}")
}

/// `expr` with each identifier that `map` names replaced (not inside a
/// string literal, not a function name).
pub(crate) fn substitute(expr: &str, map: &dyn Fn(&str) -> Option<String>) -> String {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let end = chars[i + 1..]
                .iter()
                .position(|x| *x == '\'')
                .map_or(chars.len() - 1, |p| i + 1 + p);
            out.extend(&chars[i..=end]);
            i = end + 1;
        } else if c == '"' || c == '`' {
            let end = chars[i + 1..]
                .iter()
                .position(|x| *x == c)
                .map_or(chars.len() - 1, |p| i + 1 + p);
            let inner: String = chars[i + 1..end].iter().collect();
            match map(&inner) {
                Some(r) => out.push_str(&r),
                None => out.extend(&chars[i..=end]),
            }
            i = end + 1;
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let call = chars[i..].iter().find(|x| !x.is_whitespace()) == Some(&'(');
            let qualified = start > 0 && chars[start - 1] == '.';
            match map(&word).filter(|_| !call && !qualified) {
                Some(r) => out.push_str(&r),
                None => out.push_str(&word),
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The ops as the engine serves them at two versions, or why it cannot.
pub(crate) fn expansion(
    e: &dyn Engine,
    dialect: instar_core::Dialect,
    ops: &[Op],
    cat: &Catalog,
    old_version: &str,
    new_version: &str,
    base_schema: &str,
) -> Result<Expansion, String> {
    let shapes = shapes(ops, cat)?;
    match dialect {
        instar_core::Dialect::Postgres => {
            postgres::expansion(e, ops, cat, &shapes, old_version, new_version, base_schema)
        }
        instar_core::Dialect::Sqlite => {
            sqlite::expansion(e, ops, cat, &shapes, old_version, new_version)
        }
        instar_core::Dialect::MySql => {
            mysql::expansion(e, ops, cat, &shapes, old_version, new_version, base_schema)
        }
    }
}

/// Each table the ops change, as each version sees it; refuses an op that
/// cannot be served at two versions, and two ops on one column.
fn shapes(ops: &[Op], cat: &Catalog) -> Result<Vec<Shape>, String> {
    let mut shapes: Vec<Shape> = Vec::new();
    let mut touched: Vec<(String, String)> = Vec::new();
    for op in ops {
        let (table, column) = match op {
            Op::AddColumn {
                column,
                not_null,
                default,
                ..
            } => {
                added_to(op, cat)?;
                if *not_null && default.is_none() {
                    return Err(format!(
                        "column {column} is NOT NULL without a default, so the old version's inserts (which do not know it) would fail; give it a default"
                    ));
                }
                (op.tables().join(","), column.clone())
            }
            Op::DropColumn { table, column, .. } | Op::RenameColumn { table, column, .. } => {
                cat.need_column(table, column)?;
                refuse_key(cat, table, column)?;
                (table.clone(), column.clone())
            }
            Op::AlterColumn { table, column, .. } => {
                let c = cat.need_column(table, column)?;
                refuse_key(cat, table, column)?;
                // Complete drops the old column: what hangs on it would go with it.
                if let Some(d) = cat.need(table)?.extras.iter().find(|d| mentions(d, column)) {
                    return Err(format!(
                        "{table}.{column} is used by `{d}`, which completing would drop with the old column; drop it in a migration before this one (and make it again after), or change the column plainly with `instar up`"
                    ));
                }
                if c.default.as_deref().is_some_and(|d| {
                    let d = d.to_ascii_lowercase();
                    d.contains("nextval") || d.contains("auto_increment")
                }) {
                    return Err(format!(
                        "{table}.{column} takes its values from a sequence, which completing would drop; change it plainly with `instar up`"
                    ));
                }
                (table.clone(), column.clone())
            }
            Op::CreateIndex { table, .. } => {
                cat.need(table)?;
                continue;
            }
            other => {
                return Err(format!(
                    "{} is not served at two versions yet (add_column, drop_column, rename_column, alter_column and create_index are); run this migration plainly with `instar up`",
                    other.name()
                ))
            }
        };
        refuse_cascaded(op, cat)?;
        if touched
            .iter()
            .any(|(t, c)| *t == table && c.eq_ignore_ascii_case(&column))
        {
            return Err(format!(
                "{table}.{column} is changed by two ops of this migration; served at two versions, each column changes once per migration (split it in two migrations)"
            ));
        }
        touched.push((table, column));
        let tables = match op {
            Op::AddColumn { .. } => added_to(op, cat)?,
            _ => op.tables(),
        };
        for t in tables {
            if shapes.iter().any(|s| s.table.eq_ignore_ascii_case(t)) {
                continue;
            }
            let info = cat.need(t)?;
            let cols: Vec<(String, String)> = info
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.name.clone()))
                .collect();
            if info.key.is_empty() {
                return Err(format!(
                    "table {t} has no primary key, which the backfill walks and the version views keep"
                ));
            }
            shapes.push(Shape {
                table: info.name.clone(),
                key: info.key.clone(),
                old: cols.clone(),
                new: cols,
            });
        }
    }
    Ok(shapes)
}

/// The tables an `add_column` adds to: each it names, less those it may skip
/// (`skip_missing_table`: not there; `if_not_exists`: has the column).
pub(crate) fn added_to<'o>(op: &'o Op, cat: &Catalog) -> Result<Vec<&'o str>, String> {
    let Op::AddColumn {
        column,
        if_not_exists,
        skip_missing_table,
        ..
    } = op
    else {
        return Ok(op.tables());
    };
    let mut out = Vec::new();
    for t in op.tables() {
        match cat.table(t) {
            None if *skip_missing_table => {}
            None => {
                return Err(format!(
                    "table {t} does not exist; add skip_missing_table = true to skip such tables"
                ))
            }
            Some(info) if info.column(column).is_some() => {
                if !*if_not_exists {
                    return Err(format!(
                        "table {t} already has a column {column}; add if_not_exists = true to skip such tables"
                    ));
                }
            }
            Some(_) => out.push(t),
        }
    }
    Ok(out)
}

/// Refuses an op whose values the sync triggers compute from a column that a
/// foreign key's action writes without firing them (MariaDB): the computed
/// column would keep a stale value for every row the action changes.
fn refuse_cascaded(op: &Op, cat: &Catalog) -> Result<(), String> {
    let (table, column, exprs): (&str, &str, Vec<&str>) = match op {
        Op::AddColumn { column, up, .. } => match (op.tables().first(), up) {
            (Some(t), Some(up)) => (t, column, vec![up.as_str()]),
            _ => return Ok(()),
        },
        Op::DropColumn {
            table,
            column,
            down: Some(down),
        } => (table, column, vec![down.as_str()]),
        Op::AlterColumn {
            table,
            column,
            up,
            down,
            ..
        } => {
            let mut e = vec![column.as_str()];
            e.extend(up.iter().chain(down).map(String::as_str));
            (table, column, e)
        }
        _ => return Ok(()),
    };
    for t in op.tables() {
        let Some(info) = cat.table(t) else { continue };
        for (col, fk) in &info.cascaded {
            if exprs.iter().any(|e| mentions(e, col)) {
                return Err(format!(
                    "{table}.{column} is computed from {t}.{col}, which {fk} changes without firing triggers (MariaDB runs foreign key actions below them), so rows it changes would keep a stale value; change it plainly with `instar up`, or make the foreign key ON UPDATE/ON DELETE RESTRICT for the migration"
                ));
            }
        }
    }
    Ok(())
}

/// A key column stays as it is: both versions match rows by it.
fn refuse_key(cat: &Catalog, table: &str, column: &str) -> Result<(), String> {
    if cat
        .need(table)?
        .key
        .iter()
        .any(|k| k.eq_ignore_ascii_case(column))
    {
        return Err(format!(
            "{table}.{column} is part of the primary key, which both versions match rows by; change it plainly with `instar up`"
        ));
    }
    Ok(())
}

/// Whether SQL text `d` names identifier `column` (as a word, not in a string).
pub(crate) fn mentions(d: &str, column: &str) -> bool {
    substitute(d, &|w| {
        w.eq_ignore_ascii_case(column).then(|| "\u{0}".to_string())
    }) != d
}

/// Undo statements in reverse op order: `marks[i]` is where op i's begin in
/// `rollback` (what precedes the first mark stays first).
pub(crate) fn reverse_ops(rollback: &mut Vec<String>, marks: &[usize]) {
    let Some(&first) = marks.first() else {
        return;
    };
    let mut chunks: Vec<Vec<String>> = Vec::new();
    let mut ends: Vec<usize> = marks[1..].to_vec();
    ends.push(rollback.len());
    for (start, end) in marks.iter().zip(ends) {
        chunks.push(rollback[*start..end].to_vec());
    }
    rollback.truncate(first);
    rollback.extend(chunks.into_iter().rev().flatten());
}

impl Shape {
    /// The new version's name for physical column `p`… and back.
    pub(crate) fn rename_new(&mut self, from: &str, to: &str) {
        if let Some(x) = self
            .new
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(from))
        {
            x.0 = to.to_string();
        }
    }
}

/// How an engine writes the statements every engine serves alike: its name
/// for a base table, and the guards (`IF NOT EXISTS` / `IF EXISTS`) it has
/// and needs for adding a column, undoing it, and dropping one at complete.
pub(crate) struct Flavor<'a> {
    pub e: &'a dyn Engine,
    pub table: &'a dyn Fn(&str) -> String,
    pub add_if: &'static str,
    pub undo_if: &'static str,
    pub drop_if: &'static str,
    /// Whether a column's default can be set after it is added (not SQLite).
    pub set_default: bool,
}

impl Flavor<'_> {
    /// `add_column` on each of its tables: the column beside the old ones,
    /// seen by the new version only; rollback drops it.
    pub(crate) fn add_columns(
        &self,
        op: &Op,
        cat: &Catalog,
        shapes: &mut [Shape],
        x: &mut Expansion,
    ) -> Result<(), String> {
        let Op::AddColumn {
            column,
            ty,
            default,
            not_null,
            up,
            ..
        } = op
        else {
            unreachable!("add_column only")
        };
        for t in added_to(op, cat)? {
            // A computed column is added empty (a default would fill every
            // existing row, and the backfill fills only empty ones), its default set after.
            let later = up.is_some() && default.is_some();
            let col = crate::online::Col {
                name: column.clone(),
                ty: ty.clone(),
                not_null: *not_null,
                default: if later { None } else { default.clone() },
            };

            x.expand.push(format!(
                "ALTER TABLE {} ADD COLUMN{} {}",
                (self.table)(t),
                self.add_if,
                crate::online::column_sql(self.e, &col)
            ));
            if later && self.set_default {
                x.expand.push(format!(
                    "ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}",
                    (self.table)(t),
                    self.e.quote(column),
                    default.as_deref().unwrap_or("NULL")
                ));
            }
            x.rollback.push(format!(
                "ALTER TABLE {} DROP COLUMN{} {}",
                (self.table)(t),
                self.undo_if,
                self.e.quote(column)
            ));
            shape_of(shapes, t)
                .new
                .push((column.clone(), column.clone()));
        }
        Ok(())
    }

    /// `rename_column`: the new version's name for the column; the physical
    /// rename at complete (the returned statement).
    pub(crate) fn rename_column(
        &self,
        table: &str,
        column: &str,
        to: &str,
        shapes: &mut [Shape],
    ) -> String {
        shape_of(shapes, table).rename_new(column, to);
        let q = |s: &str| self.e.quote(s);
        format!(
            "ALTER TABLE {} RENAME COLUMN {} TO {}",
            (self.table)(table),
            q(column),
            q(to)
        )
    }

    /// `drop_column`: hidden from the new version, dropped at complete (the
    /// returned statement). A `NOT NULL` column without a default is refused:
    /// rows written at the new version could not be stored.
    pub(crate) fn drop_column(
        &self,
        cat: &Catalog,
        table: &str,
        column: &str,
        down: &Option<String>,
        shapes: &mut [Shape],
    ) -> Result<String, String> {
        let c = cat.need_column(table, column)?;
        if c.not_null && c.default.is_none() && down.is_none() {
            return Err(format!("{table}.{column} is NOT NULL without a default, so rows written at the new version (which does not have it) could not be stored; give it a default first, say how the new version's rows compute it (`down`), or drop it plainly with `instar up`"));
        }
        shape_of(shapes, table)
            .new
            .retain(|(n, _)| !n.eq_ignore_ascii_case(column));
        Ok(format!(
            "ALTER TABLE {} DROP COLUMN{} {}",
            (self.table)(table),
            self.drop_if,
            self.e.quote(column)
        ))
    }
}

/// `create` (`CREATE VIEW`, `CREATE OR REPLACE VIEW`) a view `schema.table`
/// over `base_table` with columns `(name the version uses, physical column)`.
pub(crate) fn view(
    e: &dyn Engine,
    create: &str,
    schema: &str,
    base_table: &str,
    table: &str,
    cols: &[(String, String)],
) -> String {
    let list = cols
        .iter()
        .map(|(name, p)| {
            if name == p {
                e.quote(p)
            } else {
                format!("{} AS {}", e.quote(p), e.quote(name))
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{create} {}.{} AS SELECT {list} FROM {base_table}",
        e.quote(schema),
        e.quote(table)
    )
}

/// A `create_index` op while two versions are served: its name, `UNIQUE ` or
/// nothing, and its columns as the table has them (named as the new version
/// names them in the op).
pub(crate) fn served_index(
    e: &dyn Engine,
    op: &Op,
    shapes: &[Shape],
) -> (String, &'static str, String) {
    let Op::CreateIndex {
        table,
        columns,
        name,
        unique,
    } = op
    else {
        unreachable!("create_index only")
    };
    let n = name
        .clone()
        .unwrap_or_else(|| instar_core::online::made_up_name(table, columns, "idx"));
    let shape = shapes.iter().find(|s| s.table.eq_ignore_ascii_case(table));
    let cols: Vec<String> = columns
        .iter()
        .map(|c| {
            shape
                .and_then(|s| s.new.iter().find(|(v, _)| v.eq_ignore_ascii_case(c)))
                .map_or_else(|| c.clone(), |(_, p)| p.clone())
        })
        .collect();
    (
        n,
        if *unique { "UNIQUE " } else { "" },
        crate::online::column_list(e, &cols),
    )
}

/// The shape of `table` (present: [`shapes`] made one per table an op names).
pub(crate) fn shape_of<'a>(shapes: &'a mut [Shape], table: &str) -> &'a mut Shape {
    shapes
        .iter_mut()
        .find(|s| s.table.eq_ignore_ascii_case(table))
        .expect("a shape per table")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_columns_not_functions_or_strings() {
        let map = |w: &str| (w == "price" || w == "name").then(|| format!("NEW.\"{w}\""));
        assert_eq!(
            substitute("round(price * 100) || 'price' || \"name\" || lower(name) || t.price", &map),
            "round(NEW.\"price\" * 100) || 'price' || NEW.\"name\" || lower(NEW.\"name\") || t.price"
        );
    }
}
