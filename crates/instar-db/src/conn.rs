//! [`Conn`]: one database connection, through whichever driver its engine uses.
//!
//! PostgreSQL and MySQL go through sqlx (async, over the network). SQLite goes
//! through rusqlite on the calling thread ([`crate::sqlite_conn`]): sqlx runs
//! every SQLite call on a worker thread, and that hand-off was most of the cost
//! of a small migration. The rest of the crate sees one small API — [`query`],
//! [`Row`], [`exec`], [`run_counting`] — whose errors are `sqlx::Error`s either
//! way (a SQLite error is a `sqlx::Error::Database` with SQLite's extended code).

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Connection, Row as _};

use crate::sqlite_conn::Lite;

/// One open connection.
pub(crate) enum Conn {
    /// PostgreSQL or MySQL, through sqlx.
    Any(AnyConnection),
    /// SQLite, through rusqlite on the calling thread.
    Lite(Lite),
}

impl Conn {
    /// Closes the connection.
    pub(crate) async fn close(self) -> Result<(), sqlx::Error> {
        match self {
            Conn::Any(c) => c.close().await,
            Conn::Lite(l) => blocking(|| l.close()),
        }
    }
}

/// A value bound to a placeholder. NULLs keep their type: PostgreSQL infers a
/// parameter's type from what is bound.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bind {
    Int(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
    Bool(Option<bool>),
    Bytes(Option<Vec<u8>>),
}

impl From<i64> for Bind {
    fn from(v: i64) -> Bind {
        Bind::Int(Some(v))
    }
}
impl From<Option<i64>> for Bind {
    fn from(v: Option<i64>) -> Bind {
        Bind::Int(v)
    }
}
impl From<f64> for Bind {
    fn from(v: f64) -> Bind {
        Bind::Real(Some(v))
    }
}
impl From<String> for Bind {
    fn from(v: String) -> Bind {
        Bind::Text(Some(v))
    }
}
impl From<&str> for Bind {
    fn from(v: &str) -> Bind {
        Bind::Text(Some(v.to_string()))
    }
}
impl From<Option<String>> for Bind {
    fn from(v: Option<String>) -> Bind {
        Bind::Text(v)
    }
}
impl From<bool> for Bind {
    fn from(v: bool) -> Bind {
        Bind::Bool(Some(v))
    }
}

/// What a statement that returns no rows did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Done {
    pub(crate) rows_affected: u64,
    pub(crate) last_insert_id: Option<i64>,
}

/// A statement with its binds, run by one of the `fetch`/`execute` methods.
pub(crate) struct Query<'q> {
    sql: &'q str,
    binds: Vec<Bind>,
}

/// A statement to bind and run (placeholders in the engine's style).
pub(crate) fn query(sql: &str) -> Query<'_> {
    Query {
        sql,
        binds: Vec::new(),
    }
}

fn any_query<'q>(
    sql: &'q str,
    binds: &[Bind],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let mut q = sqlx::query(sql);
    for b in binds {
        q = match b.clone() {
            Bind::Int(v) => q.bind(v),
            Bind::Real(v) => q.bind(v),
            Bind::Text(v) => q.bind(v),
            Bind::Bool(v) => q.bind(v),
            Bind::Bytes(v) => q.bind(v),
        };
    }
    q
}

impl<'q> Query<'q> {
    /// Binds the next placeholder.
    pub(crate) fn bind(mut self, v: impl Into<Bind>) -> Self {
        self.binds.push(v.into());
        self
    }

    /// Binds each text of `texts` in order.
    pub(crate) fn bind_texts(self, texts: Vec<String>) -> Self {
        self.binds(texts.into_iter().map(Bind::from).collect())
    }

    /// Binds each of `binds` in order.
    pub(crate) fn binds(mut self, binds: Vec<Bind>) -> Self {
        self.binds.extend(binds);
        self
    }

    /// Runs it; any rows it returns are dropped.
    pub(crate) async fn execute(self, conn: &mut Conn) -> Result<Done, sqlx::Error> {
        match conn {
            Conn::Any(c) => {
                let r = any_query(self.sql, &self.binds).execute(c).await?;
                Ok(Done {
                    rows_affected: r.rows_affected(),
                    last_insert_id: r.last_insert_id(),
                })
            }
            Conn::Lite(l) => blocking(|| l.execute(self.sql, &self.binds)),
        }
    }

    /// Every row it returns.
    pub(crate) async fn fetch_all(self, conn: &mut Conn) -> Result<Vec<Row>, sqlx::Error> {
        match conn {
            Conn::Any(c) => Ok(any_query(self.sql, &self.binds)
                .fetch_all(c)
                .await?
                .into_iter()
                .map(Row::Any)
                .collect()),
            Conn::Lite(l) => Ok(blocking(|| l.rows(self.sql, &self.binds, None))?
                .into_iter()
                .map(Row::Lite)
                .collect()),
        }
    }

    /// Its first row, if any.
    pub(crate) async fn fetch_optional(self, conn: &mut Conn) -> Result<Option<Row>, sqlx::Error> {
        match conn {
            Conn::Any(c) => Ok(any_query(self.sql, &self.binds)
                .fetch_optional(c)
                .await?
                .map(Row::Any)),
            Conn::Lite(l) => Ok(blocking(|| l.rows(self.sql, &self.binds, Some(1)))?
                .into_iter()
                .next()
                .map(Row::Lite)),
        }
    }

    /// Its first row; no row is an error.
    pub(crate) async fn fetch_one(self, conn: &mut Conn) -> Result<Row, sqlx::Error> {
        self.fetch_optional(conn)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }

    /// The first column of its first row.
    pub(crate) async fn scalar<T: Cell>(self, conn: &mut Conn) -> Result<T, sqlx::Error> {
        self.fetch_one(conn).await?.try_get(0)
    }
}

/// One row of a result.
pub(crate) enum Row {
    Any(AnyRow),
    Lite(Vec<rusqlite::types::Value>),
}

impl Row {
    /// Column `i` (0-based) as a `T`; a value of another type is an error.
    pub(crate) fn try_get<T: Cell>(&self, i: usize) -> Result<T, sqlx::Error> {
        match self {
            Row::Any(r) => T::from_any(r, i),
            Row::Lite(v) => {
                let value = v
                    .get(i)
                    .ok_or_else(|| sqlx::Error::ColumnIndexOutOfBounds {
                        index: i,
                        len: v.len(),
                    })?;
                T::from_lite(value).ok_or_else(|| sqlx::Error::ColumnDecode {
                    index: i.to_string(),
                    source: format!("SQLite value {value:?} is not a {}", T::NAME).into(),
                })
            }
        }
    }

    /// Its columns as JSON values: integers, reals and text as they are, NULL as
    /// null, bytes that are UTF-8 as text (MySQL reports TEXT columns as BLOB
    /// through sqlx's Any driver), other bytes as an array of numbers, which no
    /// reader of text takes for text.
    pub(crate) fn json_values(&self) -> Result<Vec<serde_json::Value>, sqlx::Error> {
        use serde_json::Value as J;
        let text = |b: &[u8]| match std::str::from_utf8(b) {
            Ok(s) => J::from(s),
            Err(_) => J::from(b.to_vec()),
        };
        match self {
            Row::Lite(values) => Ok(values
                .iter()
                .map(|v| match v {
                    rusqlite::types::Value::Null => J::Null,
                    rusqlite::types::Value::Integer(n) => J::from(*n),
                    rusqlite::types::Value::Real(f) => J::from(*f),
                    rusqlite::types::Value::Text(s) => J::from(s.clone()),
                    rusqlite::types::Value::Blob(b) => text(b),
                })
                .collect()),
            Row::Any(_) => (0..self.len())
                .map(|i| {
                    if let Ok(v) = self.try_get::<Option<i64>>(i) {
                        return Ok(v.map_or(J::Null, J::from));
                    }
                    if let Ok(v) = self.try_get::<Option<String>>(i) {
                        return Ok(v.map_or(J::Null, J::from));
                    }
                    self.try_get::<Option<Vec<u8>>>(i)
                        .map(|b| b.map_or(J::Null, |b| text(&b)))
                })
                .collect(),
        }
    }

    /// How many columns it has.
    pub(crate) fn len(&self) -> usize {
        match self {
            Row::Any(r) => r.columns().len(),
            Row::Lite(v) => v.len(),
        }
    }
}

/// A type a column can be read as.
pub(crate) trait Cell: Sized {
    /// For messages.
    const NAME: &'static str;
    fn from_any(r: &AnyRow, i: usize) -> Result<Self, sqlx::Error>;
    /// `None` when the value is of another type (SQLite types values, not columns).
    fn from_lite(v: &rusqlite::types::Value) -> Option<Self>;
}

macro_rules! cell {
    ($t:ty, $name:literal, $v:ident => $lite:expr) => {
        impl Cell for $t {
            const NAME: &'static str = $name;
            fn from_any(r: &AnyRow, i: usize) -> Result<Self, sqlx::Error> {
                r.try_get::<$t, _>(i)
            }
            fn from_lite($v: &rusqlite::types::Value) -> Option<Self> {
                use rusqlite::types::Value as V;
                $lite
            }
        }
        impl Cell for Option<$t> {
            const NAME: &'static str = $name;
            fn from_any(r: &AnyRow, i: usize) -> Result<Self, sqlx::Error> {
                r.try_get::<Option<$t>, _>(i)
            }
            fn from_lite(v: &rusqlite::types::Value) -> Option<Self> {
                match v {
                    rusqlite::types::Value::Null => Some(None),
                    v => <$t as Cell>::from_lite(v).map(Some),
                }
            }
        }
    };
}

cell!(i64, "integer", v => match v { V::Integer(n) => Some(*n), _ => None });
cell!(i32, "32-bit integer", v => match v { V::Integer(n) => i32::try_from(*n).ok(), _ => None });
cell!(f64, "real", v => match v { V::Real(n) => Some(*n), _ => None });
cell!(bool, "boolean", v => match v { V::Integer(n) => Some(*n != 0), _ => None });
cell!(String, "text", v => match v { V::Text(s) => Some(s.clone()), _ => None });
cell!(Vec<u8>, "blob", v => match v { V::Blob(b) => Some(b.clone()), _ => None });

/// Runs a SQLite call. On a multi-threaded runtime the worker first hands its
/// other tasks to another thread (a long statement then stalls nothing else);
/// elsewhere (the CLI's single thread) the call simply runs.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Runs `sql` (any number of statements, no binds); returns the rows they changed.
pub(crate) async fn exec(conn: &mut Conn, sql: &str) -> Result<u64, sqlx::Error> {
    match conn {
        Conn::Any(c) => crate::db::exec(c, sql).await,
        Conn::Lite(l) => blocking(|| l.run(sql.to_string(), &[])).map_err(|(_, e)| e),
    }
}

/// Runs `sql`, several statements in one call, binding `binds` in order across
/// them (SQLite only binds across statements; elsewhere `binds` must be empty).
/// Returns the rows changed, or how many statements completed before the error.
/// `sql` is taken by value: a large script is not copied again on its way.
pub(crate) async fn run_counting(
    conn: &mut Conn,
    sql: String,
    binds: &[Bind],
) -> Result<u64, (usize, sqlx::Error)> {
    match conn {
        Conn::Any(c) => {
            use futures_util::StreamExt;
            let mut stream = sqlx::raw_sql(&sql).fetch_many(c);
            let (mut done, mut rows) = (0usize, 0u64);
            while let Some(item) = stream.next().await {
                match item {
                    Ok(sqlx::Either::Left(r)) => {
                        done += 1;
                        rows += r.rows_affected();
                    }
                    Ok(sqlx::Either::Right(_)) => {}
                    Err(e) => return Err((done, e)),
                }
            }
            Ok(rows)
        }
        Conn::Lite(l) => blocking(|| l.run(sql, binds)),
    }
}
