//! Online migrations (`kind = "online"`): their `[[ops]]` compiled, per engine,
//! into the statements that do them cheaply, against the catalog read under
//! the run lock.
//!
//! The compiled statements are kept (`instar_online`, one row per migration):
//! a run that stopped half way resumes the very statements it started with,
//! and `down` undoes exactly what `up` did (an `add_column` that skipped a
//! table that already had the column never drops it there).

mod catalog;
mod connect;
pub mod expand;
pub mod lens;
mod mysql;
mod postgres;
pub mod served;
mod sqlite;
mod sqlite_text;
mod state;

pub(crate) use catalog::{Catalog, Col, Table};
pub(crate) use mysql::MySqlDdl;
pub(crate) use postgres::PostgresDdl;
pub(crate) use sqlite::SqliteDdl;

use instar_core::event::{Event, EventSink};
use instar_core::history::Direction;
use instar_core::online::{layout, made_up_name, terminated, Op};
use instar_core::{Migration, Script};

use crate::engine::Engine;
use crate::{Db, Error};

/// The table keeping each online migration's compiled statements.
const COMPILED: &str = "instar_online";

/// What one op compiles to.
#[derive(Debug, Default)]
pub(crate) struct OpSql {
    /// Forward statements.
    pub up: Vec<String>,
    /// Statements undoing them (run in this order).
    pub down: Vec<String>,
    /// What it does, for the run's output.
    pub summary: String,
    /// A statement that cannot run inside a transaction (a concurrent index
    /// build) or that is only cheap outside one (`NOT VALID` then `VALIDATE`).
    pub own_transactions: bool,
}

/// What differs between engines in compiling ops.
pub(crate) trait OnlineDdl: Sync {
    /// Columns of one table (bind: its name): name, type, not null, default,
    /// position in the primary key (0: not in it).
    fn columns_sql(&self) -> &'static str;
    /// Reads what else compiling needs about `t` (SQLite: its statements).
    fn read_more<'a>(
        &'a self,
        _db: &'a mut Db,
        _t: &'a mut Table,
    ) -> crate::engine::DbFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }
    /// Queries (one bind: the table's name) of the indexes, constraints and
    /// foreign keys that involve a table, as text naming their columns.
    fn extras_sql(&self) -> &'static [&'static str] {
        &[]
    }
    /// A statement setting a session variable to [`connect::PROBE_MARK`],
    /// and a query of (that variable, the server session's id): whether a
    /// connection keeps its session ([`connect::session_dropped`]).
    fn session_probe(&self) -> Option<(&'static str, &'static str)> {
        None
    }
    /// A query (one bind: the table's name) of the table's columns that a
    /// foreign key's action writes without firing triggers, as
    /// `column<TAB>the foreign key`; `None` where actions fire triggers.
    fn cascades_sql(&self) -> Option<&'static str> {
        None
    }
    /// Reads connection settings compiling depends on.
    fn read_settings<'a>(
        &'a self,
        _db: &'a mut Db,
        _cat: &'a mut Catalog,
    ) -> crate::engine::DbFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }
    /// `ALTER TABLE … ADD COLUMN …` for one table.
    fn add_column(&self, e: &dyn Engine, table: &str, col: &Col) -> String {
        format!(
            "ALTER TABLE {} ADD COLUMN {}",
            e.quote(table),
            column_sql(e, col)
        )
    }
    /// Follows a change made by `ALTER TABLE` in what the engine keeps of
    /// `t` beyond its columns (SQLite: its `CREATE TABLE` text, for a later rebuild).
    fn track(&self, _e: &dyn Engine, _t: &mut Table, _change: Change<'_>) -> Result<(), String> {
        Ok(())
    }
    /// Compiles an op whose statements differ per engine (types, constraints,
    /// indexes); `cheap`: the forms that hold short locks, each statement in
    /// its own transaction, may be used.
    fn op(&self, e: &dyn Engine, op: &Op, cat: &mut Catalog, cheap: bool) -> Result<OpSql, String>;
}

/// A change `ALTER TABLE` made to a table's columns.
pub(crate) enum Change<'a> {
    Added(&'a Col),
    Renamed(&'a str, &'a str),
    Dropped(&'a str),
}

/// A column definition: name, type, `NOT NULL`, default.
pub(crate) fn column_sql(e: &dyn Engine, c: &Col) -> String {
    let mut s = format!("{} {}", e.quote(&c.name), c.ty);
    if let Some(d) = &c.default {
        s.push_str(&format!(" DEFAULT {d}"));
    }
    if c.not_null {
        s.push_str(" NOT NULL");
    }
    s
}

/// A column list: names quoted (whatever characters they hold), expressions
/// (`lower(email)`: anything with a parenthesis) as written.
pub(crate) fn column_list(e: &dyn Engine, cols: &[String]) -> String {
    cols.iter()
        .map(|c| {
            if !c.contains('(') {
                e.quote(c)
            } else {
                c.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// An `add_foreign_key` op resolved: its name and its `FOREIGN KEY …
/// REFERENCES …` clause (both tables must exist).
pub(crate) fn foreign_key(
    e: &dyn Engine,
    op: &Op,
    cat: &Catalog,
) -> Result<(String, String), String> {
    let Op::AddForeignKey {
        table,
        columns,
        references,
        references_columns,
        name,
        on_delete,
    } = op
    else {
        unreachable!("add_foreign_key only")
    };
    cat.need(table)?;
    cat.need(references)?;
    let n = name
        .clone()
        .unwrap_or_else(|| made_up_name(table, columns, "fkey"));
    let to = if references_columns.is_empty() {
        columns
    } else {
        references_columns
    };
    let action = on_delete
        .as_ref()
        .map(|a| format!(" ON DELETE {}", a.to_uppercase()))
        .unwrap_or_default();
    let def = format!(
        "FOREIGN KEY ({}) REFERENCES {} ({}){action}",
        column_list(e, columns),
        e.quote(references),
        column_list(e, to)
    );
    Ok((n, def))
}

/// An index op (`create_index`, `add_unique`) resolved on `table` (which must
/// exist): its name (`name`, else made up with `suffix`), `UNIQUE ` or
/// nothing, and its summary.
pub(crate) fn index_of(
    cat: &Catalog,
    table: &str,
    columns: &[String],
    name: &Option<String>,
    unique: bool,
    suffix: &str,
) -> Result<(String, &'static str, String), String> {
    cat.need(table)?;
    let n = name
        .clone()
        .unwrap_or_else(|| made_up_name(table, columns, suffix));
    let what = if suffix == "key" { "unique" } else { "index" };
    let summary = format!("{what} {n} on {table} ({})", columns.join(", "));
    Ok((n, if unique { "UNIQUE " } else { "" }, summary))
}

/// The whole compile of a migration's ops, laid out as scripts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Compiled {
    pub up: String,
    pub down: Option<String>,
    /// Whether it runs in one transaction (where the engine can).
    pub transaction: bool,
    /// Per op: (1-based number, line, summary).
    pub summaries: Vec<(usize, usize, String)>,
}

/// Compiles `ops` (of `toml`, whose text gives each op's line) against `cat`.
pub(crate) fn compile(
    e: &dyn Engine,
    ops: &[Op],
    toml: &Script,
    mut cat: Catalog,
    one_transaction: bool,
) -> Result<Compiled, Error> {
    let lines = instar_core::online::op_lines(&toml.sql);
    let ddl = e.online();
    let mut ups: Vec<(usize, Vec<String>)> = Vec::new();
    let mut downs: Vec<Vec<String>> = Vec::new();
    let mut summaries = Vec::new();
    let mut own = false;
    for (i, op) in ops.iter().enumerate() {
        let line = lines.get(i).copied().unwrap_or(1);
        let out = common(e, ddl, op, &mut cat)
            .unwrap_or_else(|| ddl.op(e, op, &mut cat, !one_transaction))
            .map_err(|why| {
                Error::Core(instar_core::Error::BadMetadata {
                    path: toml.path.clone(),
                    message: format!("line {line}: op {} ({}): {why}", i + 1, op.name()),
                })
            })?;
        own |= out.own_transactions;
        summaries.push((i + 1, line, out.summary));
        ups.push((line, out.up));
        downs.push(out.down);
    }
    let reversible = ops.iter().all(|o| o.irreversible().is_none());
    let down = reversible.then(|| {
        downs
            .into_iter()
            .rev()
            .flatten()
            .map(|s| terminated(&s))
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(Compiled {
        up: layout(&ups),
        down,
        transaction: !own,
        summaries,
    })
}

/// Ops compiled alike on every engine; `None` for the others.
fn common(
    e: &dyn Engine,
    ddl: &dyn OnlineDdl,
    op: &Op,
    cat: &mut Catalog,
) -> Option<Result<OpSql, String>> {
    let q = |s: &str| e.quote(s);
    Some(match op {
        Op::CreateTable {
            table,
            columns,
            primary_key,
        } => create_table(e, cat, table, columns, primary_key),
        Op::DropTable { table } => cat.need(table).map(|_| ()).map(|()| {
            cat.remove(table);
            OpSql {
                up: vec![format!("DROP TABLE {}", q(table))],
                summary: format!("drop table {table}"),
                ..OpSql::default()
            }
        }),
        Op::RenameTable { table, to } => rename_table(e, cat, table, to),
        Op::AddColumn { .. } => add_column(e, ddl, op, cat),
        Op::DropColumn { table, column, .. } => {
            cat.need_column(table, column).map(|_| ()).and_then(|()| {
                if let Some(t) = cat.table_mut(table) {
                    t.columns.retain(|c| !c.name.eq_ignore_ascii_case(column));
                    ddl.track(e, t, Change::Dropped(column))?;
                }
                Ok(OpSql {
                    up: vec![format!(
                        "ALTER TABLE {} DROP COLUMN {}",
                        q(table),
                        q(column)
                    )],
                    summary: format!("drop column {table}.{column}"),
                    ..OpSql::default()
                })
            })
        }
        Op::RenameColumn { table, column, to } => rename_column(e, ddl, cat, table, column, to),
        Op::Sql { up, down } => Ok(OpSql {
            up: vec![up.clone()],
            down: down.iter().cloned().collect(),
            summary: "sql".into(),
            own_transactions: false,
        }),
        _ => return None,
    })
}

fn create_table(
    e: &dyn Engine,
    cat: &mut Catalog,
    table: &str,
    columns: &[instar_core::online::ColumnDef],
    primary_key: &[String],
) -> Result<OpSql, String> {
    if cat.table(table).is_some() {
        return Err(format!("table {table} already exists"));
    }
    let mut items: Vec<String> = columns
        .iter()
        .map(|c| {
            let mut s = column_sql(
                e,
                &Col {
                    name: c.name.clone(),
                    ty: c.ty.clone(),
                    not_null: c.not_null,
                    default: c.default.clone(),
                },
            );
            if c.primary_key {
                s.push_str(" PRIMARY KEY");
            }
            if c.unique {
                s.push_str(" UNIQUE");
            }
            s
        })
        .collect();
    if !primary_key.is_empty() {
        items.push(format!("PRIMARY KEY ({})", column_list(e, primary_key)));
    }
    let create = format!(
        "CREATE TABLE {} ({}){}",
        e.quote(table),
        items.join(", "),
        e.table_options()
    );
    cat.tables.push(Table {
        name: table.to_string(),
        key: if primary_key.is_empty() {
            columns
                .iter()
                .filter(|c| c.primary_key)
                .map(|c| c.name.clone())
                .collect()
        } else {
            primary_key.to_vec()
        },
        columns: columns
            .iter()
            .map(|c| Col {
                name: c.name.clone(),
                ty: c.ty.clone(),
                not_null: c.not_null || c.primary_key,
                default: c.default.clone(),
            })
            .collect(),
        create: Some(create.clone()),
        extras: Vec::new(),
        referenced_by: Vec::new(),
        cascaded: Vec::new(),
    });
    Ok(OpSql {
        up: vec![create],
        down: vec![format!("DROP TABLE {}", e.quote(table))],
        summary: format!("create table {table} ({} columns)", columns.len()),
        own_transactions: false,
    })
}

fn rename_table(e: &dyn Engine, cat: &mut Catalog, table: &str, to: &str) -> Result<OpSql, String> {
    cat.need(table)?;
    if cat.table(to).is_some() {
        return Err(format!("table {to} already exists"));
    }
    if let Some(t) = cat.table_mut(table) {
        t.name = to.to_string();
    }
    let rename = |a: &str, b: &str| format!("ALTER TABLE {} RENAME TO {}", e.quote(a), e.quote(b));
    Ok(OpSql {
        up: vec![rename(table, to)],
        down: vec![rename(to, table)],
        summary: format!("rename table {table} to {to}"),
        own_transactions: false,
    })
}

fn rename_column(
    e: &dyn Engine,
    ddl: &dyn OnlineDdl,
    cat: &mut Catalog,
    table: &str,
    column: &str,
    to: &str,
) -> Result<OpSql, String> {
    cat.need_column(table, column)?;
    if cat.need_column(table, to).is_ok() {
        return Err(format!("table {table} already has a column {to}"));
    }
    if let Some(t) = cat.table_mut(table) {
        if let Some(c) = t.column_mut(column) {
            c.name = to.to_string();
        }
        ddl.track(e, t, Change::Renamed(column, to))?;
    }
    let q = |s: &str| e.quote(s);
    let rename = |a: &str, b: &str| {
        format!(
            "ALTER TABLE {} RENAME COLUMN {} TO {}",
            q(table),
            q(a),
            q(b)
        )
    };
    Ok(OpSql {
        up: vec![rename(column, to)],
        down: vec![rename(to, column)],
        summary: format!("rename column {table}.{column} to {to}"),
        own_transactions: false,
    })
}

/// `add_column` on each of its tables, skipping (when told) a table that has
/// the column already or does not exist: the summary says which.
fn add_column(
    e: &dyn Engine,
    ddl: &dyn OnlineDdl,
    op: &Op,
    cat: &mut Catalog,
) -> Result<OpSql, String> {
    let Op::AddColumn {
        column,
        ty,
        default,
        not_null,
        if_not_exists,
        skip_missing_table,
        up,
        ..
    } = op
    else {
        unreachable!("add_column only")
    };
    let col = Col {
        name: column.clone(),
        ty: ty.clone(),
        not_null: *not_null,
        default: default.clone(),
    };
    let (mut added, mut skipped) = (Vec::new(), Vec::new());
    let mut out = OpSql::default();
    for table in op.tables() {
        match cat.table_mut(table) {
            None if *skip_missing_table => skipped.push(format!("{table} (no such table)")),
            None => {
                return Err(format!(
                    "table {table} does not exist; add skip_missing_table = true to skip such tables"
                ))
            }
            Some(t) if t.column(column).is_some() && *if_not_exists => {
                skipped.push(format!("{table} (has it)"))
            }
            Some(t) if t.column(column).is_some() => {
                return Err(format!(
                    "table {table} already has a column {column}; add if_not_exists = true to skip such tables"
                ))
            }
            Some(t) => {
                t.columns.push(col.clone());
                ddl.track(e, t, Change::Added(&col))?;
                out.up.push(ddl.add_column(e, table, &col));
                if let Some(u) = up {
                    // Existing rows get the value computed from their other columns.
                    out.up.push(format!(
                        "UPDATE {} SET {} = ({u})",
                        e.quote(table),
                        e.quote(column)
                    ));
                }
                out.down.push(format!(
                    "ALTER TABLE {} DROP COLUMN {}",
                    e.quote(table),
                    e.quote(column)
                ));
                added.push(table.to_string());
            }
        }
    }
    // Undone in reverse.
    out.down.reverse();
    out.summary = format!(
        "add column {column}: added {} ({}), skipped {}{}",
        added.len(),
        added.join(", "),
        skipped.len(),
        if skipped.is_empty() {
            String::new()
        } else {
            format!(" ({})", skipped.join(", "))
        }
    );
    Ok(out)
}

/// Whether `m` is an online migration.
pub(crate) fn is_online(m: &Migration) -> bool {
    m.meta.kind == Some(instar_core::meta::Kind::Online)
}

/// Compiles online migration `m` against the live catalog.
pub(crate) async fn compile_now(
    db: &mut Db,
    m: &Migration,
    collections: &lens::Collections,
) -> Result<Compiled, Error> {
    let cat = db.online_catalog(&m.meta.ops).await?;
    compile_with(db, m, cat, collections)
}

/// `m`'s ops, each `alter_column … lens` given its expressions ([`lens`]).
pub(crate) fn ops_of(
    db: &Db,
    m: &Migration,
    cat: &Catalog,
    collections: &lens::Collections,
) -> Result<Vec<Op>, Error> {
    lens::resolve(db.engine, &m.meta.ops, cat, collections).map_err(|why| {
        Error::Unsupported(format!(
            "online migration {} ({}): {why}",
            m.version,
            m.up.path.display()
        ))
    })
}

/// Compiles online migration `m` against `cat` (read under the run lock).
pub(crate) fn compile_with(
    db: &Db,
    m: &Migration,
    cat: Catalog,
    collections: &lens::Collections,
) -> Result<Compiled, Error> {
    let one_tx = db.engine.transactional_ddl() && m.meta.transaction == Some(true);
    let ops = ops_of(db, m, &cat, collections)?;
    let mut c = compile(db.engine, &ops, &m.up, cat, one_tx)?;
    // SQLite has no cheap forms to use: one transaction always.
    c.transaction = db.engine.transactional_ddl()
        && m.meta.transaction != Some(false)
        && (c.transaction || one_tx);
    Ok(c)
}

/// Online migration `m` with its scripts compiled for a run in direction `d`:
/// a resumed run, and any `down`, use the statements kept when it was
/// compiled before; a fresh `up` compiles against the catalog now and keeps
/// the result. `keep = false` (a preview) writes nothing.
pub(crate) async fn prepared(
    db: &mut Db,
    m: &Migration,
    d: Direction,
    resuming: bool,
    keep: bool,
    collections: &lens::Collections,
    sink: &mut dyn EventSink,
) -> Result<Migration, Error> {
    let kept = db.kept_compile(m.version.as_str()).await?;
    let (up, down, transaction) = match (d, kept) {
        // Only a run statement by statement leaves something to resume.
        (Direction::Up, Some((up, down))) if resuming => (up, down, false),
        // Undoing statements are never the concurrent kind.
        (Direction::Down, Some((_, None))) => {
            return Err(Error::Unsupported(format!(
                "online migration {} kept no statements that undo it (it was served at two versions and completed on an engine whose plain run cannot express its ops); undo it with a migration of its own",
                m.version
            )))
        }
        (Direction::Down, Some((up, down))) => (up, down, db.engine.transactional_ddl()),
        (Direction::Down, None) => {
            return Err(Error::Unsupported(format!(
                "online migration {} has no compiled statements kept in {COMPILED} (it was recorded without being run by this Instar), so what to undo is unknown; undo it with a schema migration of its own",
                m.version
            )))
        }
        (Direction::Up, _) => {
            let c = compile_now(db, m, collections).await?;
            if d == Direction::Up {
                for (op, line, summary) in &c.summaries {
                    sink.event(&Event::OpCompiled {
                        version: m.version.to_string(),
                        op: *op,
                        line: *line,
                        summary: summary.clone(),
                    });
                }
                if keep {
                    db.keep_compile(m.version.as_str(), &c).await?;
                }
            }
            (c.up, c.down, c.transaction)
        }
    };
    check_compiled(db, m, &up, transaction)?;
    let mut out = m.clone();
    out.up.sql = up;
    out.transaction = transaction;
    out.down = down.map(|sql| Script {
        path: m.up.path.clone(),
        sql,
        original: None,
    });
    out.down_transaction = Some(transaction);
    Ok(out)
}

/// Refuses compiled statements that would break the run: an `sql` op's
/// unterminated string or comment (it would swallow what follows), or its own
/// transaction control inside Instar's one transaction.
fn check_compiled(db: &Db, m: &Migration, sql: &str, transaction: bool) -> Result<(), Error> {
    use instar_core::split::{split, Split};
    match split(sql, db.dialect()) {
        Split::Unterminated { what, line } => Err(instar_core::Error::Unterminated {
            path: m.up.path.clone(),
            line,
            what,
        }
        .into()),
        Split::Statements(stmts) if transaction => {
            match stmts.iter().find(|s| crate::engine::is_transaction_control(&s.sql)) {
                Some(s) => Err(Error::Unsupported(format!(
                    "{}:{}: an sql op's `{}` controls the transaction itself, but migration {} runs in one transaction of Instar's; remove it, or set transaction = false in its migration.toml",
                    m.up.path.display(),
                    s.line,
                    s.sql.split_whitespace().next().unwrap_or(""),
                    m.version
                ))),
                None => Ok(()),
            }
        }
        _ => Ok(()),
    }
}
