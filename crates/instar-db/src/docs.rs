//! Documents stored in a table: a key column, a JSON body column (PostgreSQL
//! `jsonb`/`json`/`text`, MySQL `JSON`/text, SQLite text) and an optional
//! version column; and each document's complements, in `instar_complements`
//! beside the history table. Reading and writing only: what a document means
//! at another version is the lens crate's.

use serde_json::Value;

use crate::conn::{query, Row};
use crate::db::control;
use crate::engine::{table_ddl, Col};
use crate::{Db, Error};

/// Where a collection's documents are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocTable {
    /// The collection's name (the complements' key).
    pub collection: String,
    /// The table (optionally `schema.table`).
    pub table: String,
    /// Its key column.
    pub key: String,
    /// Its JSON body column.
    pub body: String,
    /// Its version column, if it has one.
    pub version: Option<String>,
}

/// One stored document.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// Its key, as text.
    pub key: String,
    /// Its body.
    pub body: Value,
    /// Its version column's value (`None`: no column, or NULL).
    pub version: Option<String>,
    /// The complements kept when it was written, if any.
    pub complements: Option<Value>,
    /// The body's text as read (what a conditional write compares with).
    pub raw: String,
}

const COMPLEMENTS: &str = "instar_complements";

/// The SQL names and casts of one table on one connection.
struct Sql {
    table: String,
    key: String,
    body: String,
    version: Option<String>,
    /// The declared types of key and body, where the engine needs parameters typed.
    key_type: Option<String>,
    body_type: Option<String>,
    complements: String,
}

async fn declared(db: &mut Db, table: &str, column: &str) -> Result<Option<String>, Error> {
    let Some((sql, binds)) = db.engine.key_type_query(table, column) else {
        return Ok(None);
    };
    let row = query(&sql)
        .bind_texts(binds)
        .fetch_optional(&mut db.conn)
        .await
        .map_err(|e| Error::query(format!("looking up the type of {table}.{column}"), e))?;
    match row {
        Some(r) => Ok(Some(
            r.try_get::<String>(0)
                .map_err(|e| Error::query("reading a column type", e))?,
        )),
        None => Err(Error::Unsupported(format!(
            "collection table {table} has no column {column:?} (or no such table); fix the collection's table, key, body or version_column"
        ))),
    }
}

impl Sql {
    async fn new(db: &mut Db, t: &DocTable) -> Result<Sql, Error> {
        let e = db.engine;
        // Only an engine that needs typed parameters is asked for the types
        // (elsewhere a missing column is the database's own error).
        let typed = e.typed_params();
        let (key_type, body_type) = if typed {
            if let Some(v) = &t.version {
                declared(db, &t.table, v).await?;
            }
            (
                declared(db, &t.table, &t.key).await?,
                declared(db, &t.table, &t.body).await?,
            )
        } else {
            (None, None)
        };
        Ok(Sql {
            table: t
                .table
                .split('.')
                .map(|p| e.quote(p))
                .collect::<Vec<_>>()
                .join("."),
            key: e.quote(&t.key),
            body: e.quote(&t.body),
            version: t.version.as_deref().map(|v| e.quote(v)),
            key_type: key_type.filter(|_| typed),
            body_type: body_type.filter(|_| typed),
            complements: db.sibling_table(COMPLEMENTS),
        })
    }

    fn cast(p: String, ty: &Option<String>) -> String {
        match ty {
            Some(t) => format!("CAST({p} AS {t})"),
            None => p,
        }
    }

    fn key_param(&self, db: &Db, n: usize) -> String {
        Sql::cast(db.engine.placeholder(n), &self.key_type)
    }

    fn body_param(&self, db: &Db, n: usize) -> String {
        Sql::cast(db.engine.placeholder(n), &self.body_type)
    }

    fn select(&self, db: &Db) -> String {
        self.select_with(db, None)
    }

    /// [`Sql::select`], with a fourth column: the document's complements
    /// (of `collection`), read by the same statement as the row — one
    /// snapshot, so a move committing meanwhile is seen whole or not at all.
    fn select_with(&self, db: &Db, complements_of: Option<&str>) -> String {
        let text = |c: &str| db.engine.as_text(c);
        let version = self.version.as_deref().map_or("NULL".to_string(), text);
        let complement = complements_of.map_or(String::new(), |c| {
            format!(
                ", (SELECT c.complement FROM {} c WHERE c.collection = '{}' AND c.doc_key = {} ORDER BY c.id DESC LIMIT 1) AS instar_complement",
                self.complements,
                c.replace('\'', "''"),
                text(&format!("{}.{}", self.table, self.key))
            )
        });
        // Aliased: PostgreSQL would read `ORDER BY id` as the text output column.
        format!(
            "SELECT {} AS instar_key, {} AS instar_body, {version} AS instar_version{complement} FROM {}",
            text(&self.key),
            text(&self.body),
            self.table
        )
    }
}

/// Column `i` as text: MySQL hands long text (JSON, LONGTEXT) over as bytes.
pub(crate) fn text_at(r: &Row, i: usize) -> Result<Option<String>, sqlx::Error> {
    r.try_get::<Option<String>>(i).or_else(|_| {
        r.try_get::<Option<Vec<u8>>>(i)
            .map(|b| b.map(|b| String::from_utf8_lossy(&b).into_owned()))
    })
}

/// A row of [`Sql::select`] as it is: key, body text, version.
pub(crate) fn raw_row(
    r: &Row,
    collection: &str,
) -> Result<(String, String, Option<String>), Error> {
    let text = |i: usize| {
        text_at(r, i).map_err(|e| Error::query(format!("reading a document of {collection}"), e))
    };
    Ok((
        text(0)?.unwrap_or_default(),
        text(1)?.unwrap_or_default(),
        text(2)?,
    ))
}

fn stored(r: &Row, collection: &str) -> Result<Stored, Error> {
    let (key, raw, version) = raw_row(r, collection)?;
    let body = serde_json::from_str(&raw).map_err(|e| {
        Error::Unsupported(format!(
            "collection {collection}, key {key}: the stored body is not JSON ({e}); fix the row, or leave it out of the collection"
        ))
    })?;
    Ok(Stored {
        key,
        body,
        version,
        complements: match text_at(r, 3) {
            Ok(Some(c)) => serde_json::from_str(&c).ok(),
            _ => None,
        },
        raw,
    })
}

/// One collection's table, opened on a connection: its SQL names and types
/// looked up once, for every read and write that follows.
pub struct Docs {
    t: DocTable,
    sql: Sql,
    /// Whether `instar_complements` exists (created by the first write).
    complements_table: bool,
}

/// What a write may replace.
#[derive(Debug, Clone, Copy)]
pub enum Expect<'a> {
    /// Any row, or none (an insert).
    Any,
    /// Only the row as it was read: its version column (`None`: NULL) and its
    /// body's text still these.
    Unchanged {
        /// The version read.
        version: Option<&'a str>,
        /// The body's text read ([`Stored::raw`]).
        raw: &'a str,
    },
}

impl Docs {
    /// Opens table `t` on `db` (its column types looked up where the engine needs them).
    pub async fn open(db: &mut Db, t: DocTable) -> Result<Docs, Error> {
        let sql = Sql::new(db, &t).await?;
        let complements_table = db.table_exists(COMPLEMENTS).await?;
        Ok(Docs {
            t,
            sql,
            complements_table,
        })
    }

    /// The table's SQL names, quoted: table, key, body, version column.
    pub(crate) fn names(&self) -> (&str, &str, &str, Option<&str>) {
        let s = &self.sql;
        (&s.table, &s.key, &s.body, s.version.as_deref())
    }

    /// The body column's declared type, where the engine reports it.
    pub(crate) fn body_type(&self) -> Option<&str> {
        self.sql.body_type.as_deref()
    }

    /// Whether `instar_complements` exists yet.
    pub(crate) fn has_complements(&self) -> bool {
        self.complements_table
    }

    /// `instar_complements`, as named on this connection.
    pub(crate) fn complements_table(&self) -> &str {
        &self.sql.complements
    }

    /// `SELECT key, body, version FROM table` (as text), for a `WHERE` to follow.
    pub(crate) fn select_sql(&self, db: &Db) -> String {
        self.sql.select(db)
    }

    /// Creates `instar_complements` if it is missing (outside any transaction:
    /// DDL commits by itself on MySQL).
    pub(crate) async fn ensure_complements(&mut self, db: &mut Db) -> Result<(), Error> {
        if !self.complements_table {
            create_complements(db).await?;
            self.complements_table = true;
        }
        Ok(())
    }

    /// Inside a transaction the caller holds: stores the existing row under
    /// (canonical) `key` at `version`, with its complements.
    pub(crate) async fn rewrite(
        &self,
        db: &mut Db,
        key: &str,
        body: &Value,
        version: &str,
        complements: Option<&Value>,
    ) -> Result<(), Error> {
        self.update(db, key, body, version, Expect::Any).await?;
        self.replace_complements(db, key, complements).await
    }

    fn failed(&self, what: String) -> impl Fn(sqlx::Error) -> Error {
        move |e| Error::query(what.clone(), e)
    }

    /// The document under `key`, with its complements. Reads only.
    pub async fn read(&self, db: &mut Db, key: &str) -> Result<Option<Stored>, Error> {
        let sql = &self.sql;
        let q = format!(
            "{} WHERE {} = {}",
            self.select_full(db),
            sql.key,
            sql.key_param(db, 1)
        );
        let row = query(&q)
            .bind(key.to_string())
            .fetch_optional(&mut db.conn)
            .await
            .map_err(self.failed(format!("reading {} {key}", self.t.collection)))?;
        let Some(row) = row else {
            return Ok(None);
        };
        stored(&row, &self.t.collection).map(Some)
    }

    /// The SELECT of documents with their complements, where there are any.
    fn select_full(&self, db: &Db) -> String {
        self.sql.select_with(
            db,
            self.complements_table.then_some(self.t.collection.as_str()),
        )
    }

    /// The complements kept for the document under (canonical) `key`. Reads only.
    pub async fn complements(&self, db: &mut Db, key: &str) -> Result<Option<Value>, Error> {
        if !self.complements_table {
            return Ok(None);
        }
        let p = |n| db.engine.placeholder(n);
        let q = format!(
            "SELECT complement FROM {} WHERE collection = {} AND doc_key = {} ORDER BY id DESC",
            self.sql.complements,
            p(1),
            p(2)
        );
        let row = query(&q)
            .bind(self.t.collection.clone())
            .bind(key.to_string())
            .fetch_optional(&mut db.conn)
            .await
            .map_err(self.failed("reading a document's complements".into()))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let text = text_at(&row, 0)
            .map_err(self.failed("reading a document's complements".into()))?
            .unwrap_or_default();
        Ok(serde_json::from_str(&text).ok())
    }

    /// How many documents the table holds (one count, for a progress total).
    pub async fn count(&self, db: &mut Db) -> Result<u64, Error> {
        let n: i64 = query(&format!("SELECT count(*) FROM {}", self.sql.table))
            .scalar(&mut db.conn)
            .await
            .map_err(self.failed(format!("counting {}", self.t.collection)))?;
        Ok(n.max(0) as u64)
    }

    /// Up to `limit` documents with keys after `after` (in key order), each
    /// with its complements read by the same statement. Reads only.
    pub async fn scan(
        &self,
        db: &mut Db,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Stored>, Error> {
        let sql = &self.sql;
        let filter = if after.is_some() {
            format!(" WHERE {} > {}", sql.key, sql.key_param(db, 1))
        } else {
            String::new()
        };
        let q = format!(
            "{}{filter} ORDER BY {} LIMIT {limit}",
            self.select_full(db),
            sql.key
        );
        let mut qy = query(&q);
        if let Some(a) = after {
            qy = qy.bind(a.to_string());
        }
        let rows = qy
            .fetch_all(&mut db.conn)
            .await
            .map_err(self.failed(format!("reading {}", self.t.collection)))?;
        rows.iter().map(|r| stored(r, &self.t.collection)).collect()
    }

    /// Stores `body` under `key` at `version`, with its complements (none: the
    /// old ones are dropped), in one transaction: the row is updated, or
    /// inserted when there is none (`Expect::Any`); with `Expect::Unchanged`
    /// (and the canonical key a read gave) only a row still as it was read is
    /// updated (`false`: another client wrote it meanwhile, and nothing was
    /// written: its write is kept).
    pub async fn write(
        &mut self,
        db: &mut Db,
        key: &str,
        body: &Value,
        version: &str,
        complements: Option<&Value>,
        expect: Expect<'_>,
    ) -> Result<bool, Error> {
        self.ensure_complements(db).await?;
        control(&mut db.conn, db.engine.begin()).await?;
        let r = async {
            if !self.update(db, key, body, version, expect).await? {
                if matches!(expect, Expect::Unchanged { .. }) {
                    return Ok(false);
                }
                self.insert(db, key, body, version).await?;
            }
            let key = match expect {
                Expect::Any => self.canonical(db, key).await?,
                Expect::Unchanged { .. } => key.to_string(),
            };
            self.replace_complements(db, &key, complements).await?;
            Ok::<bool, Error>(true)
        }
        .await;
        let conn = &mut db.conn;
        match r {
            Ok(true) => control(conn, "COMMIT").await.map(|()| true),
            Ok(false) => control(conn, "ROLLBACK").await.map(|()| false),
            Err(e) => {
                let _ = crate::conn::exec(conn, "ROLLBACK").await;
                Err(e)
            }
        }
    }

    /// `UPDATE … WHERE key = ? [AND the row is unchanged]`: whether a row was.
    async fn update(
        &self,
        db: &mut Db,
        key: &str,
        body: &Value,
        version: &str,
        expect: Expect<'_>,
    ) -> Result<bool, Error> {
        let (sql, e) = (&self.sql, db.engine);
        let p = |n| e.placeholder(n);
        // Placeholders numbered in the order they appear: MySQL and SQLite bind by position.
        let (set_version, key_at) = match &sql.version {
            Some(v) => (format!(", {v} = {}", p(2)), 3),
            None => (String::new(), 2),
        };
        let mut guard = String::new();
        let mut next = key_at + 1;
        if let Expect::Unchanged { version: v, .. } = expect {
            match (v, &sql.version) {
                (Some(_), Some(col)) => {
                    guard.push_str(&format!(" AND {col} = {}", p(next)));
                    next += 1;
                }
                (None, Some(col)) => guard.push_str(&format!(" AND {col} IS NULL")),
                _ => {}
            }
            guard.push_str(&format!(" AND {} = {}", e.as_text(&sql.body), p(next)));
        }
        let update = format!(
            "UPDATE {} SET {} = {}{set_version} WHERE {} = {}{guard}",
            sql.table,
            sql.body,
            sql.body_param(db, 1),
            sql.key,
            sql.key_param(db, key_at)
        );
        let mut q = query(&update).bind(body.to_string());
        if sql.version.is_some() {
            q = q.bind(version.to_string());
        }
        q = q.bind(key.to_string());
        if let Expect::Unchanged { version, raw } = expect {
            if let (Some(v), true) = (version, sql.version.is_some()) {
                q = q.bind(v.to_string());
            }
            q = q.bind(raw.to_string());
        }
        let done = q
            .execute(&mut db.conn)
            .await
            .map_err(self.failed(format!("writing {} {key}", self.t.collection)))?;
        Ok(done.rows_affected > 0)
    }

    async fn insert(
        &self,
        db: &mut Db,
        key: &str,
        body: &Value,
        version: &str,
    ) -> Result<(), Error> {
        let sql = &self.sql;
        let (cols, vals) = match &sql.version {
            Some(v) => (format!(", {v}"), format!(", {}", db.engine.placeholder(3))),
            None => (String::new(), String::new()),
        };
        let insert = format!(
            "INSERT INTO {} ({}, {}{cols}) VALUES ({}, {}{vals})",
            sql.table,
            sql.key,
            sql.body,
            sql.key_param(db, 1),
            sql.body_param(db, 2)
        );
        let mut q = query(&insert).bind(key.to_string()).bind(body.to_string());
        if sql.version.is_some() {
            q = q.bind(version.to_string());
        }
        q.execute(&mut db.conn)
            .await
            .map_err(self.failed(format!("writing {} {key}", self.t.collection)))?;
        Ok(())
    }

    /// The key as the table gives it back (`01` is `1` in an integer column):
    /// what complements are kept under.
    async fn canonical(&self, db: &mut Db, key: &str) -> Result<String, Error> {
        let sql = &self.sql;
        let q = format!(
            "SELECT {} FROM {} WHERE {} = {}",
            db.engine.as_text(&sql.key),
            sql.table,
            sql.key,
            sql.key_param(db, 1)
        );
        let row = query(&q)
            .bind(key.to_string())
            .fetch_optional(&mut db.conn)
            .await
            .map_err(self.failed(format!("reading back {} {key}", self.t.collection)))?;
        Ok(match row {
            Some(r) => text_at(&r, 0)
                .map_err(self.failed("reading back a key".into()))?
                .unwrap_or_else(|| key.to_string()),
            None => key.to_string(),
        })
    }

    async fn replace_complements(
        &self,
        db: &mut Db,
        key: &str,
        complements: Option<&Value>,
    ) -> Result<(), Error> {
        let p = |n| db.engine.placeholder(n);
        let delete = format!(
            "DELETE FROM {} WHERE collection = {} AND doc_key = {}",
            self.sql.complements,
            p(1),
            p(2)
        );
        query(&delete)
            .bind(self.t.collection.clone())
            .bind(key.to_string())
            .execute(&mut db.conn)
            .await
            .map_err(self.failed("replacing a document's complements".into()))?;
        let Some(c) = complements else {
            return Ok(());
        };
        let insert = format!(
            "INSERT INTO {} (collection, doc_key, complement) VALUES ({}, {}, {})",
            self.sql.complements,
            p(1),
            p(2),
            p(3)
        );
        query(&insert)
            .bind(self.t.collection.clone())
            .bind(key.to_string())
            .bind(c.to_string())
            .execute(&mut db.conn)
            .await
            .map_err(self.failed("storing a document's complements".into()))?;
        Ok(())
    }
}

/// Creates `instar_complements` and its lookup index.
pub(crate) async fn create_complements(db: &mut Db) -> Result<(), Error> {
    let table = db.sibling_table(COMPLEMENTS);
    let columns = [
        ("collection", Col::Short, true),
        ("doc_key", Col::Key, true),
        ("complement", Col::Long, true),
    ];
    let mut ddl = table_ddl(db.engine, &table, db.schema(), &columns);
    ddl.push(format!(
        "CREATE INDEX instar_complements_key ON {table} (collection, doc_key)"
    ));
    for s in ddl {
        crate::db::run_sql(&mut db.conn, &s, "creating instar_complements").await?;
    }
    Ok(())
}
