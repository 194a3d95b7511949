//! The SQLite connection: rusqlite, on the calling thread.
//!
//! Each call runs to completion before it returns (SQLite is a library: a
//! call's time is its own work and the disk's). Errors become
//! `sqlx::Error::Database` values carrying SQLite's message and extended
//! result code, like the errors of the other engines.

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};

use crate::conn::{Bind, Done};

/// How long a statement waits for another connection's write lock.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// An open SQLite database.
pub(crate) struct Lite {
    conn: Connection,
    /// The file, for messages (`None`: in memory).
    file: Option<std::path::PathBuf>,
}

/// How a SQLite URL asks the file to be opened (`?mode=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `ro`: read only.
    Ro,
    /// `rw`: read and write an existing file.
    Rw,
    /// `rwc`: read and write, creating the file if missing.
    Rwc,
}

impl Mode {
    /// The `mode` query parameter (`ro`, `rw`, `rwc`).
    pub(crate) fn parse(s: &str) -> Option<Mode> {
        match s {
            "ro" => Some(Mode::Ro),
            "rw" => Some(Mode::Rw),
            "rwc" => Some(Mode::Rwc),
            _ => None,
        }
    }
}

impl Lite {
    /// Opens file `path`, or a private in-memory database when `path` is `None`.
    /// Foreign keys stay as SQLite leaves them (off), like the `sqlite3` shell.
    pub(crate) fn open(path: Option<&Path>, mode: Mode) -> Result<Lite, sqlx::Error> {
        let conn = match path {
            None => Connection::open_in_memory(),
            Some(p) => {
                let mut flags = OpenFlags::SQLITE_OPEN_NO_MUTEX;
                flags |= match mode {
                    Mode::Ro => OpenFlags::SQLITE_OPEN_READ_ONLY,
                    Mode::Rw => OpenFlags::SQLITE_OPEN_READ_WRITE,
                    Mode::Rwc => OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
                };
                Connection::open_with_flags(p, flags)
            }
        }
        .map_err(|e| in_file(path, e))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(error)?;
        // The bundled library is built with foreign keys on by default; SQLite's
        // own default (and the shell's) is off.
        conn.execute_batch("PRAGMA foreign_keys = OFF")
            .map_err(|e| in_file(path, e))?;
        Ok(Lite {
            conn,
            file: path.map(Path::to_path_buf),
        })
    }

    pub(crate) fn close(self) -> Result<(), sqlx::Error> {
        self.conn.close().map_err(|(_, e)| error(e))
    }

    /// Runs every statement of `sql`, binding `binds` in order across them;
    /// returns the rows they changed, or the statements completed and the error.
    pub(crate) fn run(
        &mut self,
        mut sql: String,
        binds: &[Bind],
    ) -> Result<u64, (usize, sqlx::Error)> {
        // NUL-terminated in place (see `each`): a large script is not copied.
        sql.push('\0');
        let mut changed = 0;
        let mut done = 0;
        let file = self.file.clone();
        self.each(&sql, binds, None, &mut |_| {}, &mut |n| {
            changed += n;
            done += 1;
        })
        .map_err(|e| (done, in_file(file.as_deref(), e)))?;
        Ok(changed)
    }

    /// Runs `sql` (one statement); returns the rows changed and the last rowid.
    pub(crate) fn execute(&mut self, sql: &str, binds: &[Bind]) -> Result<Done, sqlx::Error> {
        let mut changed = 0;
        let file = self.file.clone();
        self.each(sql, binds, None, &mut |_| {}, &mut |n| changed += n)
            .map_err(|e| in_file(file.as_deref(), e))?;
        Ok(Done {
            rows_affected: changed,
            last_insert_id: Some(self.conn.last_insert_rowid()),
        })
    }

    /// The rows `sql` returns (at most `limit`).
    pub(crate) fn rows(
        &mut self,
        sql: &str,
        binds: &[Bind],
        limit: Option<usize>,
    ) -> Result<Vec<Vec<Value>>, sqlx::Error> {
        let mut out = Vec::new();
        let file = self.file.clone();
        self.each(sql, binds, limit, &mut |r| out.push(r), &mut |_| {})
            .map_err(|e| in_file(file.as_deref(), e))?;
        Ok(out)
    }

    /// Prepares and steps each statement of `sql` in turn: rows go to `row`
    /// (at most `limit` of the last statement's), and each completed statement's
    /// count of changed rows to `finished`.
    fn each(
        &mut self,
        sql: &str,
        binds: &[Bind],
        limit: Option<usize>,
        row: &mut dyn FnMut(Vec<Value>),
        finished: &mut dyn FnMut(u64),
    ) -> rusqlite::Result<()> {
        // SQLite copies a statement text that is not NUL-terminated before
        // preparing it, and each statement is prepared from the rest of the
        // text: without the NUL, a file of n statements cost n² bytes copied.
        let owned;
        let sql = if sql.ends_with('\0') {
            sql
        } else {
            owned = format!("{sql}\0");
            &owned
        };
        let mut batch = rusqlite::Batch::new(&self.conn, sql);
        let mut next = 0;
        while let Some(mut stmt) = batch.next()? {
            for i in 1..=stmt.parameter_count() {
                let b = binds.get(next).cloned().unwrap_or(Bind::Text(None));
                next += 1;
                bind(&mut stmt, i, b)?;
            }
            let before = self.conn.total_changes();
            let width = stmt.column_count();
            let mut rows = stmt.raw_query();
            let mut n = 0;
            while let Some(r) = rows.next()? {
                if limit.is_some_and(|l| n >= l) {
                    continue;
                }
                n += 1;
                let values = (0..width)
                    .map(|i| r.get_ref(i).map(Value::from))
                    .collect::<Result<Vec<_>, _>>()?;
                row(values);
            }
            drop(rows);
            finished(self.conn.total_changes() - before);
        }
        Ok(())
    }
}

fn bind(stmt: &mut rusqlite::Statement<'_>, i: usize, b: Bind) -> rusqlite::Result<()> {
    match b {
        Bind::Int(v) => stmt.raw_bind_parameter(i, v),
        Bind::Real(v) => stmt.raw_bind_parameter(i, v),
        Bind::Text(v) => stmt.raw_bind_parameter(i, v),
        Bind::Bool(v) => stmt.raw_bind_parameter(i, v),
        Bind::Bytes(v) => stmt.raw_bind_parameter(i, v),
    }
}

/// What to do about an error that is about the database file itself.
fn advice(primary: i32) -> Option<&'static str> {
    Some(match primary {
        // SQLITE_NOTADB
        26 => "it is not a SQLite database (or it is encrypted): check --database / the url",
        // SQLITE_CORRUPT
        11 => "the file is damaged: restore a backup (`instar backups`, then `instar restore ID --force`), or try `sqlite3 FILE .recover`",
        // SQLITE_READONLY
        8 => "it cannot be written: check the permissions of the file and of its folder (SQLite writes a journal beside it), and that the URL has no mode=ro",
        // SQLITE_CANTOPEN
        14 => "it cannot be opened: check that its folder exists and can be written",
        // SQLITE_FULL
        13 => "the disk is full: free space, then run the command again",
        // SQLITE_IOERR
        10 => "reading or writing it failed (a disk or file-system error)",
        _ => return None,
    })
}

/// A SQLite error that names the file, and says what to do where the error is
/// about the file itself (not a database, damaged, read-only …).
pub(crate) fn in_file(file: Option<&Path>, e: rusqlite::Error) -> sqlx::Error {
    let Some(file) = file else {
        return error(e);
    };
    match e {
        rusqlite::Error::SqliteFailure(f, msg) => {
            let base = msg.unwrap_or_else(|| f.to_string());
            // SQLite names the file in some messages itself: once is enough.
            let shown = file.display().to_string();
            let base = base.strip_suffix(&format!(": {shown}")).unwrap_or(&base);
            let message = match advice(f.extended_code & 0xff) {
                Some(what) => format!("{shown}: {base}: {what}"),
                None => base.to_string(),
            };
            sqlx::Error::Database(Box::new(LiteError {
                message,
                code: f.extended_code,
            }))
        }
        other => error(other),
    }
}

/// A SQLite error as the `sqlx::Error` the rest of the crate reads codes and messages from.
pub(crate) fn error(e: rusqlite::Error) -> sqlx::Error {
    match e {
        rusqlite::Error::SqliteFailure(f, msg) => sqlx::Error::Database(Box::new(LiteError {
            message: msg.unwrap_or_else(|| f.to_string()),
            code: f.extended_code,
        })),
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

/// A SQLite error: its message and extended result code.
#[derive(Debug)]
pub(crate) struct LiteError {
    message: String,
    code: i32,
}

impl std::fmt::Display for LiteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LiteError {}

impl sqlx::error::DatabaseError for LiteError {
    fn message(&self) -> &str {
        &self.message
    }
    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Owned(self.code.to_string()))
    }
    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }
    fn kind(&self) -> sqlx::error::ErrorKind {
        use sqlx::error::ErrorKind as K;
        // SQLITE_CONSTRAINT_PRIMARYKEY, _UNIQUE, _FOREIGNKEY, _NOTNULL, _CHECK
        match self.code {
            1555 | 2067 => K::UniqueViolation,
            787 => K::ForeignKeyViolation,
            1299 => K::NotNullViolation,
            275 => K::CheckViolation,
            _ => K::Other,
        }
    }
}
