//! Ops on PostgreSQL: constraints added `NOT VALID` then validated (a short
//! lock, then a scan that lets writes go on), indexes built `CONCURRENTLY`,
//! `SET NOT NULL` after a validated `CHECK` (no second scan). These cheap
//! forms run statement by statement, each in its own transaction; with
//! `transaction = true` the migration runs in one transaction and uses the
//! plain (blocking) forms.

use instar_core::online::{made_up_name, Op};

use super::{column_list, foreign_key, index_of, Catalog, OnlineDdl, OpSql};
use crate::engine::Engine;

pub(crate) struct PostgresDdl;

impl OnlineDdl for PostgresDdl {
    fn session_probe(&self) -> Option<(&'static str, &'static str)> {
        Some((
            "SET instar.session_probe = 'instar-session-probe'",
            "SELECT current_setting('instar.session_probe', true), pg_backend_pid()::text",
        ))
    }

    fn columns_sql(&self) -> &'static str {
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull::int, pg_get_expr(d.adbin, d.adrelid), COALESCE((SELECT k.n FROM pg_index i, unnest(i.indkey) WITH ORDINALITY k(att, n) WHERE i.indrelid = a.attrelid AND i.indisprimary AND k.att = a.attnum), 0)::int FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum WHERE a.attrelid = to_regclass(quote_ident($1)) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
    }

    /// Indexes and constraints on the table, and foreign keys pointing at it,
    /// as SQL: what a column change must not drop unseen.
    fn extras_sql(&self) -> &'static [&'static str] {
        &["SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i WHERE i.indrelid = to_regclass(quote_ident($1)) UNION ALL SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c WHERE c.contype <> 'p' AND (c.conrelid = to_regclass(quote_ident($1)) OR c.confrelid = to_regclass(quote_ident($1)))"]
    }

    fn op(&self, e: &dyn Engine, op: &Op, cat: &mut Catalog, cheap: bool) -> Result<OpSql, String> {
        let q = |s: &str| e.quote(s);
        let alter = |t: &str| format!("ALTER TABLE {}", q(t));
        let drop_constraint = |t: &str, n: &str| format!("{} DROP CONSTRAINT {}", alter(t), q(n));
        // A constraint added without a scan under the table's lock, then checked
        // while writes go on.
        let validated = |t: &str, n: &str, def: String| -> Vec<String> {
            if cheap {
                vec![
                    format!("{} ADD CONSTRAINT {} {def} NOT VALID", alter(t), q(n)),
                    format!("{} VALIDATE CONSTRAINT {}", alter(t), q(n)),
                ]
            } else {
                vec![format!("{} ADD CONSTRAINT {} {def}", alter(t), q(n))]
            }
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
                cat.need_column(table, column)?;
                let change = |to: &str, using: &Option<String>| {
                    let using = using
                        .as_ref()
                        .map(|u| format!(" USING ({u})"))
                        .unwrap_or_default();
                    format!(
                        "{} ALTER COLUMN {} TYPE {to}{using}",
                        alter(table),
                        q(column)
                    )
                };
                if let Some(c) = cat.table_mut(table).and_then(|t| t.column_mut(column)) {
                    c.ty = ty.clone();
                }
                OpSql {
                    up: vec![change(ty, up)],
                    down: from_type.iter().map(|f| change(f, down)).collect(),
                    summary: format!("change type of {table}.{column} to {ty}"),
                    own_transactions: false,
                }
            }
            Op::SetNotNull { table, column, up } => {
                cat.need_column(table, column)?;
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
                let name = made_up_name(table, std::slice::from_ref(column), "not_null");
                if cheap {
                    stmts.extend(validated(
                        table,
                        &name,
                        format!("CHECK ({} IS NOT NULL)", q(column)),
                    ));
                }
                stmts.push(format!(
                    "{} ALTER COLUMN {} SET NOT NULL",
                    alter(table),
                    q(column)
                ));
                if cheap {
                    stmts.push(drop_constraint(table, &name));
                }
                OpSql {
                    up: stmts,
                    down: vec![format!(
                        "{} ALTER COLUMN {} DROP NOT NULL",
                        alter(table),
                        q(column)
                    )],
                    summary: format!("set {table}.{column} not null"),
                    own_transactions: cheap,
                }
            }
            Op::AddUnique {
                table,
                columns,
                name,
            } => {
                let (n, _, summary) = index_of(cat, table, columns, name, true, "key")?;
                let cols = column_list(e, columns);
                let up = if cheap {
                    vec![
                        format!(
                            "CREATE UNIQUE INDEX CONCURRENTLY {} ON {} ({cols})",
                            q(&n),
                            q(table)
                        ),
                        format!(
                            "{} ADD CONSTRAINT {n2} UNIQUE USING INDEX {n2}",
                            alter(table),
                            n2 = q(&n)
                        ),
                    ]
                } else {
                    vec![format!(
                        "{} ADD CONSTRAINT {} UNIQUE ({cols})",
                        alter(table),
                        q(&n)
                    )]
                };
                OpSql {
                    up,
                    down: vec![drop_constraint(table, &n)],
                    summary,
                    own_transactions: cheap,
                }
            }
            Op::AddCheck { table, name, check } => {
                cat.need(table)?;
                OpSql {
                    up: validated(table, name, format!("CHECK ({check})")),
                    down: vec![drop_constraint(table, name)],
                    summary: format!("check {name} on {table}"),
                    own_transactions: cheap,
                }
            }
            Op::AddForeignKey {
                table, references, ..
            } => {
                let (n, def) = foreign_key(e, op, cat)?;
                OpSql {
                    up: validated(table, &n, def),
                    down: vec![drop_constraint(table, &n)],
                    summary: format!("foreign key {n}: {table} → {references}"),
                    own_transactions: cheap,
                }
            }
            Op::CreateIndex {
                table,
                columns,
                name,
                unique,
            } => {
                let (n, u, summary) = index_of(cat, table, columns, name, *unique, "idx")?;
                let how = if cheap { " CONCURRENTLY" } else { "" };
                OpSql {
                    up: vec![format!(
                        "CREATE {u}INDEX{how} {} ON {} ({})",
                        q(&n),
                        q(table),
                        column_list(e, columns)
                    )],
                    down: vec![format!("DROP INDEX {}", q(&n))],
                    summary,
                    own_transactions: cheap,
                }
            }
            Op::DropIndex { name, .. } => OpSql {
                up: vec![format!(
                    "DROP INDEX{} {}",
                    if cheap { " CONCURRENTLY" } else { "" },
                    q(name)
                )],
                down: Vec::new(),
                summary: format!("drop index {name}"),
                own_transactions: cheap,
            },
            other => return Err(format!("{} is not compiled here", other.name())),
        })
    }
}
