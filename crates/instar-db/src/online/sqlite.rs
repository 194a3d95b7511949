//! Ops on SQLite: what `ALTER TABLE` can do (add, rename, drop a column;
//! rename a table) it does; a type change, `NOT NULL`, a check or a foreign
//! key rebuild the table by SQLite's documented procedure (a new table, the
//! rows copied, the old one dropped, the new one renamed, its indexes and
//! triggers made again), inside the migration's one transaction.

use instar_core::online::Op;

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

/// Whether a constraint item or a `CREATE INDEX` statement names `name`.
fn names_object(text: &str, name: &str) -> bool {
    let words = words(text);
    let n = name.to_ascii_lowercase();
    words
        .iter()
        .take(6)
        .any(|w| unquote(w).to_ascii_lowercase() == n)
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

/// `text` with every identifier `from` (bare or quoted; not inside a string
/// literal) replaced by `to`, as SQLite's `RENAME COLUMN` rewrites a table.
fn rename_ident(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let close = match c {
            '"' | '`' => Some(c),
            '[' => Some(']'),
            '\'' => Some('\''),
            _ => None,
        };
        if let Some(close) = close {
            let end = chars[i + 1..]
                .iter()
                .position(|x| *x == close)
                .map_or(chars.len(), |p| i + 1 + p);
            let inner: String = chars[i + 1..end.min(chars.len())].iter().collect();
            if c != '\'' && inner.eq_ignore_ascii_case(from) {
                out.push_str(to);
            } else {
                out.extend(&chars[i..(end + 1).min(chars.len())]);
            }
            i = end + 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if word.eq_ignore_ascii_case(from) {
                out.push_str(to);
            } else {
                out.push_str(&word);
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Changes column `column`'s type in its definition.
fn set_type(items: &mut [String], column: &str, ty: &str) -> Result<(), String> {
    let i = column_item(items, column)?;
    let w = words(&items[i]);
    let constraints = w
        .iter()
        .skip(1)
        .position(|x| is_constraint_word(x))
        .map(|p| w[p + 1..].join(" "))
        .unwrap_or_default();
    items[i] = format!("{} {ty} {constraints}", w[0])
        .trim_end()
        .to_string();
    Ok(())
}

/// Adds or removes `NOT NULL` in column `column`'s definition.
fn not_null(items: &mut [String], column: &str, on: bool) -> Result<(), String> {
    let i = column_item(items, column)?;
    let w = words(&items[i]);
    let mut kept: Vec<String> = Vec::new();
    let mut k = 0;
    while k < w.len() {
        if w[k].eq_ignore_ascii_case("NOT")
            && w.get(k + 1).is_some_and(|n| n.eq_ignore_ascii_case("NULL"))
        {
            k += 2;
            continue;
        }
        kept.push(w[k].clone());
        k += 1;
    }
    if on {
        kept.push("NOT NULL".into());
    }
    items[i] = kept.join(" ");
    Ok(())
}

fn column_item(items: &[String], column: &str) -> Result<usize, String> {
    items
        .iter()
        .position(|it| {
            let w = words(it);
            !w.is_empty()
                && !is_table_constraint(&w[0])
                && unquote(&w[0]).eq_ignore_ascii_case(column)
        })
        .ok_or_else(|| format!("the definition of column {column} was not found"))
}

fn is_table_constraint(w: &str) -> bool {
    ["CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"]
        .iter()
        .any(|k| w.eq_ignore_ascii_case(k))
}

fn is_constraint_word(w: &str) -> bool {
    [
        "CONSTRAINT",
        "PRIMARY",
        "NOT",
        "NULL",
        "UNIQUE",
        "CHECK",
        "DEFAULT",
        "COLLATE",
        "REFERENCES",
        "GENERATED",
        "AS",
    ]
    .iter()
    .any(|k| w.eq_ignore_ascii_case(k))
}

fn unquote(w: &str) -> String {
    let t = w.trim();
    let b = t.as_bytes();
    if b.len() >= 2
        && matches!(
            (b[0], b[b.len() - 1]),
            (b'"', b'"') | (b'`', b'`') | (b'[', b']') | (b'\'', b'\'')
        )
    {
        t[1..t.len() - 1].to_string()
    } else {
        t.to_string()
    }
}

/// Splits `text` into words: quoted names and parenthesised groups stay whole.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    for ch in text.chars() {
        match quote {
            Some(q) => {
                cur.push(ch);
                if ch == q {
                    quote = None;
                }
            }
            None => match ch {
                '"' | '`' | '\'' => {
                    quote = Some(ch);
                    cur.push(ch);
                }
                '[' => {
                    quote = Some(']');
                    cur.push(ch);
                }
                '(' => {
                    depth += 1;
                    cur.push(ch);
                }
                ')' => {
                    depth = depth.saturating_sub(1);
                    cur.push(ch);
                }
                c if c.is_whitespace() && depth == 0 => {
                    if !cur.is_empty() {
                        out.push(std::mem::take(&mut cur));
                    }
                }
                c => cur.push(c),
            },
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A `CREATE TABLE` statement's column definitions and table constraints (one
/// item each), and what follows its closing parenthesis (`WITHOUT ROWID`, `STRICT`).
fn parse(create: &str) -> Result<(Vec<String>, String), String> {
    let unparsable = || "its CREATE TABLE statement could not be parsed".to_string();
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut chars = create.char_indices().peekable();
    while let Some((i, ch)) = chars.next() {
        if let Some(q) = quote {
            if depth > 0 {
                cur.push(ch);
            }
            if ch == q {
                quote = None;
            }
            continue;
        }
        match ch {
            '"' | '`' | '\'' | '[' => {
                quote = Some(if ch == '[' { ']' } else { ch });
                if depth > 0 {
                    cur.push(ch);
                }
            }
            '-' if chars.peek().is_some_and(|(_, c)| *c == '-') => {
                // A comment, to the end of its line.
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '(' => {
                depth += 1;
                if depth > 1 {
                    cur.push(ch);
                }
            }
            ')' => {
                depth = depth.checked_sub(1).ok_or_else(unparsable)?;
                if depth == 0 {
                    items.push(cur.trim().to_string());
                    return Ok((items, create[i + 1..].to_string()));
                }
                cur.push(ch);
            }
            ',' if depth == 1 => items.push(std::mem::take(&mut cur).trim().to_string()),
            c if depth > 0 => cur.push(c),
            _ => {}
        }
    }
    Err(unparsable())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_changes_a_table() {
        let (mut items, tail) = parse(
            "CREATE TABLE \"a (b\" (id INTEGER PRIMARY KEY, -- the key\n \"na,me\" TEXT DEFAULT 'x,y' NOT NULL, price REAL CHECK (price > 0), CONSTRAINT u UNIQUE (\"na,me\")) WITHOUT ROWID",
        )
        .unwrap();
        assert_eq!(items.len(), 4);
        assert_eq!(tail, " WITHOUT ROWID");
        set_type(&mut items, "price", "NUMERIC(10,2)").unwrap();
        assert_eq!(items[2], "price NUMERIC(10,2) CHECK (price > 0)");
        not_null(&mut items, "na,me", false).unwrap();
        assert_eq!(items[1], "\"na,me\" TEXT DEFAULT 'x,y'");
        not_null(&mut items, "price", true).unwrap();
        assert!(items[2].ends_with("NOT NULL"));
        assert!(names_object(&items[3], "u"));
        assert!(set_type(&mut items, "nope", "INT").is_err());
        assert!(parse("CREATE TABLE t (a").is_err());
        assert_eq!(
            rename_ident(
                "CREATE INDEX i ON t (name, 'name', \"Name\", names)",
                "name",
                "\"full\""
            ),
            "CREATE INDEX i ON t (\"full\", 'name', \"full\", names)"
        );
    }
}
