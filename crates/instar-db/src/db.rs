//! [`Db`]: one connection to one database, with the history table and the lock.

use std::fs::File;
use std::time::Duration;

use instar_core::history::{Direction, EventKind, HistoryRow};
use instar_core::Dialect;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Connection, Row};

use crate::engine::{engine, qualified, Engine, HISTORY_COLUMNS};
use crate::error::db_message;
use crate::url::{redact, DbUrl};
use crate::{mysql, postgres, sqlite, Error};

/// How to connect and where the history lives.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The database URL.
    pub url: String,
    /// Statements run on the connection before anything else (e.g. `PRAGMA foreign_keys = OFF`).
    pub init_sql: Vec<String>,
    /// The history table's name.
    pub history_table: String,
    /// The schema (PostgreSQL) or database (MySQL) that holds the history table.
    pub history_schema: Option<String>,
}

impl Settings {
    /// Settings for `url` with every default.
    pub fn new(url: impl Into<String>) -> Self {
        Settings {
            url: url.into(),
            init_sql: Vec::new(),
            history_table: "instar_history".into(),
            history_schema: None,
        }
    }
}

/// Where history rows go: the table, quoted for its engine.
#[derive(Clone, Copy)]
pub(crate) struct History<'a> {
    pub(crate) engine: &'static dyn Engine,
    pub(crate) table: &'a str,
}

impl History<'_> {
    /// The INSERT of a history row, with placeholders; `returning` asks for the new id.
    pub(crate) fn insert_sql(&self, returning: bool) -> String {
        let e = self.engine;
        let marks: Vec<String> = (1..=19).map(|n| e.placeholder(n)).collect();
        let returning = if returning && e.returning_id() {
            " RETURNING id"
        } else {
            ""
        };
        format!(
            "INSERT INTO {} ({HISTORY_COLUMNS}) VALUES ({}){returning}",
            self.table,
            marks.join(", ")
        )
    }

    /// Binds `row` to the placeholders of [`History::insert_sql`].
    pub(crate) fn bind<'q>(
        q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
        row: &HistoryRow,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        q.bind(row.version.clone())
            .bind(row.name.clone())
            .bind(row.event.as_str())
            .bind(row.direction.as_str())
            .bind(row.kind.clone())
            .bind(row.checksum.clone())
            .bind(row.schema_version.clone())
            .bind(row.started_at.clone())
            .bind(row.finished_at.clone())
            .bind(row.duration_ms)
            .bind(row.statements_applied)
            .bind(row.statements_total)
            .bind(row.statement_hashes.clone())
            .bind(row.rows_affected)
            .bind(row.error.clone())
            .bind(row.failed_statement.clone())
            .bind(row.operator.clone())
            .bind(row.tool_version.clone())
            .bind(row.note.clone())
    }

    /// Appends `row` (its `id` is ignored) and returns the new row's id.
    pub(crate) async fn insert(
        &self,
        conn: &mut AnyConnection,
        row: &HistoryRow,
    ) -> Result<i64, Error> {
        let sql = self.insert_sql(true);
        let q = Self::bind(sqlx::query(&sql), row);
        let ctx = "writing to the history table";
        if self.engine.returning_id() {
            let r = q.fetch_one(conn).await.map_err(|e| Error::query(ctx, e))?;
            r.try_get::<i64, _>(0).map_err(|e| Error::query(ctx, e))
        } else {
            let r = q.execute(conn).await.map_err(|e| Error::query(ctx, e))?;
            Ok(r.last_insert_id().unwrap_or(0))
        }
    }

    /// Records progress (and possibly the error) of a statement-by-statement run.
    pub(crate) async fn progress(
        &self,
        conn: &mut AnyConnection,
        id: i64,
        applied: usize,
        error: Option<&str>,
        failed: Option<&str>,
    ) -> Result<(), Error> {
        let sql = crate::engine::marks(
            self.engine,
            &format!("UPDATE {} SET statements_applied = ?, error = ?, failed_statement = ? WHERE id = ?", self.table),
        );
        sqlx::query(&sql)
            .bind(applied as i64)
            .bind(error.map(str::to_string))
            .bind(failed.map(str::to_string))
            .bind(id)
            .execute(conn)
            .await
            .map_err(|e| Error::query("recording progress in the history table", e))?;
        Ok(())
    }
}

/// One connection to one database: the history table, the lock, and the SQL.
pub struct Db {
    pub(crate) conn: AnyConnection,
    pub(crate) url: DbUrl,
    pub(crate) engine: &'static dyn Engine,
    pub(crate) table: String,
    table_name: String,
    schema: Option<String>,
    lock_file: Option<File>,
    lock_name: String,
    locked: bool,
    init_sql: Vec<String>,
    settings: Settings,
}

impl Db {
    /// Connects and runs the settings' `init_sql`.
    pub async fn connect(settings: &Settings) -> Result<Db, Error> {
        sqlx::any::install_default_drivers();
        let url = DbUrl::parse(&settings.url)?;
        let conn = open(&url).await?;
        let engine = engine(url.dialect);
        let table = qualified(
            engine,
            settings.history_schema.as_deref(),
            &settings.history_table,
        );
        let lock_name = match url.dialect {
            // GET_LOCK names are server-wide: include the database.
            Dialect::MySql => format!("instar:{}", url.driver_url.rsplit('/').next().unwrap_or("")),
            _ => format!("instar:{}", settings.history_table),
        };
        let mut db = Db {
            conn,
            url,
            engine,
            table,
            table_name: settings.history_table.clone(),
            schema: settings.history_schema.clone(),
            lock_file: None,
            lock_name: lock_name.chars().take(64).collect(),
            locked: false,
            init_sql: settings.init_sql.clone(),
            settings: settings.clone(),
        };
        db.run_init_sql().await?;
        Ok(db)
    }

    async fn run_init_sql(&mut self) -> Result<(), Error> {
        for sql in &self.init_sql {
            sqlx::raw_sql(sql)
                .execute(&mut self.conn)
                .await
                .map_err(|e| Error::query(format!("init_sql {sql:?}"), e))?;
        }
        Ok(())
    }

    /// Closes the connection and opens it again (after a restore replaced the database).
    pub(crate) async fn reconnect(&mut self) -> Result<(), Error> {
        self.conn = open(&self.url).await?;
        self.run_init_sql().await
    }

    /// A second connection to the same database, with the same settings.
    pub async fn open_another(&self) -> Result<Db, Error> {
        Db::connect(&self.settings).await
    }

    /// The engine's dialect.
    pub fn dialect(&self) -> Dialect {
        self.url.dialect
    }

    /// The parsed URL.
    pub fn url(&self) -> &DbUrl {
        &self.url
    }

    /// The history writer and the connection, borrowed together.
    pub(crate) fn parts(&mut self) -> (History<'_>, &mut AnyConnection) {
        (
            History {
                engine: self.engine,
                table: &self.table,
            },
            &mut self.conn,
        )
    }

    /// The schema holding Instar's tables, if one is configured.
    pub(crate) fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// Another of Instar's tables, next to the history table.
    pub(crate) fn sibling_table(&self, name: &str) -> String {
        qualified(self.engine, self.schema.as_deref(), name)
    }

    /// Whether the history table exists.
    pub async fn history_exists(&mut self) -> Result<bool, Error> {
        let row = sqlx::query(self.engine.table_exists_sql())
            .bind(self.table_name.clone())
            .bind(self.schema.clone().unwrap_or_default())
            .fetch_optional(&mut self.conn)
            .await
            .map_err(|e| Error::query("looking for the history table", e))?;
        Ok(row.is_some())
    }

    /// Creates the history table if it does not exist.
    pub async fn ensure_history(&mut self) -> Result<(), Error> {
        for ddl in crate::engine::history_ddl(self.engine, &self.table, self.schema.as_deref()) {
            sqlx::raw_sql(&ddl)
                .execute(&mut self.conn)
                .await
                .map_err(|e| Error::query("creating the history table", e))?;
        }
        Ok(())
    }

    /// Every history row, oldest first; empty when the table does not exist yet.
    pub async fn read_history(&mut self) -> Result<Vec<HistoryRow>, Error> {
        let json = self.engine.history_as_json(&self.table);
        let sql = json.clone().unwrap_or_else(|| {
            format!(
                "SELECT id, {HISTORY_COLUMNS} FROM {} ORDER BY id",
                self.table
            )
        });
        let rows = match sqlx::query(&sql).fetch_all(&mut self.conn).await {
            Ok(rows) => rows,
            // One query on the hot path: only look for the table when the read fails.
            Err(_) if !self.history_exists().await? => return Ok(Vec::new()),
            // Another run may have created the table between the two queries: read again.
            Err(_) => sqlx::query(&sql)
                .fetch_all(&mut self.conn)
                .await
                .map_err(|e| Error::query("reading the history table", e))?,
        };
        if json.is_some() {
            let text: String = rows
                .first()
                .map(|r| r.try_get(0))
                .transpose()
                .map_err(|e| Error::query("reading the history table", e))?
                .unwrap_or_else(|| "[]".into());
            return decode_json_rows(&text);
        }
        rows.iter().map(decode_row).collect()
    }

    /// Takes the run lock, waiting up to `timeout`; `waiting` is called once if it has to wait.
    pub async fn lock(
        &mut self,
        timeout: Duration,
        waiting: impl FnMut(),
    ) -> Result<Duration, Error> {
        let name = self.lock_name.clone();
        let waited = match self.url.dialect {
            Dialect::Sqlite => match self.url.sqlite_path.clone() {
                Some(path) => {
                    let file = sqlite::open_lock(&path)?;
                    let label = sqlite::lock_path(&path).display().to_string();
                    let w = crate::lock::poll(&label, timeout, waiting, async || {
                        sqlite::try_lock(&file)
                    })
                    .await?;
                    self.lock_file = Some(file);
                    w
                }
                None => Duration::ZERO,
            },
            Dialect::Postgres => {
                let conn = &mut self.conn;
                crate::lock::poll(&name, timeout, waiting, async || {
                    postgres::try_lock(conn, &name).await
                })
                .await?
            }
            Dialect::MySql => {
                let conn = &mut self.conn;
                crate::lock::poll(&name, timeout, waiting, async || {
                    mysql::try_lock(conn, &name).await
                })
                .await?
            }
        };
        self.locked = true;
        Ok(waited)
    }

    /// Releases the run lock if it is held.
    pub async fn unlock(&mut self) -> Result<(), Error> {
        if !self.locked {
            return Ok(());
        }
        self.locked = false;
        match self.url.dialect {
            Dialect::Sqlite => {
                // Closing the file releases the lock.
                self.lock_file = None;
                Ok(())
            }
            Dialect::Postgres => postgres::release(&mut self.conn, &self.lock_name).await,
            Dialect::MySql => mysql::release(&mut self.conn, &self.lock_name).await,
        }
    }

    /// Runs a query that must return one true value (a boolean, or a non-zero number).
    /// Returns whether it did, and what it returned.
    pub async fn check(conn: &mut AnyConnection, sql: &str) -> Result<(bool, String), sqlx::Error> {
        let row = sqlx::query(sql).fetch_optional(conn).await?;
        let Some(row) = row else {
            return Ok((false, "no row".into()));
        };
        if let Ok(v) = row.try_get::<Option<bool>, _>(0) {
            return Ok((v == Some(true), format!("{v:?}")));
        }
        if let Ok(v) = row.try_get::<Option<i64>, _>(0) {
            return Ok((v.is_some_and(|n| n != 0), format!("{v:?}")));
        }
        if let Ok(v) = row.try_get::<Option<i32>, _>(0) {
            return Ok((v.is_some_and(|n| n != 0), format!("{v:?}")));
        }
        let v = row.try_get::<Option<String>, _>(0)?;
        let truthy = matches!(v.as_deref(), Some("1" | "t" | "true" | "TRUE"));
        Ok((truthy, format!("{v:?}")))
    }

    /// Closes the connection, releasing the lock first.
    pub async fn close(mut self) -> Result<(), Error> {
        self.unlock().await?;
        self.conn
            .close()
            .await
            .map_err(|e| Error::query("closing the connection", e))
    }
}

async fn open(url: &DbUrl) -> Result<AnyConnection, Error> {
    AnyConnection::connect(&url.driver_url)
        .await
        .map_err(|e| Error::Connect {
            url: redact(&url.driver_url),
            message: db_message(&e),
        })
}

/// Decodes the JSON form of the history (see `Engine::history_as_json`).
fn decode_json_rows(text: &str) -> Result<Vec<HistoryRow>, Error> {
    let bad = |m: String| Error::Query {
        context: "reading the history table".into(),
        message: m,
    };
    let rows: Vec<Vec<serde_json::Value>> =
        serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    rows.into_iter()
        .map(|r| {
            let s = |i: usize| r.get(i).and_then(|v| v.as_str()).map(str::to_string);
            let n = |i: usize| r.get(i).and_then(serde_json::Value::as_i64);
            let req = |i: usize| s(i).ok_or_else(|| bad(format!("column {i} is NULL")));
            let event = req(3)?;
            Ok(HistoryRow {
                id: n(0).ok_or_else(|| bad("id is NULL".into()))?,
                version: req(1)?,
                name: req(2)?,
                event: EventKind::parse(&event).ok_or_else(|| {
                    bad(format!(
                        "unknown event {event:?}; was this table written by a newer instar?"
                    ))
                })?,
                direction: if req(4)? == "down" {
                    Direction::Down
                } else {
                    Direction::Up
                },
                kind: req(5)?,
                checksum: s(6),
                schema_version: s(7),
                started_at: req(8)?,
                finished_at: s(9),
                duration_ms: n(10),
                statements_applied: n(11).unwrap_or(0),
                statements_total: n(12).unwrap_or(0),
                statement_hashes: s(13),
                rows_affected: n(14),
                error: s(15),
                failed_statement: s(16),
                operator: req(17)?,
                tool_version: req(18)?,
                note: s(19),
            })
        })
        .collect()
}

fn decode_row(r: &AnyRow) -> Result<HistoryRow, Error> {
    let ctx = "reading the history table";
    // MySQL reports TEXT columns as BLOB through the Any driver: accept bytes too.
    let os = |c: &str| match r.try_get::<Option<String>, _>(c) {
        Ok(v) => Ok(v),
        Err(_) => r
            .try_get::<Option<Vec<u8>>, _>(c)
            .map(|b| b.map(|b| String::from_utf8_lossy(&b).into_owned()))
            .map_err(|e| Error::query(ctx, e)),
    };
    let s = |c: &str| {
        os(c)?.ok_or_else(|| Error::Query {
            context: ctx.into(),
            message: format!("column {c} is NULL"),
        })
    };
    let i = |c: &str| r.try_get::<i64, _>(c).map_err(|e| Error::query(ctx, e));
    let oi = |c: &str| {
        r.try_get::<Option<i64>, _>(c)
            .map_err(|e| Error::query(ctx, e))
    };
    let event = s("event")?;
    Ok(HistoryRow {
        id: i("id")?,
        version: s("version")?,
        name: s("name")?,
        event: EventKind::parse(&event).ok_or_else(|| Error::Query {
            context: ctx.into(),
            message: format!("unknown event {event:?}; was this table written by a newer instar?"),
        })?,
        direction: if s("direction")? == "down" {
            Direction::Down
        } else {
            Direction::Up
        },
        kind: s("kind")?,
        checksum: os("checksum")?,
        schema_version: os("schema_version")?,
        started_at: s("started_at")?,
        finished_at: os("finished_at")?,
        duration_ms: oi("duration_ms")?,
        statements_applied: i("statements_applied")?,
        statements_total: i("statements_total")?,
        statement_hashes: os("statement_hashes")?,
        rows_affected: oi("rows_affected")?,
        error: os("error")?,
        failed_statement: os("failed_statement")?,
        operator: s("operator")?,
        tool_version: s("tool_version")?,
        note: os("note")?,
    })
}
