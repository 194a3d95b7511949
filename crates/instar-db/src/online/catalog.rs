//! What an online migration's ops are compiled against: the tables they name,
//! read from the database under the run lock, then changed in memory op by op
//! as the compiled statements will change them.

use instar_core::online::Op;

use crate::conn::query;
use crate::{Db, Error};

/// A column as the catalog describes it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Col {
    pub name: String,
    pub ty: String,
    pub not_null: bool,
    pub default: Option<String>,
}

/// A table the ops name.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub name: String,
    pub columns: Vec<Col>,
    /// Its primary key's columns, in key order (empty: none).
    pub key: Vec<String>,
    /// SQLite: its `CREATE TABLE` statement, as rebuilt so far.
    pub create: Option<String>,
    /// SQLite: the `CREATE INDEX`/`CREATE TRIGGER` statements on it.
    pub extras: Vec<String>,
    /// SQLite: tables whose foreign keys reference it.
    pub referenced_by: Vec<String>,
    /// MariaDB: its columns that a foreign key's action writes without
    /// firing triggers (column, the foreign key as text).
    pub cascaded: Vec<(String, String)>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Col> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    pub fn column_mut(&mut self, name: &str) -> Option<&mut Col> {
        self.columns
            .iter_mut()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }
}

/// The tables the ops name, as they are before the migration.
#[derive(Debug, Clone, Default)]
pub(crate) struct Catalog {
    pub tables: Vec<Table>,
    /// SQLite: `PRAGMA foreign_keys` is on for the run's connection.
    pub foreign_keys_on: bool,
    /// MariaDB, serving two versions: every base table of the database.
    pub all_tables: Vec<String>,
}

impl Catalog {
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
    }

    pub fn table_mut(&mut self, name: &str) -> Option<&mut Table> {
        self.tables
            .iter_mut()
            .find(|t| t.name.eq_ignore_ascii_case(name))
    }

    /// The table, or why the op cannot go on without it.
    pub fn need(&self, name: &str) -> Result<&Table, String> {
        self.table(name)
            .ok_or_else(|| format!("table {name} does not exist"))
    }

    /// The column, or why the op cannot go on without it.
    pub fn need_column(&self, table: &str, column: &str) -> Result<&Col, String> {
        self.need(table)?
            .column(column)
            .ok_or_else(|| format!("table {table} has no column {column}"))
    }

    pub fn remove(&mut self, name: &str) {
        self.tables.retain(|t| !t.name.eq_ignore_ascii_case(name));
    }
}

/// Every table name an op mentions (including rename targets and referenced tables).
fn names(ops: &[Op]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for op in ops {
        let mut add = |n: &str| {
            if !out.iter().any(|x| x.eq_ignore_ascii_case(n)) {
                out.push(n.to_string());
            }
        };
        op.tables().into_iter().for_each(&mut add);
        match op {
            Op::RenameTable { to, .. } => add(to),
            Op::AddForeignKey { references, .. } => add(references),
            _ => {}
        }
    }
    out
}

impl Db {
    /// Reads the tables `ops` name (a table that does not exist is left out).
    pub(crate) async fn online_catalog(&mut self, ops: &[Op]) -> Result<Catalog, Error> {
        let ddl = self.engine.online();
        let mut cat = Catalog::default();
        for name in names(ops) {
            let rows = query(ddl.columns_sql())
                .bind(name.as_str())
                .fetch_all(&mut self.conn)
                .await
                .map_err(|e| Error::query(format!("reading the columns of {name}"), e))?;
            let mut columns = Vec::new();
            let mut key: Vec<(i64, String)> = Vec::new();
            for r in rows {
                let v = r
                    .json_values()
                    .map_err(|e| Error::query(format!("reading the columns of {name}"), e))?;
                let text = |i: usize| match v.get(i) {
                    Some(serde_json::Value::String(s)) => Some(s.clone()),
                    Some(serde_json::Value::Null) | None => None,
                    Some(other) => Some(other.to_string()),
                };
                let not_null = match v.get(2) {
                    Some(serde_json::Value::Bool(b)) => *b,
                    Some(x) => x.as_i64().unwrap_or(0) != 0 || x.as_str() == Some("1"),
                    None => false,
                };
                if let Some(n) = v.get(4).and_then(|x| x.as_i64()).filter(|n| *n > 0) {
                    key.push((n, text(0).unwrap_or_default()));
                }
                columns.push(Col {
                    name: text(0).unwrap_or_default(),
                    ty: text(1).unwrap_or_default(),
                    not_null,
                    default: text(3),
                });
            }
            if columns.is_empty() {
                continue;
            }
            key.sort();
            let mut t = Table {
                name,
                columns,
                key: key.into_iter().map(|(_, c)| c).collect(),
                create: None,
                extras: Vec::new(),
                referenced_by: Vec::new(),
                cascaded: Vec::new(),
            };
            ddl.read_more(self, &mut t).await?;
            if !ddl.extras_sql().is_empty() {
                t.extras = self.texts_all(ddl.extras_sql(), &t.name).await?;
            }
            if let Some(sql) = ddl.cascades_sql() {
                for text in self.texts(sql, &t.name).await? {
                    if let Some((col, fk)) = text.split_once('\t') {
                        t.cascaded.push((col.to_string(), fk.to_string()));
                    }
                }
            }
            cat.tables.push(t);
        }
        ddl.read_settings(self, &mut cat).await?;
        Ok(cat)
    }

    /// The first column of every row of each query in `sqls` (one bind each: `bind`).
    pub(crate) async fn texts_all(
        &mut self,
        sqls: &[&str],
        bind: &str,
    ) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        for sql in sqls {
            out.extend(self.texts(sql, bind).await?);
        }
        Ok(out)
    }

    /// Rows of `sql` (one bind: `bind`) as text, first column.
    pub(crate) async fn texts(&mut self, sql: &str, bind: &str) -> Result<Vec<String>, Error> {
        let rows = query(sql)
            .bind(bind)
            .fetch_all(&mut self.conn)
            .await
            .map_err(|e| Error::query("reading the catalog", e))?;
        rows.iter()
            .map(|r| {
                let v = r.json_values()?;
                Ok(match v.first() {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| Error::query("reading the catalog", e))
    }
}
