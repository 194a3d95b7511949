//! [`Db`]: one connection to one database, with the history table and the lock.

use std::fs::File;
use std::time::Duration;

use instar_core::history::{Direction, EventKind, HistoryRow};
use instar_core::Dialect;
use sqlx::{AnyConnection, Connection};

use crate::conn::{query, Bind, Conn, Row};
use crate::sqlite_conn::{Lite, Mode};

use crate::engine::{engine, qualified, Engine, HISTORY_COLUMNS, HISTORY_COLUMNS_V1};
use crate::error::db_message;
use crate::url::{redact, DbUrl};
use crate::Error;

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
    /// How long connecting may take before it is an error naming the server.
    pub connect_timeout: Duration,
    /// Whether a SQLite file that does not exist is created. Read-only commands
    /// set this to false: they then read an empty in-memory database instead
    /// (nothing applied), and never create a file.
    pub create_missing: bool,
    /// How long one of Instar's online DDL statements waits for a table lock
    /// before it gives up and is tried again (PostgreSQL `lock_timeout`, MySQL
    /// `lock_wait_timeout`, SQLite `busy_timeout`), so that it never queues
    /// behind a long transaction with the application queued behind it.
    pub ddl_lock_timeout: Duration,
    /// How many times such a statement is tried before the step fails.
    pub ddl_lock_attempts: u32,
    /// How runs keep each other out ([`crate::lease`]).
    pub lock: crate::lease::LockStrategy,
    /// How long a lease lasts without a heartbeat.
    pub lease: Duration,
}

impl Settings {
    /// Settings for `url` with every default.
    pub fn new(url: impl Into<String>) -> Self {
        Settings {
            url: url.into(),
            init_sql: Vec::new(),
            history_table: "instar_history".into(),
            history_schema: None,
            connect_timeout: Duration::from_secs(10),
            create_missing: true,
            ddl_lock_timeout: Duration::from_secs(2),
            ddl_lock_attempts: 10,
            lock: crate::lease::LockStrategy::Auto,
            lease: Duration::from_secs(30),
        }
    }
}

/// Where history rows go: the table, quoted for its engine, and the run whose rows they are.
#[derive(Clone, Copy)]
pub(crate) struct History<'a> {
    pub(crate) engine: &'static dyn Engine,
    pub(crate) table: &'a str,
    /// Stamped on every row that does not carry a run id of its own.
    pub(crate) run_id: &'a str,
    /// The lease every write of the holder renews first (the lease strategy).
    pub(crate) fence: Option<&'a crate::lease::Fence>,
    /// Runs without a lock (`lock = "none"`): said on every row written.
    pub(crate) unlocked: bool,
}

impl History<'_> {
    /// The INSERT of a history row, with placeholders; `returning` asks for the new id.
    pub(crate) fn insert_sql(&self, returning: bool) -> String {
        let e = self.engine;
        let marks: Vec<String> = (1..=crate::engine::HISTORY.len())
            .map(|n| e.placeholder(n))
            .collect();
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

    /// The values of `row` for the placeholders of [`History::insert_sql`].
    pub(crate) fn binds(&self, row: &HistoryRow) -> Vec<Bind> {
        vec![
            row.version.clone().into(),
            row.name.clone().into(),
            row.event.as_str().into(),
            row.direction.as_str().into(),
            row.kind.clone().into(),
            row.checksum.clone().into(),
            row.schema_version.clone().into(),
            row.started_at.clone().into(),
            row.finished_at.clone().into(),
            row.duration_ms.into(),
            row.statements_applied.into(),
            row.statements_total.into(),
            row.statement_hashes.clone().into(),
            row.rows_affected.into(),
            row.error.clone().into(),
            row.failed_statement.clone().into(),
            row.operator.clone().into(),
            row.tool_version.clone().into(),
            row.note
                .clone()
                .or_else(|| {
                    self.unlocked
                        .then(|| "run without a lock ([run] lock = \"none\")".to_string())
                })
                .into(),
            row.run_id
                .clone()
                .unwrap_or_else(|| self.run_id.to_string())
                .into(),
            row.in_flight.into(),
        ]
    }

    /// Appends `row` (its `id` is ignored) and returns the new row's id.
    pub(crate) async fn insert(&self, conn: &mut Conn, row: &HistoryRow) -> Result<i64, Error> {
        let mut sql = self.insert_sql(true);
        if let Some(f) = self.fence {
            f.check(conn).await?;
            // A NOT NULL column (`event` on PostgreSQL, `name` where every
            // mark is `?`) is NULL unless the lease is still this run's: the
            // insert fails rather than write for a lost lease.
            let p = self.engine.placeholder(3);
            sql = sql.replacen(
                &format!(", {p}, "),
                &format!(", CASE WHEN {} THEN {p} ELSE NULL END, ", f.condition()),
                1,
            );
        }
        let r = self.insert_row(conn, &sql, row).await;
        match (r, self.fence) {
            // The guard's NULL: the lease is no longer this run's.
            (Err(e), Some(f)) if not_null_violation(&e) => Err(f.lost()),
            (r, _) => r,
        }
    }

    async fn insert_row(&self, conn: &mut Conn, sql: &str, row: &HistoryRow) -> Result<i64, Error> {
        let q = query(sql).binds(self.binds(row));
        let ctx = "writing to the history table";
        if self.engine.returning_id() {
            q.scalar::<i64>(conn)
                .await
                .map_err(|e| Error::query(ctx, e))
        } else {
            let r = q.execute(conn).await.map_err(|e| Error::query(ctx, e))?;
            Ok(r.last_insert_id.unwrap_or(0))
        }
    }

    /// Records progress (and possibly the error) of a statement-by-statement run.
    pub(crate) async fn progress(
        &self,
        conn: &mut Conn,
        id: i64,
        applied: usize,
        error: Option<&str>,
        failed: Option<&str>,
    ) -> Result<(), Error> {
        self.update_start(conn, id, applied, None, error, failed)
            .await
    }

    /// Records that statement `index` (0-based) is about to be sent and commits by
    /// itself: until [`History::progress`] follows, its effect is uncertain.
    pub(crate) async fn in_flight(
        &self,
        conn: &mut Conn,
        id: i64,
        index: usize,
    ) -> Result<(), Error> {
        self.update_start(conn, id, index, Some(index), None, None)
            .await
    }

    async fn update_start(
        &self,
        conn: &mut Conn,
        id: i64,
        applied: usize,
        in_flight: Option<usize>,
        error: Option<&str>,
        failed: Option<&str>,
    ) -> Result<(), Error> {
        if let Some(f) = self.fence {
            f.check(conn).await?;
        }
        // Guarded like `insert`: no row changes for a lease that is lost.
        let guard = self
            .fence
            .map(|f| format!(" AND {}", f.condition()))
            .unwrap_or_default();
        let sql = crate::engine::marks(
            self.engine,
            &format!("UPDATE {} SET statements_applied = ?, in_flight = ?, error = ?, failed_statement = ? WHERE id = ?{guard}", self.table),
        );
        let r = query(&sql)
            .bind(applied as i64)
            .bind(in_flight.map(|i| i as i64))
            .bind(error.map(str::to_string))
            .bind(failed.map(str::to_string))
            .bind(id)
            .execute(conn)
            .await
            .map_err(|e| Error::query("recording progress in the history table", e))?;
        // No row changed: the lease is lost, or (MySQL counts changed rows)
        // the values were already these.
        match self.fence {
            Some(f) if r.rows_affected == 0 => f.check(conn).await,
            _ => Ok(()),
        }
    }
}

/// One connection to one database: the history table, the lock, and the SQL.
pub struct Db {
    pub(crate) conn: Conn,
    pub(crate) url: DbUrl,
    pub(crate) engine: &'static dyn Engine,
    pub(crate) table: String,
    pub(crate) table_name: String,
    schema: Option<String>,
    /// The engine's lock file, where its lock is one (SQLite).
    pub(crate) lock_file: Option<File>,
    pub(crate) lock_name: String,
    locked: bool,
    /// The lease this run holds (the lease strategy).
    pub(crate) lease: Option<crate::lease::Held>,
    /// A worker connection of the lease's holder (`--parallel`): its writes
    /// are fenced by the holder's lease too.
    pub(crate) worker_fence: Option<crate::lease::Fence>,
    /// The strategy in force: `Auto` resolved when connecting.
    pub(crate) strategy: crate::lease::LockStrategy,
    /// The server's family ([`crate::profile`]).
    pub(crate) profile: crate::profile::Profile,
    init_sql: Vec<String>,
    pub(crate) settings: Settings,
    run_id: String,
}

impl Db {
    /// Connects and runs the settings' `init_sql`.
    pub async fn connect(settings: &Settings) -> Result<Db, Error> {
        sqlx::any::install_default_drivers();
        let mut url = DbUrl::parse(&settings.url)?;
        if !settings.create_missing && url.sqlite_path.as_ref().is_some_and(|p| !p.exists()) {
            // Read-only, and no database yet: read an empty one, create nothing.
            url.driver_url = "sqlite::memory:".into();
            url.sqlite_path = None;
        }
        let conn = open(&url, settings.connect_timeout).await?;
        let url_dialect = url.dialect;
        let engine = engine(url.dialect);
        let table = qualified(
            engine,
            settings.history_schema.as_deref(),
            &settings.history_table,
        );
        // A schema per tenant is a project per schema: its own run lock.
        let locked_table = match &settings.history_schema {
            Some(schema) => format!("{schema}.{}", settings.history_table),
            None => settings.history_table.clone(),
        };
        let lock_name = engine.lock_name(&url, &locked_table);
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
            lease: None,
            worker_fence: None,
            strategy: settings.lock,
            profile: crate::profile::Profile::detect(url_dialect, ""),
            init_sql: settings.init_sql.clone(),
            settings: settings.clone(),
            run_id: new_run_id(),
        };
        db.run_init_sql().await?;
        db.check_schema().await?;
        db.profile = db.read_profile().await?;
        db.strategy = db.resolve_strategy().await?;
        Ok(db)
    }

    /// Refuses a history schema the engine cannot create and does not have.
    async fn check_schema(&mut self) -> Result<(), Error> {
        let (Some(schema), Some((sql, advice))) =
            (self.schema.clone(), self.engine.schema_exists_sql())
        else {
            return Ok(());
        };
        let found = query(sql)
            .bind(schema.clone())
            .fetch_optional(&mut self.conn)
            .await
            .map_err(|e| Error::query("looking for the history schema", e))?;
        if found.is_none() {
            return Err(Error::Unsupported(format!(
                "history_schema {schema:?}: {advice}"
            )));
        }
        Ok(())
    }

    async fn run_init_sql(&mut self) -> Result<(), Error> {
        for sql in &self.init_sql {
            crate::conn::exec(&mut self.conn, sql)
                .await
                .map_err(|e| Error::query(format!("init_sql {sql:?}"), e))?;
        }
        Ok(())
    }

    /// Closes the connection and opens it again (after a restore replaced the database).
    pub(crate) async fn reconnect(&mut self) -> Result<(), Error> {
        self.conn = open(&self.url, self.settings.connect_timeout).await?;
        self.run_init_sql().await
    }

    /// A second connection to the same database, with the same settings.
    pub fn open_another(&self) -> impl std::future::Future<Output = Result<Db, Error>> {
        // The settings are copied first: the future holds no reference to `self`.
        let settings = self.settings.clone();
        let fence = self.current_fence().cloned();
        async move {
            let mut db = Db::connect(&settings).await?;
            db.worker_fence = fence;
            Ok(db)
        }
    }

    /// The id stamped on every history row this connection writes (a fresh one per connection).
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Sets the id stamped on the history rows this connection writes from now on.
    pub fn set_run_id(&mut self, id: impl Into<String>) {
        self.run_id = id.into();
    }

    /// Approximate rows per table, from the engine's statistics (PostgreSQL
    /// `pg_class.reltuples`, MySQL `information_schema.tables.table_rows`,
    /// SQLite `sqlite_stat1` when ANALYZE ran): no table is scanned. Empty
    /// where there are none.
    pub async fn table_rows(&mut self) -> Result<std::collections::BTreeMap<String, u64>, Error> {
        let Some(sql) = self.engine.table_rows_query() else {
            return Ok(Default::default());
        };
        let rows = match query(sql).fetch_all(&mut self.conn).await {
            Ok(rows) => rows,
            // SQLite without ANALYZE has no sqlite_stat1.
            Err(_) if self.dialect() == Dialect::Sqlite => return Ok(Default::default()),
            Err(e) => return Err(Error::query("reading table statistics", e)),
        };
        let mut out = std::collections::BTreeMap::new();
        for r in rows {
            let name: Option<String> = r
                .try_get(0)
                .map_err(|e| Error::query("reading table statistics", e))?;
            let n: Option<i64> = r
                .try_get(1)
                .map_err(|e| Error::query("reading table statistics", e))?;
            if let (Some(name), Some(n)) = (name, n) {
                out.insert(name.to_lowercase(), n.max(0) as u64);
            }
        }
        Ok(out)
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
    pub(crate) fn parts(&mut self) -> (History<'_>, &mut Conn) {
        (
            History {
                engine: self.engine,
                table: &self.table,
                run_id: &self.run_id,
                fence: self
                    .lease
                    .as_ref()
                    .map(|l| l.fence())
                    .or(self.worker_fence.as_ref()),
                unlocked: self.strategy == crate::lease::LockStrategy::None,
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
        let name = self.table_name.clone();
        self.table_exists(&name).await
    }

    /// Whether Instar's table `name` (unqualified, in the history's schema) exists.
    pub(crate) async fn table_exists(&mut self, name: &str) -> Result<bool, Error> {
        let schema = self.schema.clone().unwrap_or_default();
        self.table_exists_in(name, schema).await
    }

    /// Whether table `name` exists in `schema` (`""`: the connection's own).
    pub(crate) async fn table_exists_in(
        &mut self,
        name: &str,
        schema: String,
    ) -> Result<bool, Error> {
        let row = query(self.engine.table_exists_sql())
            .bind(name.to_string())
            .bind(schema)
            .fetch_optional(&mut self.conn)
            .await
            .map_err(|e| Error::query(format!("looking for the table {name}"), e))?;
        Ok(row.is_some())
    }

    /// Creates the history table if it does not exist, and upgrades one written
    /// by an older Instar in place (adding the columns it lacks; rows are kept).
    pub async fn ensure_history(&mut self) -> Result<(), Error> {
        // Looked for first: on a Galera cluster even `CREATE TABLE IF NOT
        // EXISTS` of a table that is there runs in total order on every node
        // and aborts the transactions using that table (another runner's).
        if !self.history_exists().await? {
            for ddl in crate::engine::history_ddl(self.engine, &self.table, self.schema.as_deref())
            {
                run_sql(&mut self.conn, &ddl, "creating the history table").await?;
            }
        }
        for (column, kind) in crate::engine::HISTORY_ADDED {
            let probe = format!("SELECT {column} FROM {} WHERE 1 = 0", self.table);
            if run_sql(&mut self.conn, &probe, "").await.is_ok() {
                continue;
            }
            let add = format!(
                "ALTER TABLE {} ADD COLUMN {column} {}",
                self.table,
                self.engine.column_type(*kind)
            );
            let ctx = format!("upgrading the history table (adding {column})");
            run_sql(&mut self.conn, &add, &ctx).await?;
        }
        self.widen_history().await
    }

    /// Widens the history's text columns an older Instar made too narrow.
    async fn widen_history(&mut self) -> Result<(), Error> {
        let Some((probe, alter)) = self.engine.narrow_columns() else {
            return Ok(());
        };
        let narrow: Vec<String> = query(probe)
            .bind(self.table_name.clone())
            .bind(self.schema.clone().unwrap_or_default())
            .fetch_all(&mut self.conn)
            .await
            .map_err(|e| Error::query("reading the history table's column types", e))?
            .iter()
            .map(|r| r.try_get::<String>(0))
            .collect::<Result<_, _>>()
            .map_err(|e| Error::query("reading the history table's column types", e))?;
        for column in narrow {
            let Some((_, kind, _)) = crate::engine::HISTORY
                .iter()
                .find(|(c, _, _)| c.eq_ignore_ascii_case(&column))
            else {
                continue;
            };
            let sql = alter
                .replace("{table}", &self.table)
                .replace("{column}", &column)
                .replace("{type}", self.engine.column_type(*kind));
            run_sql(
                &mut self.conn,
                &sql,
                &format!("upgrading the history table (widening {column})"),
            )
            .await?;
        }
        Ok(())
    }

    /// Every history row, oldest first; empty when the table does not exist yet.
    /// A table written by Instar 0.1 is read as it is (its rows have no run id);
    /// reading never changes it.
    pub async fn read_history(&mut self) -> Result<Vec<HistoryRow>, Error> {
        match self.read_history_with(HISTORY_COLUMNS).await {
            Ok(rows) => Ok(rows),
            // One query on the hot path: only look for the table when the read fails.
            Err(_) if !self.history_exists().await? => Ok(Vec::new()),
            Err(first) => {
                let legacy = format!("{HISTORY_COLUMNS_V1}, NULL, NULL");
                match self.read_history_with(&legacy).await {
                    Ok(rows) => Ok(rows),
                    // Another run may have created or upgraded the table meanwhile.
                    Err(_) => self
                        .read_history_with(HISTORY_COLUMNS)
                        .await
                        .map_err(|_| self.not_ours(first)),
                }
            }
        }
    }

    /// A history read the database refused although the table exists: most
    /// likely a table of that name that is not Instar's.
    fn not_ours(&self, e: Error) -> Error {
        match e {
            Error::Query {
                context,
                message,
                code: Some(code),
            } => Error::Query {
                context,
                message: format!(
                    "{message}; the table {} is not an Instar history table of this version (another tool's?): set [database] history_table to another name, or rename that table",
                    self.table
                ),
                code: Some(code),
            },
            other => other,
        }
    }

    async fn read_history_with(&mut self, columns: &str) -> Result<Vec<HistoryRow>, Error> {
        let sql = format!("SELECT id, {columns} FROM {} ORDER BY id", self.table);
        let rows = query(&sql)
            .fetch_all(&mut self.conn)
            .await
            .map_err(|e| Error::query("reading the history table", e))?;
        let values: Vec<Vec<serde_json::Value>> =
            rows.iter().map(row_values).collect::<Result<_, _>>()?;
        let table = self.table.clone();
        values
            .into_iter()
            .map(|v| decode_history(&table, v))
            .collect()
    }

    /// Takes the run lock, waiting up to `timeout`; `waiting` is called once if it has to wait.
    /// How it is held is the engine's (see its module).
    pub async fn lock(
        &mut self,
        timeout: Duration,
        mut waiting: impl FnMut() + Send,
    ) -> Result<Duration, Error> {
        use crate::lease::LockStrategy;
        let e = self.engine;
        let mut wait = crate::lock::Wait::new(timeout);
        match self.strategy {
            LockStrategy::None => {}
            LockStrategy::Lease => {
                self.ensure_lease_table().await?;
                let label = format!(
                    "{} (a lease in {})",
                    self.lock_name,
                    crate::lease::LEASE_TABLE
                );
                while !self.try_lease().await? {
                    wait.again(&label, &mut waiting).await?;
                }
                self.lease = Some(self.hold_lease());
            }
            LockStrategy::Advisory | LockStrategy::Auto => {
                let label = e.lock_label(self);
                while !e.try_lock(self).await? {
                    wait.again(&label, &mut waiting).await?;
                }
            }
        }
        self.locked = true;
        Ok(wait.elapsed())
    }

    /// Releases the run lock if it is held.
    pub async fn unlock(&mut self) -> Result<(), Error> {
        if !self.locked {
            return Ok(());
        }
        self.locked = false;
        match self.strategy {
            crate::lease::LockStrategy::None => Ok(()),
            crate::lease::LockStrategy::Lease => {
                // The heartbeat stops first: the row goes after it, outside
                // any transaction an error path left open.
                self.lease = None;
                let _ = crate::conn::exec(&mut self.conn, "ROLLBACK").await;
                self.release_lease().await
            }
            _ => {
                let e = self.engine;
                e.release_lock(self).await
            }
        }
    }

    /// Runs a query that must return one true value (a boolean, or a non-zero number).
    /// Returns whether it did, and what it returned.
    pub(crate) async fn check(conn: &mut Conn, sql: &str) -> Result<(bool, String), sqlx::Error> {
        let row = query(sql).fetch_optional(conn).await?;
        let Some(row) = row else {
            return Ok((false, "no row".into()));
        };
        // What the query returned, as SQL would show it: 1, 't', NULL.
        let shown = |v: Option<String>| v.unwrap_or_else(|| "NULL".to_string());
        if let Ok(v) = row.try_get::<Option<bool>>(0) {
            return Ok((v == Some(true), shown(v.map(|b| b.to_string()))));
        }
        if let Ok(v) = row.try_get::<Option<i64>>(0) {
            return Ok((v.is_some_and(|n| n != 0), shown(v.map(|n| n.to_string()))));
        }
        if let Ok(v) = row.try_get::<Option<i32>>(0) {
            return Ok((v.is_some_and(|n| n != 0), shown(v.map(|n| n.to_string()))));
        }
        let v = row.try_get::<Option<String>>(0)?;
        let truthy = matches!(v.as_deref(), Some("1" | "t" | "true" | "TRUE"));
        Ok((truthy, shown(v.map(|s| format!("'{s}'")))))
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

/// Runs `sql` (no binds) through the executor trait itself: the future of
/// `RawSql::execute` is not provably `Send`, which would keep runs off
/// multi-threaded runtimes.
pub(crate) async fn exec(conn: &mut AnyConnection, sql: &str) -> Result<u64, sqlx::Error> {
    let run: futures_util::future::BoxFuture<'_, Result<sqlx::any::AnyQueryResult, sqlx::Error>> =
        sqlx::Executor::execute(conn, sqlx::raw_sql(sql));
    Ok(run.await?.rows_affected())
}

/// Runs one of Instar's own control statements (BEGIN, COMMIT, ROLLBACK, SAVEPOINT …).
pub(crate) async fn control(conn: &mut Conn, sql: &str) -> Result<(), Error> {
    run_sql(conn, sql, &format!("running {sql}")).await
}

/// Runs SQL of Instar's own (one or several statements, no binds); a failure
/// is reported as `context`.
pub(crate) async fn run_sql(conn: &mut Conn, sql: &str, context: &str) -> Result<(), Error> {
    crate::conn::exec(conn, sql)
        .await
        .map(|_| ())
        .map_err(|e| Error::query(context, e))
}

/// The driver's reason a connection failed, and what to do when it is a common one.
fn connect_advice(e: &sqlx::Error) -> String {
    let message = db_message(e);
    let advice = match e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "; nothing listens there: is the server running, and are the host and port right?"
        }
        _ if message.contains("lookup address") => "; the host name is unknown: check it",
        _ if message.contains("does not exist") || message.contains("Unknown database") => {
            "; create the database first (Instar creates tables, not databases)"
        }
        _ if message.contains("Access denied")
            || message.contains("password authentication failed") =>
        {
            "; check the user and password in the URL (percent-encode special characters)"
        }
        _ => "",
    };
    format!("{message}{advice}")
}

async fn open(url: &DbUrl, timeout: Duration) -> Result<Conn, Error> {
    if url.dialect == Dialect::Sqlite {
        return open_sqlite(url).map(Conn::Lite);
    }
    let connecting = AnyConnection::connect(&url.driver_url);
    match tokio::time::timeout(timeout, connecting).await {
        Ok(r) => r.map(Conn::Any).map_err(|e| Error::Connect {
            url: redact(&url.driver_url),
            message: connect_advice(&e),
        }),
        Err(_) => Err(Error::Connect {
            url: redact(&url.driver_url),
            message: format!(
                "no answer within {:?} (connect timeout); check the host and port, that the server speaks this protocol, or raise --connect-timeout",
                timeout
            ),
        }),
    }
}

/// The SQLite file (or memory) a URL names, opened as its `mode` says.
fn open_sqlite(url: &DbUrl) -> Result<Lite, Error> {
    // Named as the user wrote it, not as the driver's URL with its mode.
    let shown = match &url.sqlite_path {
        Some(p) => format!("sqlite:{}", p.display()),
        None => "sqlite::memory:".into(),
    };
    let connect_error = |message: String| Error::Connect {
        url: shown.clone(),
        message,
    };
    let query = url.driver_url.split_once('?').map_or("", |(_, q)| q);
    let mut mode = Mode::Rwc;
    for param in query.split('&').filter(|p| !p.is_empty()) {
        mode = match param.strip_prefix("mode=").map(Mode::parse) {
            Some(Some(m)) => m,
            _ => {
                return Err(connect_error(format!(
                    "the SQLite URL parameter {param:?} is not supported (only mode=ro, mode=rw or mode=rwc)"
                )))
            }
        };
    }
    let path = url.sqlite_path.as_deref();
    if let Some(dir) = path.filter(|p| p.is_dir()) {
        return Err(connect_error(format!(
            "it is a folder, not a database file: name a file, e.g. sqlite:{}",
            dir.join("instar.db").display()
        )));
    }
    Lite::open(path, mode).map_err(|e| {
        let message = db_message(&e);
        let file = path.map_or("memory".into(), |p| p.display().to_string());
        // The URL names the file: `sqlite_conn::in_file`'s prefix is not repeated.
        let message = message
            .strip_prefix(&format!("{file}: "))
            .unwrap_or(&message);
        connect_error(message.to_string())
    })
}

/// A row's columns as JSON values (integers, text, or NULL), for [`decode_history`].
pub(crate) fn row_values(r: &Row) -> Result<Vec<serde_json::Value>, Error> {
    r.json_values()
        .map_err(|e| Error::query("reading the history table", e))
}

/// Whether `e` is a NOT NULL violation (PostgreSQL 23502, MySQL 1048, SQLite 1299).
fn not_null_violation(e: &Error) -> bool {
    matches!(e.db_code(), Some("23502" | "1048" | "1299"))
}

/// Column `i` of `row_values` as text (empty when it is NULL or not text).
pub(crate) fn text_of(v: &[serde_json::Value], i: usize) -> String {
    v.get(i)
        .and_then(|x| x.as_str())
        .unwrap_or_default()
        .to_string()
}

/// One history row from its values (`id`, then the columns in `HISTORY_COLUMNS`
/// order). A value of the wrong type, or a NULL where one is required, is an
/// error naming the table, the column and the row's version.
fn decode_history(table: &str, r: Vec<serde_json::Value>) -> Result<HistoryRow, Error> {
    let names: Vec<&str> = std::iter::once("id")
        .chain(crate::engine::HISTORY.iter().map(|c| c.0))
        .collect();
    // The row is named by its version, or by its id when the version is unreadable.
    let row = match (r.get(1).and_then(|v| v.as_str()), r.first()) {
        (Some(v), _) => format!("the row for version {v}"),
        (None, Some(id)) => format!("the row with id {id}"),
        (None, None) => "a row".to_string(),
    };
    let bad = |i: usize, what: &str| {
        Error::Query {
        context: "reading the history table".into(),
        message: format!(
            "{table}.{} of {row} {what}; the history was changed by hand or by another tool: fix that row",
            names.get(i).copied().unwrap_or("?")
        ),
        code: None,
    }
    };
    let s = |i: usize| match r.get(i) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(bad(i, "is not text")),
    };
    let req = |i: usize| s(i)?.ok_or_else(|| bad(i, "is NULL"));
    let n = |i: usize| match r.get(i) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_str().and_then(|t| t.parse().ok()))
            .map(Some)
            .ok_or_else(|| bad(i, "is not an integer")),
    };
    let event = req(3)?;
    let direction = req(4)?;
    // An applied migration is compared with its file by checksum: without one,
    // an edit would go unseen.
    if event == EventKind::Apply.as_str() && direction == "up" && s(6)?.is_none() {
        return Err(bad(
            6,
            "is NULL, but an applied migration's checksum is how an edited file is found",
        ));
    }
    Ok(HistoryRow {
        id: n(0)?.ok_or_else(|| bad(0, "is NULL"))?,
        version: req(1)?,
        name: req(2)?,
        event: EventKind::parse(&event).ok_or_else(|| {
            bad(
                3,
                &format!(
                    "is {event:?}, not an event this Instar knows (was it written by a newer one?)"
                ),
            )
        })?,
        direction: match direction.as_str() {
            "up" => Direction::Up,
            "down" => Direction::Down,
            other => return Err(bad(4, &format!("is {other:?}, not up or down"))),
        },
        kind: req(5)?,
        checksum: s(6)?,
        schema_version: s(7)?,
        started_at: req(8)?,
        finished_at: s(9)?,
        duration_ms: n(10)?,
        statements_applied: n(11)?.unwrap_or(0),
        statements_total: n(12)?.unwrap_or(0),
        statement_hashes: s(13)?,
        rows_affected: n(14)?,
        error: s(15)?,
        failed_statement: s(16)?,
        operator: req(17)?,
        tool_version: req(18)?,
        note: s(19)?,
        run_id: s(20)?,
        in_flight: n(21)?,
    })
}

/// A new run id: the time in milliseconds and 48 random-ish bits, as text that
/// sorts by time (`r` + 11 base-36 digits + `-` + 10 hex digits).
pub fn new_run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(ms);
    h.write_u32(std::process::id());
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let mut digits = String::new();
    let mut t = ms;
    for _ in 0..11 {
        digits.insert(0, std::char::from_digit((t % 36) as u32, 36).unwrap_or('0'));
        t /= 36;
    }
    format!("r{digits}-{:010x}", h.finish() & 0xff_ffff_ffff)
}
