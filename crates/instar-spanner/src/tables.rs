//! Instar's tables in a Spanner database: the history (the same event log as
//! on every engine, plus the schema-change operation a `start` row is
//! waiting on), the lease and the data-migration checkpoints.

use std::collections::BTreeMap;

use instar_core::history::{Direction, EventKind, HistoryRow};
use serde_json::Value;

use crate::client::{Client, Param, Session, Txn};
use crate::Error;

/// The history table.
pub const HISTORY: &str = "instar_history";
/// The lease table.
pub const LOCK: &str = "instar_lock";
/// The checkpoints of data migrations.
pub const CHECKPOINTS: &str = "instar_checkpoints";

const HISTORY_DDL: &str = "CREATE TABLE instar_history (
  id INT64 NOT NULL, version STRING(MAX) NOT NULL, name STRING(MAX) NOT NULL,
  event STRING(16) NOT NULL, direction STRING(8) NOT NULL, kind STRING(32) NOT NULL,
  checksum STRING(MAX), schema_version STRING(MAX), started_at STRING(64) NOT NULL,
  finished_at STRING(64), duration_ms INT64, statements_applied INT64 NOT NULL,
  statements_total INT64 NOT NULL, statement_hashes STRING(MAX), rows_affected INT64,
  error STRING(MAX), failed_statement STRING(MAX), operator STRING(MAX) NOT NULL,
  run_id STRING(MAX), in_flight INT64, operation STRING(MAX), tool_version STRING(64) NOT NULL,
  note STRING(MAX)
) PRIMARY KEY (id)";

const LOCK_DDL: &str = "CREATE TABLE instar_lock (
  name STRING(64) NOT NULL, holder STRING(MAX) NOT NULL, host STRING(MAX), pid INT64,
  acquired_at TIMESTAMP NOT NULL, renewed_at TIMESTAMP NOT NULL, expires_at TIMESTAMP NOT NULL,
  beats INT64 NOT NULL
) PRIMARY KEY (name)";

const CHECKPOINTS_DDL: &str = "CREATE TABLE instar_checkpoints (
  version STRING(MAX) NOT NULL, checksum STRING(MAX) NOT NULL, last_key STRING(MAX),
  upper_key STRING(MAX), rows_done INT64 NOT NULL, batches INT64 NOT NULL,
  total INT64, updated_at TIMESTAMP NOT NULL
) PRIMARY KEY (version)";

/// Which of Instar's tables exist.
pub fn existing(session: &Session) -> Result<Vec<String>, Error> {
    let rows = session.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = '' AND table_name IN ('instar_history', 'instar_lock', 'instar_checkpoints')",
        &[],
    )?;
    Ok(rows
        .iter()
        .filter_map(|r| r.first().and_then(Value::as_str).map(String::from))
        .collect())
}

/// Creates the tables that are missing (one schema change). Another runner
/// creating them at the same moment is not an error.
pub fn ensure(client: &Client, session: &Session) -> Result<(), Error> {
    session.check_dialect()?;
    let have = existing(session)?;
    let missing: Vec<String> = [
        (HISTORY, HISTORY_DDL),
        (LOCK, LOCK_DDL),
        (CHECKPOINTS, CHECKPOINTS_DDL),
    ]
    .iter()
    .filter(|(t, _)| !have.iter().any(|h| h == t))
    .map(|(_, ddl)| ddl.to_string())
    .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let id = format!("instar_tables_{}", op_suffix(&instar_db::new_run_id()));
    let op = client.update_ddl(&missing, &id);
    let op = match op {
        Ok(op) => client.wait(op, |_| {})?,
        Err(Error::Api { code: 9 | 6, .. }) => return ensure_exists(session),
        Err(e) => return Err(e),
    };
    match op.error {
        Some(_) => ensure_exists(session),
        None => Ok(()),
    }
}

fn ensure_exists(session: &Session) -> Result<(), Error> {
    if existing(session)?.len() == 3 {
        Ok(())
    } else {
        Err(Error::Run(
            "could not create Instar's tables (instar_history, instar_lock, instar_checkpoints) in the Spanner database".into(),
        ))
    }
}

/// An operation id's tail made of what Spanner accepts (`[a-z0-9_]`).
pub fn op_suffix(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

const COLUMNS: &str = "id, version, name, event, direction, kind, checksum, schema_version, started_at, finished_at, duration_ms, statements_applied, statements_total, statement_hashes, rows_affected, error, failed_statement, operator, run_id, in_flight, operation, tool_version, note";

/// The history, in order, with the operation each row waits on (by row id).
pub fn read(session: &Session) -> Result<(Vec<HistoryRow>, BTreeMap<i64, String>), Error> {
    session.check_dialect()?;
    if !existing(session)?.iter().any(|t| t == HISTORY) {
        return Ok((Vec::new(), BTreeMap::new()));
    }
    let rows = session.query(
        &format!("SELECT {COLUMNS} FROM instar_history ORDER BY id"),
        &[],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    let mut ops = BTreeMap::new();
    for r in rows {
        let s = |i: usize| r.get(i).and_then(Value::as_str).map(String::from);
        let n = |i: usize| s(i).and_then(|v| v.parse::<i64>().ok());
        let row = HistoryRow {
            id: n(0).unwrap_or(0),
            version: s(1).unwrap_or_default(),
            name: s(2).unwrap_or_default(),
            event: s(3).as_deref().and_then(EventKind::parse).ok_or_else(|| {
                Error::Run(format!("history row {:?} has an unknown event", n(0)))
            })?,
            direction: if s(4).as_deref() == Some("down") {
                Direction::Down
            } else {
                Direction::Up
            },
            kind: s(5).unwrap_or_default(),
            checksum: s(6),
            schema_version: s(7),
            started_at: s(8).unwrap_or_default(),
            finished_at: s(9),
            duration_ms: n(10),
            statements_applied: n(11).unwrap_or(0),
            statements_total: n(12).unwrap_or(0),
            statement_hashes: s(13),
            rows_affected: n(14),
            error: s(15),
            failed_statement: s(16),
            operator: s(17).unwrap_or_default(),
            run_id: s(18),
            in_flight: n(19),
            tool_version: s(21).unwrap_or_default(),
            note: s(22),
        };
        if let Some(op) = s(20) {
            ops.insert(row.id, op);
        }
        out.push(row);
    }
    Ok((out, ops))
}

/// A row written now by this process, with nothing recorded yet.
pub fn new_row(
    version: &str,
    name: &str,
    event: EventKind,
    direction: Direction,
    kind: &str,
) -> HistoryRow {
    instar_db::runner::blank_row(version.into(), name.into(), event, direction, kind)
}

/// Appends a row (its id is the next one); returns the id.
pub fn insert(txn: &mut Txn, r: &HistoryRow) -> Result<i64, Error> {
    let (rows, _) = txn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM instar_history", &[])?;
    let id: i64 = rows
        .first()
        .and_then(|r| r.first())
        .and_then(Value::as_str)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let params = [
        ("id", Param::Int(id)),
        ("version", Param::Str(r.version.clone())),
        ("name", Param::Str(r.name.clone())),
        ("event", Param::Str(r.event.as_str().into())),
        ("direction", Param::Str(r.direction.as_str().into())),
        ("kind", Param::Str(r.kind.clone())),
        ("checksum", Param::opt_str(r.checksum.as_deref())),
        (
            "schema_version",
            Param::opt_str(r.schema_version.as_deref()),
        ),
        ("started_at", Param::Str(r.started_at.clone())),
        ("finished_at", Param::opt_str(r.finished_at.as_deref())),
        ("duration_ms", Param::opt_int(r.duration_ms)),
        ("statements_applied", Param::Int(r.statements_applied)),
        ("statements_total", Param::Int(r.statements_total)),
        (
            "statement_hashes",
            Param::opt_str(r.statement_hashes.as_deref()),
        ),
        ("rows_affected", Param::opt_int(r.rows_affected)),
        ("error", Param::opt_str(r.error.as_deref())),
        (
            "failed_statement",
            Param::opt_str(r.failed_statement.as_deref()),
        ),
        ("operator", Param::Str(r.operator.clone())),
        ("run_id", Param::opt_str(r.run_id.as_deref())),
        ("in_flight", Param::opt_int(r.in_flight)),
        ("operation", Param::Null("STRING")),
        ("tool_version", Param::Str(r.tool_version.clone())),
        ("note", Param::opt_str(r.note.as_deref())),
    ];
    let names: Vec<&str> = params.iter().map(|(n, _)| *n).collect();
    let sql = format!(
        "INSERT INTO instar_history ({}) VALUES ({})",
        names.join(", "),
        names
            .iter()
            .map(|n| format!("@{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    txn.execute(&sql, &params)?;
    Ok(id)
}

/// Where a `start` row stands: statements done, the statement in flight and
/// the operation it belongs to, and the error that stopped it.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Statements that took effect.
    pub applied: i64,
    /// The first statement of the operation submitted and not yet confirmed.
    pub in_flight: Option<i64>,
    /// That operation's name.
    pub operation: Option<String>,
    /// The error that stopped the run.
    pub error: Option<String>,
    /// The failing statement, with its line.
    pub failed_statement: Option<String>,
}

/// Updates a `start` row.
pub fn update_start(txn: &mut Txn, id: i64, p: &Progress) -> Result<(), Error> {
    txn.execute(
        "UPDATE instar_history SET statements_applied = @applied, in_flight = @in_flight, operation = @operation, error = @error, failed_statement = @failed WHERE id = @id",
        &[
            ("applied", Param::Int(p.applied)),
            ("in_flight", Param::opt_int(p.in_flight)),
            ("operation", Param::opt_str(p.operation.as_deref())),
            ("error", Param::opt_str(p.error.as_deref())),
            ("failed", Param::opt_str(p.failed_statement.as_deref())),
            ("id", Param::Int(id)),
        ],
    )?;
    Ok(())
}
