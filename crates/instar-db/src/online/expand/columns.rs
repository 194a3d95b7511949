//! The columns one version computes from the other's: a changed column's
//! shadow (`alter_column`'s `up`/`down`), and columns derived from the row
//! (`add_column`'s `up`, `drop_column`'s `down`), with their backfills and checks.

use instar_core::online::Op;

use super::{added_to, mentions, shadow, substitute, Expansion, Fill, Probe, Shape};
use crate::engine::Engine;
use crate::online::Catalog;

/// An `alter_column` op resolved against the catalog: its shadow column and
/// both expressions (default: casts to the new type and back).
#[derive(Debug, Clone)]
pub(crate) struct Changed {
    pub table: String,
    pub column: String,
    pub shadow: String,
    pub ty: String,
    pub up: String,
    pub down: String,
    pub lossy: bool,
    pub key: Vec<String>,
    /// The table's columns before the migration.
    pub cols: Vec<String>,
    pub was_not_null: bool,
    /// The old column's default, as SQL.
    pub default: Option<String>,
    /// It holds JSON documents (a `lens` op): compared as JSON values.
    pub json: bool,
}

impl Changed {
    pub(crate) fn of(e: &dyn Engine, op: &Op, cat: &Catalog) -> Result<Changed, String> {
        let Op::AlterColumn {
            table,
            column,
            ty,
            up,
            down,
            lossy,
            lens,
            ..
        } = op
        else {
            unreachable!("alter_column only")
        };
        let t = cat.need(table)?;
        let old = cat.need_column(table, column)?;
        let q = |s: &str| e.quote(s);
        Ok(Changed {
            table: t.name.clone(),
            column: old.name.clone(),
            shadow: shadow(&old.name),
            ty: ty.clone(),
            up: up
                .clone()
                .unwrap_or_else(|| format!("CAST({} AS {ty})", q(column))),
            down: down
                .clone()
                .unwrap_or_else(|| format!("CAST({} AS {})", q(column), old.ty)),
            lossy: *lossy,
            key: t.key.clone(),
            cols: t.columns.iter().map(|c| c.name.clone()).collect(),
            was_not_null: old.not_null,
            default: old.default.clone(),
            json: lens.is_some(),
        })
    }

    /// The table's columns `up` reads (the changed one among them, usually).
    pub(crate) fn up_cols(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for c in &self.cols {
            if mentions(&self.up, c) && !out.contains(c) {
                out.push(c.clone());
            }
        }
        if !out.iter().any(|c| c.eq_ignore_ascii_case(&self.column)) {
            out.push(self.column.clone());
        }
        out
    }

    /// The shadow column's default: the old column's, translated by `up`.
    pub(crate) fn shadow_default(&self) -> String {
        match &self.default {
            Some(d) => format!(
                " DEFAULT ({})",
                substitute(&self.up, &|w| w
                    .eq_ignore_ascii_case(&self.column)
                    .then(|| format!("({d})")))
            ),
            None => String::new(),
        }
    }

    fn col(&self, w: &str) -> Option<String> {
        self.cols
            .iter()
            .find(|c| c.eq_ignore_ascii_case(w))
            .cloned()
    }

    /// `up` over the written row (`NEW."col"`).
    pub(crate) fn up_of_new(&self, e: &dyn Engine) -> String {
        substitute(&self.up, &|w| {
            self.col(w).map(|c| format!("NEW.{}", e.quote(&c)))
        })
    }

    /// `down` over a written row whose changed column holds the new value in
    /// `new_value` (and every other column as `NEW."col"`, named by `name`).
    pub(crate) fn down_of(
        &self,
        e: &dyn Engine,
        new_value: &str,
        name: &dyn Fn(&str) -> String,
    ) -> String {
        substitute(&self.down, &|w| {
            self.col(w).map(|c| {
                if c.eq_ignore_ascii_case(&self.column) {
                    new_value.to_string()
                } else {
                    format!("NEW.{}", e.quote(&name(&c)))
                }
            })
        })
    }

    /// The backfill of `base_table` (as the engine names it).
    pub(crate) fn fill(&self, e: &dyn Engine, base_table: &str) -> Fill {
        Fill {
            table: self.table.clone(),
            key: self.key.clone(),
            statement: format!(
                "UPDATE {base_table} SET {s} = ({}) WHERE {{batch}} AND {s} IS NULL",
                self.up,
                s = e.quote(&self.shadow)
            ),
        }
    }

    /// Before `start`: rows (of a sample) that do not come back down; before
    /// `complete`: rows whose new-version value is not the old one translated.
    pub(crate) fn probes(&self, e: &dyn Engine, base_table: &str) -> (Probe, Probe) {
        // MariaDB has no IS DISTINCT FROM; NOT (a <=> b) says the same.
        let distinct = |a: &str, b: &str| {
            if self.json {
                format!("NOT ({})", e.json().same(a, b))
            } else if e.quote("x").starts_with('`') {
                format!("NOT ({a} <=> {b})")
            } else {
                format!("{a} IS DISTINCT FROM {b}")
            }
        };
        let q = |s: &str| e.quote(s);
        let key_text = self
            .key
            .iter()
            .map(|k| format!("CAST({} AS {})", q(k), e.text_type()))
            .collect::<Vec<_>>()
            .join(" || ',' || ");
        let text = e.text_type();
        let c = q(&self.column);
        let back = substitute(&self.down, &|w| {
            w.eq_ignore_ascii_case(&self.column)
                .then(|| format!("({})", self.up))
        });
        let (table, column, up, s) = (&self.table, &self.column, &self.up, q(&self.shadow));
        (
            Probe {
                what: format!("{table}.{column}: down(up(x)) = x"),
                sql: format!(
                    "SELECT {key_text}, CAST({c} AS {text}), CAST(({up}) AS {text}) FROM (SELECT * FROM {base_table} LIMIT 10000) s WHERE {} LIMIT 5",
                    distinct(&format!("({back})"), &c)
                ),
                lossy: self.lossy,
            },
            // A row agrees with its last writer: written through the old
            // version, new = up(old); through the new one, old = down(new).
            // A lossy change's values may differ by design, but never be missing.
            Probe {
                what: format!("{table}.{column} and its new-version value"),
                sql: format!(
                    "SELECT {key_text}, CAST({c} AS {text}), CAST({s} AS {text}) FROM {base_table} WHERE {} LIMIT 5",
                    if self.lossy {
                        format!("{s} IS NULL AND ({up}) IS NOT NULL")
                    } else {
                        let down_of_new = substitute(&self.down, &|w| {
                            w.eq_ignore_ascii_case(&self.column).then(|| s.clone())
                        });
                        format!(
                            "{} AND {}",
                            distinct(&s, &format!("({up})")),
                            distinct(&c, &format!("({down_of_new})"))
                        )
                    }
                ),
                lossy: false,
            },
        )
    }
}

/// A column one version computes from the row while the other writes it: an
/// added column's `up` (for the old version's writes and the rows already
/// there), a dropped column's `down` (for the new version's writes).
#[derive(Debug, Clone)]
pub(crate) struct Derived {
    pub table: String,
    pub key: Vec<String>,
    /// The physical column computed.
    pub column: String,
    /// The expression over the written base row (`NEW."physical"`).
    pub value: String,
    /// The expression over the new version's row (`NEW."name"`, SQLite's TEMP triggers).
    pub value_new: String,
    /// The expression over the table's own columns (the backfill).
    pub plain: String,
    /// Physical columns whose change recomputes it.
    pub watched: Vec<String>,
    /// Computed for the new version's writes; else for the old version's.
    pub for_new: bool,
}

/// Every column the ops derive, once the shapes are final.
pub(crate) fn derived(
    e: &dyn Engine,
    ops: &[Op],
    cat: &Catalog,
    shapes: &[Shape],
) -> Result<Vec<Derived>, String> {
    let q = |s: &str| e.quote(s);
    let mut out = Vec::new();
    for op in ops {
        match op {
            Op::AddColumn {
                column,
                up: Some(up),
                ..
            } => {
                for t in added_to(op, cat)? {
                    let info = cat.need(t)?;
                    let cols: Vec<String> = info.columns.iter().map(|c| c.name.clone()).collect();
                    let find = |w: &str| cols.iter().find(|c| c.eq_ignore_ascii_case(w)).cloned();
                    out.push(Derived {
                        table: info.name.clone(),
                        key: info.key.clone(),
                        column: column.clone(),
                        value: substitute(up, &|w| find(w).map(|c| format!("NEW.{}", q(&c)))),
                        value_new: String::new(),
                        plain: up.clone(),
                        watched: cols.iter().filter(|c| mentions(up, c)).cloned().collect(),
                        for_new: false,
                    });
                }
            }
            Op::DropColumn {
                table,
                column,
                down: Some(down),
            } => {
                let s = shapes
                    .iter()
                    .find(|s| s.table.eq_ignore_ascii_case(table))
                    .ok_or_else(|| format!("table {table} does not exist"))?;
                let find = |w: &str| {
                    s.new
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(w))
                        .cloned()
                };
                out.push(Derived {
                    table: s.table.clone(),
                    key: s.key.clone(),
                    column: column.clone(),
                    value: substitute(down, &|w| find(w).map(|(_, p)| format!("NEW.{}", q(&p)))),
                    value_new: substitute(down, &|w| {
                        find(w).map(|(n, _)| format!("NEW.{}", q(&n)))
                    }),
                    plain: down.clone(),
                    watched: s
                        .new
                        .iter()
                        .filter(|(n, _)| mentions(down, n))
                        .map(|(_, p)| p.clone())
                        .collect(),
                    for_new: true,
                });
            }
            _ => {}
        }
    }
    Ok(out)
}

impl Derived {
    /// The backfill of an added column computed from the row, and the check
    /// before `complete` that no row was left without it.
    pub(crate) fn fill(&self, e: &dyn Engine, base_table: &str, x: &mut Expansion) {
        if self.for_new {
            return;
        }
        let c = e.quote(&self.column);
        x.fills.push(Fill {
            table: self.table.clone(),
            key: self.key.clone(),
            statement: format!(
                "UPDATE {base_table} SET {c} = ({}) WHERE {{batch}} AND {c} IS NULL",
                self.plain
            ),
        });
        let key_text = self
            .key
            .iter()
            .map(|k| format!("CAST({} AS {})", e.quote(k), e.text_type()))
            .collect::<Vec<_>>()
            .join(" || ',' || ");
        x.in_sync.push(Probe {
            what: format!("{}.{} (computed by `up`) ", self.table, self.column),
            sql: format!(
                "SELECT {key_text}, 'NULL', CAST(({}) AS {}) FROM {base_table} WHERE {c} IS NULL AND ({}) IS NOT NULL LIMIT 5",
                self.plain,
                e.text_type(),
                self.plain
            ),
            lossy: false,
        });
    }
}
