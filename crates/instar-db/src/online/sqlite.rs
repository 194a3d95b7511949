//! Ops on SQLite: what `ALTER TABLE` can do (add, rename, drop a column;
//! rename a table) it does; a type change, `NOT NULL`, a check or a foreign
//! key rebuild the table by SQLite's documented procedure (a new table, the
//! rows copied, the old one dropped, the new one renamed, its indexes and
//! triggers made again), inside the migration's one transaction.

use instar_core::online::Op;

use super::sqlite_text::{column_item, names_object, not_null, parse, rename_ident, set_type};
use super::{
    column_list, column_sql, foreign_key, index_of, Catalog, Change, OnlineDdl, OpSql, Table,
};
use crate::engine::Engine;

pub(crate) struct SqliteDdl;

impl OnlineDdl for SqliteDdl {
    fn columns_sql(&self) -> &'static str {
        "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?) ORDER BY cid"
    }

    fn read_more<'a>(
        &'a self,
        db: &'a mut crate::Db,
        t: &'a mut Table,
    ) -> crate::engine::DbFuture<'a, ()> {
        Box::pin(async move {
            let name = t.name.clone();
            t.create = db
                .texts(
                    "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE",
                    &name,
                )
                .await?
                .into_iter()
                .next();
            t.extras = db
                .texts(
                    "SELECT sql FROM sqlite_master WHERE type IN ('index', 'trigger') AND tbl_name = ? COLLATE NOCASE AND sql IS NOT NULL ORDER BY type, name",
                    &name,
                )
                .await?;
            t.referenced_by = db
                .texts(
                    "SELECT DISTINCT m.name FROM sqlite_master m, pragma_foreign_key_list(m.name) f WHERE m.type = 'table' AND f.\"table\" = ? COLLATE NOCASE",
                    &name,
                )
                .await?;
            Ok(())
        })
    }

    fn read_settings<'a>(
        &'a self,
        db: &'a mut crate::Db,
        cat: &'a mut Catalog,
    ) -> crate::engine::DbFuture<'a, ()> {
        Box::pin(async move {
            let on = db
                .texts(
                    "SELECT foreign_keys FROM pragma_foreign_keys WHERE ? IS NOT NULL",
                    "1",
                )
                .await?;
            cat.foreign_keys_on = on.first().is_some_and(|v| v == "1");
            Ok(())
        })
    }

    fn track(&self, e: &dyn Engine, t: &mut Table, change: Change<'_>) -> Result<(), String> {
        let Some(create) = &t.create else {
            return Ok(());
        };
        let (mut items, tail) = parse(create)?;
        match change {
            Change::Added(c) => items.push(column_sql(e, c)),
            Change::Dropped(c) => {
                let i = column_item(&items, c)?;
                items.remove(i);
            }
            Change::Renamed(from, to) => {
                items = items
                    .iter()
                    .map(|i| rename_ident(i, from, &e.quote(to)))
                    .collect();
                t.extras = t
                    .extras
                    .iter()
                    .map(|x| rename_ident(x, from, &e.quote(to)))
                    .collect();
            }
        }
        t.create = Some(format!(
            "CREATE TABLE {} ({}){tail}",
            e.quote(&t.name),
            items.join(", ")
        ));
        Ok(())
    }

    fn op(
        &self,
        e: &dyn Engine,
        op: &Op,
        cat: &mut Catalog,
        _cheap: bool,
    ) -> Result<OpSql, String> {
        let q = |s: &str| e.quote(s);
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
                let up_expr = up.clone().unwrap_or_else(|| q(column));
                let stmts = rebuild(
                    e,
                    cat,
                    table,
                    |items| set_type(items, column, ty),
                    (column, &up_expr),
                )?;
                let down_expr = down.clone().unwrap_or_else(|| q(column));
                let back = match from_type {
                    Some(f) => rebuild(
                        e,
                        &mut cat.clone(),
                        table,
                        |items| set_type(items, column, f),
                        (column, &down_expr),
                    )?,
                    None => Vec::new(),
                };
                OpSql {
                    up: stmts,
                    down: back,
                    summary: format!("change type of {table}.{column} to {ty} (table rebuilt)"),
                    own_transactions: false,
                }
            }
            Op::SetNotNull { table, column, up } => {
                cat.need_column(table, column)?;
                let fill = up.as_ref().map(|u| format!("COALESCE({}, {u})", q(column)));
                let expr = fill.clone().unwrap_or_else(|| q(column));
                let stmts = rebuild(
                    e,
                    cat,
                    table,
                    |items| not_null(items, column, true),
                    (column, &expr),
                )?;
                let back = rebuild(
                    e,
                    &mut cat.clone(),
                    table,
                    |items| not_null(items, column, false),
                    (column, &q(column)),
                )?;
                OpSql {
                    up: stmts,
                    down: back,
                    summary: format!("set {table}.{column} not null (table rebuilt)"),
                    own_transactions: false,
                }
            }
            Op::AddCheck { table, name, check } => {
                cat.need(table)?;
                let item = format!("CONSTRAINT {} CHECK ({check})", q(name));
                constraint(
                    e,
                    cat,
                    table,
                    name,
                    item,
                    format!("check {name} on {table} (table rebuilt)"),
                )?
            }
            Op::AddForeignKey {
                table, references, ..
            } => {
                let (n, def) = foreign_key(e, op, cat)?;
                let item = format!("CONSTRAINT {} {def}", q(&n));
                constraint(
                    e,
                    cat,
                    table,
                    &n,
                    item,
                    format!("foreign key {n}: {table} → {references} (table rebuilt)"),
                )?
            }
            Op::AddUnique {
                table,
                columns,
                name,
            } => {
                let (n, _, summary) = index_of(cat, table, columns, name, true, "key")?;
                index(e, cat, table, columns, &n, true, summary)?
            }
            Op::CreateIndex {
                table,
                columns,
                name,
                unique,
            } => {
                let (n, _, summary) = index_of(cat, table, columns, name, *unique, "idx")?;
                index(e, cat, table, columns, &n, *unique, summary)?
            }
            Op::DropIndex { name, table } => {
                if let Some(t) = cat.table_mut(table) {
                    t.extras.retain(|x| !names_object(x, name));
                }
                OpSql {
                    up: vec![format!("DROP INDEX {}", q(name))],
                    down: Vec::new(),
                    summary: format!("drop index {name}"),
                    own_transactions: false,
                }
            }
            other => return Err(format!("{} is not compiled here", other.name())),
        })
    }
}

fn index(
    e: &dyn Engine,
    cat: &mut Catalog,
    table: &str,
    columns: &[String],
    name: &str,
    unique: bool,
    summary: String,
) -> Result<OpSql, String> {
    let t = cat
        .table_mut(table)
        .ok_or_else(|| format!("table {table} does not exist"))?;
    let sql = format!(
        "CREATE {}INDEX {} ON {} ({})",
        if unique { "UNIQUE " } else { "" },
        e.quote(name),
        e.quote(table),
        column_list(e, columns)
    );
    t.extras.push(sql.clone());
    Ok(OpSql {
        up: vec![sql],
        down: vec![format!("DROP INDEX {}", e.quote(name))],
        summary,
        own_transactions: false,
    })
}

/// A table constraint added by a rebuild; undone by another.
fn constraint(
    e: &dyn Engine,
    cat: &mut Catalog,
    table: &str,
    name: &str,
    item: String,
    summary: String,
) -> Result<OpSql, String> {
    let up = rebuild(
        e,
        cat,
        table,
        |items| {
            items.push(item);
            Ok(())
        },
        ("", ""),
    )?;
    let down = rebuild(
        e,
        &mut cat.clone(),
        table,
        |items| {
            items.retain(|i| !names_object(i, name));
            Ok(())
        },
        ("", ""),
    )?;
    Ok(OpSql {
        up,
        down,
        summary,
        own_transactions: false,
    })
}

/// The statements rebuilding `table` with its column definitions and
/// constraints changed by `change`; `computed` gives one column a new value
/// (`(column, expression)`; `("", "")` for none). `cat` is updated.
fn rebuild(
    e: &dyn Engine,
    cat: &mut Catalog,
    table: &str,
    change: impl FnOnce(&mut Vec<String>) -> Result<(), String>,
    computed: (&str, &str),
) -> Result<Vec<String>, String> {
    let refused_with_fk = cat.foreign_keys_on;
    let t = cat
        .table_mut(table)
        .ok_or_else(|| format!("table {table} does not exist"))?;
    if refused_with_fk && !t.referenced_by.is_empty() {
        return Err(format!(
            "rebuilding {table} drops it, and with foreign_keys on that fires the ON DELETE actions of {} (which reference it); run this migration with foreign_keys off (Instar's default for SQLite)",
            t.referenced_by.join(", ")
        ));
    }
    let create = t
        .create
        .clone()
        .ok_or_else(|| format!("the definition of {table} is not known"))?;
    let (mut items, tail) = parse(&create)?;
    change(&mut items)?;
    let temp = format!("{table}__instar_new");
    let body = format!("({}){tail}", items.join(", "));
    let cols: Vec<String> = t.columns.iter().map(|c| e.quote(&c.name)).collect();
    let select: Vec<String> = t
        .columns
        .iter()
        .map(|c| {
            if c.name.eq_ignore_ascii_case(computed.0) {
                format!("{} AS {}", computed.1, e.quote(&c.name))
            } else {
                e.quote(&c.name)
            }
        })
        .collect();
    let mut out = vec![
        format!("CREATE TABLE {} {body}", e.quote(&temp)),
        format!(
            "INSERT INTO {} ({}) SELECT {} FROM {}",
            e.quote(&temp),
            cols.join(", "),
            select.join(", "),
            e.quote(table)
        ),
        format!("DROP TABLE {}", e.quote(table)),
        "PRAGMA legacy_alter_table = ON".to_string(),
        format!(
            "ALTER TABLE {} RENAME TO {}",
            e.quote(&temp),
            e.quote(table)
        ),
        "PRAGMA legacy_alter_table = OFF".to_string(),
    ];
    out.extend(t.extras.iter().cloned());
    t.create = Some(format!("CREATE TABLE {} {body}", e.quote(table)));
    Ok(out)
}
