//! The database crate's error type.

use std::path::PathBuf;

/// What state the database was left in after a failed migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Aftermath {
    /// The migration's transaction was rolled back: the database is exactly as before it.
    RolledBack,
    /// The migration ran outside a transaction and stopped half way: it is marked dirty.
    Dirty {
        /// Statements of the script that completed before the failure.
        applied: usize,
        /// `up` or `down`: the command that resumes it.
        resume: &'static str,
        /// The backup taken before the run, if one was: restoring it is the user's choice.
        backup: Option<String>,
    },
    /// The database was restored from the backup taken before the run.
    Restored {
        /// The backup's id.
        backup: String,
        /// The backup holding the database as it was after the failure.
        set_aside: String,
    },
}

impl std::fmt::Display for Aftermath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Aftermath::RolledBack => f.write_str("the migration was rolled back; the database is as it was before it"),
            Aftermath::Dirty {
                applied,
                resume,
                backup,
            } => {
                write!(
                    f,
                    "the migration ran outside a transaction and is marked dirty after {applied} statement(s); nothing else was undone. Fix the file and run `instar {resume}` to resume after them, or undo them by hand and run `instar repair`"
                )?;
                if let Some(id) = backup {
                    write!(
                        f,
                        ". A backup was taken before this run: `instar restore {id} --force` puts the whole database back as it was then, discarding every write made since, by this run and by any other client"
                    )?;
                }
                Ok(())
            }
            Aftermath::Restored { backup, set_aside } => write!(
                f,
                "the database was restored from backup {backup}, as it was before this run (migrations this run had applied are undone too, and so is anything other clients wrote meanwhile; run `instar up` again once the file is fixed). The database as it was after the failure is kept as backup {set_aside} (`instar restore {set_aside} --force` brings it back)"
            ),
        }
    }
}

/// Everything that can go wrong talking to a database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The migrations or the plan are invalid.
    #[error(transparent)]
    Core(#[from] instar_core::Error),
    /// The database URL cannot be used.
    #[error("invalid database URL {url:?}: {reason}")]
    BadUrl {
        /// The URL, password removed.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// Connecting failed.
    #[error("cannot connect to {url}: {message}")]
    Connect {
        /// The URL, password removed.
        url: String,
        /// The driver's message.
        message: String,
    },
    /// A query of Instar's own failed.
    #[error("{context}: {message}")]
    Query {
        /// What Instar was doing.
        context: String,
        /// The database's message.
        message: String,
        /// The database's error code (SQLSTATE on PostgreSQL, the error number on
        /// MySQL, the extended result code on SQLite), when it gave one.
        code: Option<String>,
    },
    /// Another run holds the migration lock.
    #[error("another instar run holds the migration lock {lock:?}; waited {waited_secs:.1}s (--lock-timeout). Try again when it has finished")]
    LockTimeout {
        /// The lock's name.
        lock: String,
        /// Seconds waited.
        waited_secs: f64,
    },
    /// A statement of a migration failed.
    #[error("migration {version} failed at {}:{line}: {message}\n  statement: {statement}\n  {aftermath}", path.display())]
    StatementFailed {
        /// Version text.
        version: String,
        /// The script.
        path: PathBuf,
        /// 1-based line the statement starts on.
        line: usize,
        /// The statement (shortened).
        statement: String,
        /// The database's message.
        message: String,
        /// The database's error code, when it gave one.
        code: Option<String>,
        /// What state the database is in now.
        aftermath: Aftermath,
    },
    /// A `checks.before` / `checks.after` query did not return true.
    #[error("migration {version}: check {phase} failed: {check} returned {result}\n  {aftermath}")]
    CheckFailed {
        /// Version text.
        version: String,
        /// `before` or `after`.
        phase: &'static str,
        /// The query.
        check: String,
        /// What it returned.
        result: String,
        /// What state the database is in now.
        aftermath: Aftermath,
    },
    /// With foreign keys not enforced (SQLite's default), a migration left rows
    /// whose foreign key points at no parent row.
    #[error("migration {version} ({}) leaves rows whose foreign key points at no row: {violations}\n  SQLite does not enforce foreign keys on this connection (its default), so `PRAGMA foreign_key_check` was run before committing, as SQLite's table-rebuild procedure says.\n  {aftermath}. Fix the script (keep or copy the parent rows, or delete the orphaned rows in the migration itself), then run it again", path.display())]
    ForeignKeyViolation {
        /// Version text.
        version: String,
        /// The script.
        path: PathBuf,
        /// The first violations: table, rowid, parent table.
        violations: String,
        /// What state the database is in now.
        aftermath: Aftermath,
    },
    /// A data migration was refused before any batch ran (no such column, non-unique key …).
    #[error("data migration {version} refused before any batch ran: {reason}")]
    DataRefused {
        /// Version text.
        version: String,
        /// Why.
        reason: String,
    },
    /// A data migration that had begun cannot go on as it is (its checkpoints are
    /// inconsistent, its script changed, or a check after every batch failed).
    #[error("data migration {version} cannot go on: {reason}")]
    DataHalted {
        /// Version text.
        version: String,
        /// Why, and what to do.
        reason: String,
    },
    /// A batch of a data migration failed with `on_error = "stop"`.
    #[error("data migration {version} ({}) failed in the batch of keys after {after} up to {upto}: {message}\n  the batch was rolled back; {rows_done} rows done before it stay done (checkpoint). Fix the cause and run `instar up` to resume from the checkpoint, or set on_error = \"skip\"", path.display())]
    BatchFailed {
        /// Version text.
        version: String,
        /// The script.
        path: PathBuf,
        /// The last key done before the batch (JSON), `start` for the first batch.
        after: String,
        /// The batch's last key (JSON).
        upto: String,
        /// The database's message.
        message: String,
        /// Rows done before the batch.
        rows_done: u64,
    },
    /// Another tool has been migrating this database and Instar's history
    /// records nothing: running would apply its migrations again.
    #[error("this database was migrated by another tool, and Instar's history records nothing yet: `up` would apply those migrations again.\n  {found}\n  Run `instar adopt` first (`instar adopt --dry-run` shows what it records), or pass --ignore-other-history if that table is not this project's")]
    NotAdopted {
        /// What was found, one line per tool.
        found: String,
    },
    /// The run lock cannot be taken for another reason than another run holding it.
    #[error("{0}")]
    Lock(String),
    /// A backup could not be taken or restored.
    #[error("backup: {0}")]
    Backup(String),
    /// A request that cannot be honoured with this engine or these options.
    #[error("{0}")]
    Unsupported(String),
    /// `instar copy` refused or stopped (the table, column or row is named).
    #[error("copy: {0}")]
    Copy(String),
}

impl Error {
    pub(crate) fn query(context: impl Into<String>, e: sqlx::Error) -> Self {
        Error::Query {
            context: context.into(),
            message: db_message(&e),
            code: db_code(&e),
        }
    }

    /// The database's error code behind this error, when there is one.
    pub fn db_code(&self) -> Option<&str> {
        match self {
            Error::Query { code, .. } | Error::StatementFailed { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

/// The database's own error code (SQLSTATE, MySQL error number, SQLite result code).
pub(crate) fn db_code(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// The most useful text of a driver error (the server's message when there is one).
pub(crate) fn db_message(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => d.message().to_string(),
        other => other.to_string(),
    }
}
