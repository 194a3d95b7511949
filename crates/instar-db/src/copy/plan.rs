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
        let sql = format!("CREATE TABLE IF NOT EXISTS {t} (table_name VARCHAR(255) NOT NULL PRIMARY KEY, source TEXT NOT NULL, last_key TEXT, rows_copied BIGINT NOT NULL, done INTEGER NOT NULL)");
        crate::db::run_sql(&mut self.conn, &sql, "creating the copy's checkpoint table").await?;
        Ok(t)
    }

    /// `table`'s checkpoint (none when no copy into this database began).
    pub(crate) async fn copy_checkpoint(
        &mut self,
        table: &str,
    ) -> Result<Option<Checkpoint>, Error> {
        if !self.table_exists(CHECKPOINTS).await? {
            return Ok(None);
        }
        let t = self.sibling_table(CHECKPOINTS);
        let sql = format!(
            "SELECT last_key, rows_copied, done, source FROM {t} WHERE table_name = {}",
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
            Ok(Checkpoint {
                last_key: key,
                rows: n(1).max(0) as u64,
                done: n(2) != 0,
                source: v
                    .get(3)
                    .and_then(|s| s.as_str())
                    .unwrap_or_default()
                    .to_string(),
            })
        })
        .transpose()
        .map_err(|e| Error::query("reading the copy's checkpoint", e))
    }
}

/// Where an interrupted copy of one table stopped.
pub(crate) struct Checkpoint {
    /// The last key written, as a JSON array.
    pub(crate) last_key: Option<String>,
    /// Rows written so far.
    pub(crate) rows: u64,
    /// Whether the table was copied to its end.
    pub(crate) done: bool,
    /// The source it was copied from (credentials hidden).
    pub(crate) source: String,
}

/// Instar's own tables stay where they are, but documents' complements are data.
fn is_internal(table: &str, history: &str) -> bool {
    let t = table.to_lowercase();
    t != "instar_complements" && crate::dump::is_instar_table(&t, history)
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
    let source = crate::url::redact(&from.url.driver_url);
    for table in names {
        let checkpoint = to.copy_checkpoint(&table).await?;
        if let Some(c) = &checkpoint {
            if c.source != source {
                return Err(Error::Copy(format!(
                    "table {table} of the target holds a copy from {} that has not finished; finish it (run that copy again), or empty the table and delete its row from {CHECKPOINTS}",
                    c.source
                )));
            }
        }
        let p = table_plan(from, to, &table, checkpoint.is_some()).await?;
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

async fn table_plan(
    from: &mut Db,
    to: &mut Db,
    table: &str,
    resuming: bool,
) -> Result<TablePlan, Error> {
    if table.eq_ignore_ascii_case("instar_complements") && !to.table_exists(table).await? {
        // Documents' complements: Instar's table, created by a first write.
        crate::docs::create_complements(to).await?;
    }
    let src = from.columns(table).await?;
    let dst = to.columns(table).await?;
    if dst.is_empty() {
        let why = if to.history_exists().await? {
            "the source has a table the migrations do not create (made by hand?). Add it to the migrations, or leave it out with --tables"
        } else {
            "the target is not migrated yet (a copy runs the migrations first; `instar up --database <target>` shows what they create)"
        };
        return Err(Error::Copy(format!(
            "table {table} of the source is not in the target: {why}"
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
        let (source, target) = (
            Class::of_in(st, from.dialect()),
            Class::of_in(tt, to.dialect()),
        );
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
    Ok(TablePlan {
        table: table.to_string(),
        key: key.into_iter().map(|(_, i)| i).collect(),
        columns,
        target_rows: to.count_rows(table).await?,
        resuming,
    })
}

impl Db {
    /// Puts the session in UTC (dates with a time zone travel as UTC text).
    pub(crate) async fn utc_session(&mut self) -> Result<(), Error> {
        if let Some(sql) = self.engine.utc_session() {
            crate::db::run_sql(
                &mut self.conn,
                sql,
                "setting the session's time zone to UTC",
            )
            .await?;
        }
        Ok(())
    }

    /// A native PostgreSQL connection to the same database for `COPY`, with
    /// the settings' `init_sql` run and the session in UTC.
    pub(crate) async fn copy_connection(&self) -> Result<sqlx::PgConnection, Error> {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&self.url.driver_url)
            .await
            .map_err(|e| Error::query("connecting to the target for COPY", e))?;
        let mut init = self.settings.init_sql.clone();
        init.extend(self.engine.utc_session().map(str::to_string));
        for sql in init {
            sqlx::raw_sql(&sql)
                .execute(&mut c)
                .await
                .map_err(|e| Error::query(format!("init_sql {sql:?} on the COPY connection"), e))?;
        }
        Ok(c)
    }
}

/// Before the first batch: the checkpoint table, and a row per table (its
/// copy not begun) that each batch then updates.
pub async fn prepare(from: &Db, to: &mut Db, plans: &[TablePlan]) -> Result<(), Error> {
    let t = to.copy_checkpoints().await?;
    let source = crate::url::redact(&from.url.driver_url);
    for p in plans {
        if to.copy_checkpoint(&p.table).await?.is_some() {
            continue;
        }
        let e = to.engine;
        let sql = format!(
            "INSERT INTO {t} (table_name, source, last_key, rows_copied, done) VALUES ({}, {}, NULL, 0, 0)",
            e.placeholder(1),
            e.placeholder(2)
        );
        query(&sql)
            .bind(p.table.clone())
            .bind(source.clone())
            .execute(&mut to.conn)
            .await
            .map_err(|e| Error::query("writing the copy's checkpoint", e))?;
    }
    Ok(())
}
