//! The fleet's state: a SQLite file beside the project (`[fleet] state`,
//! default `.instar/fleet.db`), one row per target — its state in the
//! current release (the migration set's fingerprint), attempts, error,
//! timings, the run that last touched it — and the lock that keeps two
//! `instar fleet up` apart (`fleet.db.lock`, held by the kernel for the
//! process's lifetime, so a killed rollout frees it).

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::Error;

/// Where one target stands.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TargetState {
    /// The target's name.
    pub target: String,
    /// `running`, `done`, `failed`, or `stopped` (cancelled or out of time
    /// before its end: not done).
    pub state: String,
    /// The release (fingerprint of the migration set) it was run for.
    pub release: String,
    /// Runs of it for this release.
    pub attempts: i64,
    /// Why the last failed.
    pub error: Option<String>,
    /// The wave it ran in (0 = the canary).
    pub wave: i64,
    /// When it last started (RFC 3339).
    pub started_at: Option<String>,
    /// How long the last run took.
    pub duration_ms: Option<i64>,
    /// The run id of the last run.
    pub run_id: Option<String>,
    /// Migrations the last run applied.
    pub applied: i64,
    /// The schema version after it.
    pub version: Option<String>,
}

/// How the error of a rollout refused for another one's lock begins.
pub const BUSY: &str = "another `instar fleet up` is rolling this fleet out";

fn err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("the fleet's state file: {what}: {e}"))
}

/// How one target's run ended, as recorded.
#[derive(Debug, Clone)]
pub struct Ended<'a> {
    /// `done`, `failed` or `stopped`.
    pub outcome: &'a str,
    /// Why it failed or stopped.
    pub error: Option<&'a str>,
    /// How long it took.
    pub duration_ms: i64,
    /// Migrations it applied.
    pub applied: i64,
    /// The last one it applied.
    pub version: Option<&'a str>,
    /// Its run id.
    pub run_id: &'a str,
}

/// The state file, open (shared by a wave's concurrent runs).
pub struct State {
    conn: std::sync::Mutex<Connection>,
    path: PathBuf,
}

/// The rollout lock: released when dropped or when the process ends.
pub struct Rollout {
    _file: std::fs::File,
}

impl State {
    /// Opens (creating) the state file, to write it.
    pub fn open(path: &Path) -> Result<State, Error> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err(&dir.display().to_string(), e))?;
        }
        let state = Self::connect(path)?;
        if let Ok(conn) = state.conn.lock() {
            // WAL with NORMAL syncs: a killed process loses nothing it
            // committed; a power cut may lose the last marks, and then a tenant
            // is run again and finds nothing to do (its own history is the
            // truth). Best effort: a file another process holds keeps its mode.
            let _ = conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;");
        }
        Ok(state)
    }

    fn connect(path: &Path) -> Result<State, Error> {
        let conn = Connection::open(path).map_err(|e| err(&path.display().to_string(), e))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| err("busy timeout", e))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS fleet_targets (
               target TEXT PRIMARY KEY, state TEXT NOT NULL, release TEXT NOT NULL,
               attempts INTEGER NOT NULL DEFAULT 0, error TEXT, wave INTEGER NOT NULL DEFAULT 0,
               started_at TEXT, duration_ms INTEGER, run_id TEXT, applied INTEGER NOT NULL DEFAULT 0,
               version TEXT)",
        )
        .map_err(|e| err("creating its table", e))?;
        Ok(State {
            conn: std::sync::Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    /// Opens it to read, if it exists (its journal mode left as it is).
    pub fn read(path: &Path) -> Result<Option<State>, Error> {
        if !path.exists() {
            return Ok(None);
        }
        Self::connect(path).map(Some)
    }

    /// Takes the rollout lock, or says who holds it.
    pub fn lock(&self) -> Result<Rollout, Error> {
        let lock_path = self.path.with_extension("db.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|e| err(&lock_path.display().to_string(), e))?;
        match file.try_lock() {
            Err(std::fs::TryLockError::Error(e)) => Err(err(&lock_path.display().to_string(), e)),
            Ok(()) => {
                let _ = std::fs::write(
                    &lock_path,
                    format!("{} {}\n", std::process::id(), instar_db::runner::operator()),
                );
                Ok(Rollout { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let who = std::fs::read_to_string(&lock_path).unwrap_or_default();
                Err(Error::Config(format!(
                    "{BUSY} (pid and operator: {}); wait for it to end — its targets are not run twice",
                    who.trim()
                )))
            }
        }
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, Error> {
        self.conn
            .lock()
            .map_err(|_| err("its connection", "poisoned by a panic"))
    }

    /// Every target's row.
    pub fn all(&self) -> Result<Vec<TargetState>, Error> {
        let conn = self.conn()?;
        let mut st = conn
            .prepare("SELECT target, state, release, attempts, error, wave, started_at, duration_ms, run_id, applied, version FROM fleet_targets ORDER BY target")
            .map_err(|e| err("reading", e))?;
        let rows = st
            .query_map([], |r| {
                Ok(TargetState {
                    target: r.get(0)?,
                    state: r.get(1)?,
                    release: r.get(2)?,
                    attempts: r.get(3)?,
                    error: r.get(4)?,
                    wave: r.get(5)?,
                    started_at: r.get(6)?,
                    duration_ms: r.get(7)?,
                    run_id: r.get(8)?,
                    applied: r.get(9)?,
                    version: r.get(10)?,
                })
            })
            .map_err(|e| err("reading", e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| err("reading", e))
    }

    /// One target's row.
    pub fn get(&self, target: &str) -> Result<Option<TargetState>, Error> {
        Ok(self.all()?.into_iter().find(|t| t.target == target))
    }

    /// Records that `target`'s run `run_id` starts now, in `wave` (one more
    /// attempt; a new release starts counting again). A target whose turn
    /// never came keeps its row as it was.
    pub fn begin(&self, target: &str, release: &str, wave: i64, run_id: &str) -> Result<(), Error> {
        let conn = self.conn()?;
        let prior: Option<String> = conn
            .query_row(
                "SELECT release FROM fleet_targets WHERE target = ?1",
                [target],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| err("reading", e))?;
        let attempts_sql = if prior.as_deref() == Some(release) {
            "attempts + 1"
        } else {
            "1"
        };
        conn.execute(
            &format!(
                "INSERT INTO fleet_targets (target, state, release, attempts, wave, started_at, run_id) VALUES (?1, 'running', ?2, 1, ?3, ?4, ?5)
                 ON CONFLICT (target) DO UPDATE SET state = 'running', release = ?2, attempts = {attempts_sql}, error = NULL, wave = ?3, started_at = ?4, run_id = ?5, duration_ms = NULL"
            ),
            params![target, release, wave, instar_core::time::now_rfc3339(), run_id],
        )
        .map_err(|e| err("writing", e))?;
        Ok(())
    }

    /// Records how `target`'s run ended.
    pub fn finish(&self, target: &str, end: &Ended<'_>) -> Result<(), Error> {
        self.conn()?
            .execute(
                "UPDATE fleet_targets SET state = ?2, error = ?3, duration_ms = ?4, applied = ?5, version = COALESCE(?6, version), run_id = ?7 WHERE target = ?1",
                params![target, end.outcome, end.error, end.duration_ms, end.applied, end.version, end.run_id],
            )
            .map_err(|e| err("writing", e))?;
        Ok(())
    }
}
