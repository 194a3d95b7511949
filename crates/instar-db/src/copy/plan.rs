//! Which tables a copy moves, with which columns and key; everything that
//! would stop it half way is refused here, before a row is written.

use serde::Serialize;

use super::{Class, CopyOptions, CHECKPOINTS};
use crate::conn::query;
use crate::{Db, Error};

/// A column of a copied table.
#[derive(Debug, Clone, Serialize)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its type in the source.
    pub source_type: String,
    /// Its type in the target.
    pub target_type: String,
    /// Its class in the source.
    #[serde(skip)]
    pub source: Class,
    /// Its class in the target.
    #[serde(skip)]
    pub target: Class,
}

/// One table to copy.
#[derive(Debug, Clone, Serialize)]
pub struct TablePlan {
    /// Its name (as the source's catalog writes it).
    pub table: String,
    /// The columns both sides have, in the source's order.
    pub columns: Vec<Column>,
    /// Indexes into `columns` of the primary key, in key order.
    pub key: Vec<usize>,
    /// Rows the target holds before the copy (0 unless `append` or resuming).
    pub target_rows: u64,
    /// Whether a checkpoint of an earlier run exists.
    pub resuming: bool,
}

impl Db {
    /// Columns of `table`: `(name, declared type, position in the primary key)`.
    pub(crate) async fn columns(
        &mut self,
        table: &str,
    ) -> Result<Vec<(String, String, i64)>, Error> {
        let sql = self.engine.columns_sql();
        let rows = query(sql)
            .bind(table)
            .fetch_all(&mut self.conn)
            .await
            .map_err(|e| Error::query(format!("reading the columns of {table}"), e))?;
        rows.iter()
            .map(|r| {
                let v = r.json_values()?;
                let text = |i: usize| match v.get(i) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(serde_json::Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                };
                let pk = v.get(2).and_then(|x| x.as_i64()).unwrap_or(0);
                Ok((text(0), text(1), pk))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| Error::query(format!("reading the columns of {table}"), e))
    }

    pub(crate) async fn count_rows(&mut self, table: &str) -> Result<u64, Error> {
        let sql = format!("SELECT count(*) FROM {}", self.engine.quote(table));
        let n: i64 = query(&sql)
            .scalar(&mut self.conn)
            .await
            .map_err(|e| Error::query(format!("counting the rows of {table}"), e))?;
        Ok(n.max(0) as u64)
    }

    /// The checkpoint table of copies into this database, created if missing.
    pub(crate) async fn copy_checkpoints(&mut self) -> Result<String, Error> {
        let t = self.sibling_table(CHECKPOINTS);
        let sql = format!("CREATE TABLE IF NOT EXISTS {t} (table_name VARCHAR(255) NOT NULL PRIMARY KEY, last_key TEXT, rows_copied BIGINT NOT NULL, done INTEGER NOT NULL)");
        crate::db::run_sql(&mut self.conn, &sql, "creating the copy's checkpoint table").await?;
        Ok(t)
    }

    /// `(last key as JSON, rows copied, done)` of `table`'s checkpoint.
    pub(crate) async fn copy_checkpoint(
        &mut self,
        table: &str,
    ) -> Result<Option<(Option<String>, u64, bool)>, Error> {
        let t = self.copy_checkpoints().await?;
        let sql = format!(
            "SELECT last_key, rows_copied, done FROM {t} WHERE table_name = {}",
            self.engine.placeholder(1)
        );
        let row = query(&sql)
            .bind(table)
            .fetch_optional(&mut self.conn)
            .await
            .map_err(|e| Error::query("reading the copy's checkpoint", e))?;
        row.map(|r| -> Result<_, sqlx::Error> {
            let v = r.json_values()?;
            let key = v.first().and_then(|k| k.as_str()).map(str::to_string);
            let n = |i: usize| {
                v.get(i)
                    .and_then(|x| x.as_i64().or_else(|| x.as_str()?.parse().ok()))
                    .unwrap_or(0)
            };
            Ok((key, n(1).max(0) as u64, n(2) != 0))
        })
        .transpose()
        .map_err(|e| Error::query("reading the copy's checkpoint", e))
    }
}

fn is_internal(table: &str, history: &str) -> bool {
    let t = table.to_lowercase();
    t == CHECKPOINTS || t.starts_with(&history.to_lowercase())
}

/// The tables to copy from `from` into `to`, checked: each exists on both
/// sides, has a primary key, and every source column exists in the target
/// with a type its values map to; a target table that holds rows is refused
/// unless `append` (or an earlier run's checkpoint says they are its own).
pub async fn plan(from: &mut Db, to: &mut Db, o: &CopyOptions) -> Result<Vec<TablePlan>, Error> {
    let history = from.settings.history_table.clone();
    let source_tables: Vec<String> = from
        .catalog_names("table")
        .await?
        .into_iter()
        .filter(|t| !is_internal(t, &history))
        .collect();
    let names = match &o.tables {
        Some(list) => {
            for t in list {
                if !source_tables.iter().any(|s| s.eq_ignore_ascii_case(t)) {
                    return Err(Error::Copy(format!(
                        "--tables names {t}, which the source does not have (it has: {})",
                        source_tables.join(", ")
                    )));
                }
            }
            source_tables
                .into_iter()
                .filter(|s| list.iter().any(|t| s.eq_ignore_ascii_case(t)))
                .collect()
        }
        None => source_tables,
    };
    let mut plans = Vec::new();
    let mut not_empty = Vec::new();
    for table in names {
        let p = table_plan(from, to, &table).await?;
        if p.target_rows > 0 && !p.resuming && !o.append {
            not_empty.push(format!("{table} ({} rows)", p.target_rows));
        }
        plans.push(p);
    }
    if !not_empty.is_empty() {
        return Err(Error::Copy(format!(
            "the target already holds rows in {}: a copy goes into empty tables (rows a migration seeds count too). Pass --append to add the source's rows to them (a row whose key is there is skipped), or leave those tables out with --tables",
            not_empty.join(", ")
        )));
    }
    Ok(plans)
}

async fn table_plan(from: &mut Db, to: &mut Db, table: &str) -> Result<TablePlan, Error> {
    let src = from.columns(table).await?;
    let dst = to.columns(table).await?;
    if dst.is_empty() {
        return Err(Error::Copy(format!(
            "table {table} of the source is not in the target after its migrations ran: the source has a table the migrations do not create (made by hand?). Add it to the migrations, or leave it out with --tables"
        )));
    }
    let mut columns = Vec::new();
    let mut key: Vec<(i64, usize)> = Vec::new();
    for (name, st, pk) in &src {
        let Some((_, tt, _)) = dst.iter().find(|(n, _, _)| n.eq_ignore_ascii_case(name)) else {
            return Err(Error::Copy(format!(
                "table {table}, column {name}: the target has no such column (its migrations differ from the source's schema); add it in a migration, or leave the table out with --tables"
            )));
        };
        let (source, target) = (Class::of(st), Class::of(tt));
        if !source.maps_to(&target) {
            return Err(Error::Copy(format!(
                "table {table}, column {name}: the source's type {st} cannot be mapped to the target's type {tt}; change the target column's type in a migration (text or JSON take any value), or leave the table out with --tables"
            )));
        }
        if *pk > 0 {
            key.push((*pk, columns.len()));
        }
        columns.push(Column {
            name: name.clone(),
            source_type: st.clone(),
            target_type: tt.clone(),
            source,
            target,
        });
    }
    if key.is_empty() {
        return Err(Error::Copy(format!(
            "table {table} has no primary key: a copy walks a table by its key to resume after a kill and to verify; add a primary key in a migration, or leave the table out with --tables"
        )));
    }
    key.sort();
    let resuming = to.copy_checkpoint(table).await?.is_some();
    Ok(TablePlan {
        table: table.to_string(),
        key: key.into_iter().map(|(_, i)| i).collect(),
        columns,
        target_rows: to.count_rows(table).await?,
        resuming,
    })
}

impl Db {
    async fn catalog_names(&mut self, kind: &str) -> Result<Vec<String>, Error> {
        let sql = self.engine.audit_sql().catalog;
        let rows = self.rows(sql, "reading the catalog").await?;
        Ok(rows
            .into_iter()
            .filter(|r| r.first().and_then(|v| v.as_str()) == Some(kind))
            .filter_map(|r| r.get(1).and_then(|v| v.as_str()).map(str::to_string))
            .collect())
    }
}
