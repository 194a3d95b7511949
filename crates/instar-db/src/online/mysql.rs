//! Ops on MySQL and MariaDB: every DDL statement commits by itself, so an
//! online migration runs statement by statement with its progress recorded,
//! and resumes the kept statements after a kill. Columns are added with
//! `ALGORITHM=INSTANT` (metadata only) where the column allows it, indexes
//! built `ALGORITHM=INPLACE, LOCK=NONE` (writes go on during the build).

use instar_core::online::Op;

use super::{column_list, column_sql, foreign_key, index_of, Catalog, Col, OnlineDdl, OpSql};
use crate::engine::Engine;

pub(crate) struct MySqlDdl;

/// A default as the catalog reports it, as SQL: MariaDB reports expressions
/// (`'a'`, `NULL`, `current_timestamp()`), MySQL the bare value.
fn default_sql(d: &str) -> Option<String> {
    if d.eq_ignore_ascii_case("NULL") {
        return None;
    }
    let expression = d.starts_with('\'')
        || d.parse::<f64>().is_ok()
        || d.contains('(')
        || d.eq_ignore_ascii_case("CURRENT_TIMESTAMP");
    Some(if expression {
        d.to_string()
    } else {
        format!("'{}'", d.replace('\'', "''"))
    })
}

/// Whether adding `c` can be metadata only: no default, or a literal one.
fn instant(c: &Col) -> bool {
    c.default
        .as_deref()
        .is_none_or(|d| !d.contains('(') && !d.to_ascii_uppercase().contains("CURRENT"))
}

impl OnlineDdl for MySqlDdl {
    fn session_probe(&self) -> Option<(&'static str, &'static str)> {
        Some((
            "SET @instar_session_probe = 'instar-session-probe'",
            "SELECT CAST(@instar_session_probe AS CHAR), CAST(CONNECTION_ID() AS CHAR)",
        ))
    }

    fn columns_sql(&self) -> &'static str {
        "SELECT CAST(c.column_name AS CHAR), CAST(c.column_type AS CHAR), CASE WHEN c.is_nullable = 'NO' THEN 1 ELSE 0 END, CAST(c.column_default AS CHAR), CAST(COALESCE((SELECT k.ordinal_position FROM information_schema.key_column_usage k WHERE k.table_schema = c.table_schema AND k.table_name = c.table_name AND k.column_name = c.column_name AND k.constraint_name = 'PRIMARY'), 0) AS SIGNED) FROM information_schema.columns c WHERE c.table_schema = DATABASE() AND c.table_name = ? ORDER BY c.ordinal_position"
    }

    /// Indexes on the table and foreign keys to it, as text naming their
    /// columns: what a column change must not drop unseen.
    fn extras_sql(&self) -> &'static [&'static str] {
        &[
            "SELECT CAST(CONCAT('INDEX ', index_name, ' (', GROUP_CONCAT(column_name ORDER BY seq_in_index), ')') AS CHAR) FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = ? GROUP BY index_name",
            "SELECT CAST(CONCAT('FOREIGN KEY ', table_name, ' (', column_name, ') REFERENCES ', referenced_table_name, ' (', referenced_column_name, ')') AS CHAR) FROM information_schema.key_column_usage WHERE table_schema = DATABASE() AND referenced_table_name = ?",
        ]
    }

    fn cascades_sql(&self) -> Option<&'static str> {
        // InnoDB runs foreign key actions below the SQL layer: no trigger fires.
        Some(
            "SELECT CAST(CONCAT(k.column_name, CHAR(9), 'foreign key ', k.constraint_name, ' (', k.column_name, ' REFERENCES ', k.referenced_table_name, ' (', k.referenced_column_name, ') ON UPDATE ', r.update_rule, ' ON DELETE ', r.delete_rule, ')') AS CHAR) \
             FROM information_schema.key_column_usage k JOIN information_schema.referential_constraints r \
             ON r.constraint_schema = k.constraint_schema AND r.constraint_name = k.constraint_name AND r.table_name = k.table_name \
             WHERE k.table_schema = DATABASE() AND k.table_name = ? AND k.referenced_table_name IS NOT NULL \
             AND (r.update_rule IN ('CASCADE', 'SET NULL', 'SET DEFAULT') OR r.delete_rule IN ('SET NULL', 'SET DEFAULT'))",
        )
    }

    fn add_column(&self, e: &dyn Engine, table: &str, col: &Col) -> String {
        format!(
            "ALTER TABLE {} ADD COLUMN {}{}",
            e.quote(table),
            column_sql(e, col),
            if instant(col) {
                ", ALGORITHM=INSTANT"
            } else {
                ""
            }
        )
    }

    fn op(
        &self,
        e: &dyn Engine,
        op: &Op,
        cat: &mut Catalog,
        _cheap: bool,
    ) -> Result<OpSql, String> {
        let q = |s: &str| e.quote(s);
        let alter = |t: &str| format!("ALTER TABLE {}", q(t));
        // MODIFY restates the whole column: its NOT NULL and default are kept.
        let modify = |t: &str, c: &Col| -> String {
            let mut c = c.clone();
            c.default = c.default.as_deref().and_then(default_sql);
            format!("{} MODIFY COLUMN {}", alter(t), column_sql(e, &c))
        };
        Ok(match op {
            Op::AlterColumn {
                table,
                column,
                ty,
                from_type,
                up,
                down,
                ..
            } => {
                if up.is_some() || down.is_some() {
                    return Err("MySQL converts a column's values with its own cast: `up`/`down` expressions are not used by a plain run here (leave them out, or change the column in an sql op)".into());
                }
                let old = cat.need_column(table, column)?.clone();
                let new = Col {
                    ty: ty.clone(),
                    ..old.clone()
                };
                if let Some(c) = cat.table_mut(table).and_then(|t| t.column_mut(column)) {
                    c.ty = ty.clone();
                }
                let back = from_type.as_ref().map(|f| Col {
                    ty: f.clone(),
                    ..old
                });
                OpSql {
                    up: vec![modify(table, &new)],
                    down: back.iter().map(|b| modify(table, b)).collect(),
                    summary: format!("change type of {table}.{column} to {ty}"),
                    own_transactions: false,
                }
            }
            Op::SetNotNull { table, column, up } => {
                let old = cat.need_column(table, column)?.clone();
                let mut stmts: Vec<String> = up
                    .iter()
                    .map(|u| {
                        format!(
                            "UPDATE {} SET {c} = ({u}) WHERE {c} IS NULL",
                            q(table),
                            c = q(column)
                        )
                    })
                    .collect();
                let new = Col {
                    not_null: true,
                    ..old.clone()
                };
                stmts.push(modify(table, &new));
                if let Some(c) = cat.table_mut(table).and_then(|t| t.column_mut(column)) {
                    c.not_null = true;
                }
                OpSql {
                    up: stmts,
                    down: vec![modify(
                        table,
                        &Col {
                            not_null: false,
                            ..old
                        },
                    )],
                    summary: format!("set {table}.{column} not null"),
                    own_transactions: false,
                }
            }
            Op::AddUnique {
                table,
                columns,
                name,
            } => {
                let (n, _, summary) = index_of(cat, table, columns, name, true, "key")?;
                OpSql {
                    up: vec![format!(
                        "{} ADD CONSTRAINT {} UNIQUE ({}), ALGORITHM=INPLACE, LOCK=NONE",
                        alter(table),
                        q(&n),
                        column_list(e, columns)
                    )],
                    down: vec![format!("{} DROP INDEX {}", alter(table), q(&n))],
                    summary,
                    own_transactions: false,
                }
            }
            Op::AddCheck { table, name, check } => {
                cat.need(table)?;
                OpSql {
                    up: vec![format!(
                        "{} ADD CONSTRAINT {} CHECK ({check})",
                        alter(table),
                        q(name)
                    )],
                    down: vec![format!("{} DROP CONSTRAINT {}", alter(table), q(name))],
                    summary: format!("check {name} on {table}"),
                    own_transactions: false,
                }
            }
            Op::AddForeignKey {
                table, references, ..
            } => {
                let (n, def) = foreign_key(e, op, cat)?;
                OpSql {
                    up: vec![format!("{} ADD CONSTRAINT {} {def}", alter(table), q(&n))],
                    down: vec![format!("{} DROP FOREIGN KEY {}", alter(table), q(&n))],
                    summary: format!("foreign key {n}: {table} → {references}"),
                    own_transactions: false,
                }
            }
            Op::CreateIndex {
                table,
                columns,
                name,
                unique,
            } => {
                let (n, u, summary) = index_of(cat, table, columns, name, *unique, "idx")?;
                OpSql {
                    up: vec![format!(
                        "CREATE {u}INDEX {} ON {} ({}) ALGORITHM=INPLACE LOCK=NONE",
                        q(&n),
                        q(table),
                        column_list(e, columns)
                    )],
                    down: vec![format!("DROP INDEX {} ON {}", q(&n), q(table))],
                    summary,
                    own_transactions: false,
                }
            }
            Op::DropIndex { name, table } => OpSql {
                up: vec![format!("DROP INDEX {} ON {}", q(name), q(table))],
                down: Vec::new(),
                summary: format!("drop index {name}"),
                own_transactions: false,
            },
            other => return Err(format!("{} is not compiled here", other.name())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_restated_as_sql() {
        assert_eq!(default_sql("NULL"), None);
        assert_eq!(default_sql("'a'").as_deref(), Some("'a'"));
        assert_eq!(default_sql("it's").as_deref(), Some("'it''s'"));
        assert_eq!(default_sql("3").as_deref(), Some("3"));
        assert_eq!(
            default_sql("current_timestamp()").as_deref(),
            Some("current_timestamp()")
        );
    }
}
