//! `status`, `repair` and `unlock` on Spanner.

use instar_core::history::{Direction, EventKind, HistoryRow};
use instar_core::plan::{status as core_status, StatusEntry};
use instar_core::source::Migration;
use serde::Serialize;
use serde_json::Value;

use crate::client::{Client, Param};
use crate::lease::{self, LockView};
use crate::run::{lock, Options};
use crate::script::DIALECT;
use crate::tables;
use crate::Error;

/// A migration stopped half way.
#[derive(Debug, Clone, Serialize)]
pub struct DirtyView {
    /// Its version.
    pub version: String,
    /// Statements that took effect.
    pub applied: i64,
    /// Statements in its script.
    pub total: i64,
    /// A schema-change operation the run did not see finish (the next run asks Spanner about it).
    pub operation: Option<String>,
    /// What stopped it.
    pub error: Option<String>,
    /// The failing statement.
    pub failed_statement: Option<String>,
}

/// A data migration stopped at a checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointView {
    /// Its version.
    pub version: String,
    /// Rows walked.
    pub rows_done: i64,
    /// Rows to walk.
    pub total: i64,
    /// The last key of the last committed batch.
    pub last_key: Option<String>,
}

/// Everything `status` shows of a Spanner database.
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    /// `projects/…/databases/D`.
    pub database: String,
    /// The schema version (latest applied migration that declares one).
    pub schema_version: Option<String>,
    /// Each migration on disk and where it stands.
    pub migrations: Vec<StatusEntry>,
    /// What refuses `up`.
    pub problems: Vec<String>,
    /// Migrations stopped half way.
    pub dirty: Vec<DirtyView>,
    /// Data migrations stopped at a checkpoint.
    pub checkpoints: Vec<CheckpointView>,
    /// Who holds the run lock.
    pub lock: Option<LockView>,
}

/// Where the database stands against the migrations.
pub fn status(client: &Client, migrations: &[Migration]) -> Result<StatusView, Error> {
    let session = client.session()?;
    let (rows, ops) = tables::read(&session)?;
    let st = instar_core::history::derive(&rows);
    let s = core_status(migrations, &st, DIALECT);
    let dirty = st
        .dirty
        .values()
        .map(|d| DirtyView {
            version: d.version.clone(),
            applied: d.statements_applied,
            total: d.statements_total,
            operation: ops.get(&d.row_id).cloned(),
            error: d.error.clone(),
            failed_statement: d.failed_statement.clone(),
        })
        .collect();
    let checkpoints = if rows.is_empty() {
        Vec::new()
    } else {
        session
            .query(
                "SELECT version, rows_done, total, last_key FROM instar_checkpoints ORDER BY version",
                &[],
            )?
            .iter()
            .map(|r| {
                let s = |i: usize| r.get(i).and_then(Value::as_str).map(String::from);
                let n = |i: usize| s(i).and_then(|v| v.parse().ok()).unwrap_or(0);
                CheckpointView {
                    version: s(0).unwrap_or_default(),
                    rows_done: n(1),
                    total: n(2),
                    last_key: s(3),
                }
            })
            .collect()
    };
    Ok(StatusView {
        database: client.url().database.clone(),
        schema_version: s.schema_version,
        migrations: s.migrations,
        problems: s.problems.iter().map(ToString::to_string).collect(),
        dirty,
        checkpoints,
        lock: lease::view(&session)?,
    })
}

/// The history, in order.
pub fn history(client: &Client) -> Result<Vec<HistoryRow>, Error> {
    Ok(tables::read(&client.session()?)?.0)
}

/// Clears every dirty mark (each migration becomes pending again) with a
/// `repair` row, under the lock. Refused while a migration's schema-change
/// operation may still be running.
pub fn repair(
    client: &Client,
    migrations: &[Migration],
    opts: &Options,
    reason: Option<&str>,
) -> Result<Vec<String>, Error> {
    let session = client.session()?;
    tables::ensure(client, &session)?;
    let run_id = instar_db::new_run_id();
    let lease = lock(client, &session, &run_id, opts)?;
    let (rows, ops) = tables::read(&session)?;
    let st = instar_core::history::derive(&rows);
    let mut repaired = Vec::new();
    for d in st.dirty.values() {
        if let Some(name) = ops.get(&d.row_id) {
            if let Some(op) = client.operation(name)? {
                if !op.done {
                    return Err(Error::Run(format!(
                        "{}: its schema-change operation {name} is still running; wait until it ends (`instar status`) before repairing",
                        d.version
                    )));
                }
            }
        }
        let mut r = tables::new_row(
            &d.version,
            &d.name,
            EventKind::Repair,
            d.direction,
            "schema",
        );
        r.checksum = d.checksum.clone();
        r.finished_at = Some(r.started_at.clone());
        r.statements_applied = d.statements_applied;
        r.statements_total = d.statements_total;
        r.run_id = Some(run_id.clone());
        r.note = reason.map(String::from);
        session.rw(|txn| {
            if let Some(l) = &lease {
                l.fence(txn)?;
            }
            tables::insert(txn, &r)
        })?;
        repaired.push(d.version.clone());
    }
    // A data migration whose script was edited mid-run starts over: its
    // checkpoint (taken with the old script) goes.
    for m in migrations {
        let v = m.version.as_str().to_string();
        let (_, n) = {
            let lease = &lease;
            session.rw(|txn| {
                if let Some(l) = lease {
                    l.fence(txn)?;
                }
                txn.execute(
                    "DELETE FROM instar_checkpoints WHERE version = @v AND checksum != @c",
                    &[
                        ("v", Param::Str(v.clone())),
                        ("c", Param::Str(m.checksum.clone())),
                    ],
                )
            })?
        };
        if n > 0 {
            repaired.push(format!("{v} (checkpoint of an edited data migration)"));
        }
    }
    if let Some(l) = lease {
        l.release(&session)?;
    }
    Ok(repaired)
}

/// Breaks a lease (expired, or any with `force`) and records it.
pub fn unlock(client: &Client, force: bool) -> Result<Option<LockView>, Error> {
    let session = client.session()?;
    let Some(v) = lease::unlock(&session, force)? else {
        return Ok(None);
    };
    let note = format!(
        "broke the lease of {} ({}) acquired {}, expiring {}{}",
        v.holder,
        v.host.as_deref().unwrap_or("unknown host"),
        v.acquired_at,
        v.expires_at,
        if v.expired {
            ""
        } else {
            " (forced: it was live)"
        }
    );
    let mut r = tables::new_row("", "", EventKind::Unlock, Direction::Up, "lock");
    r.note = Some(note);
    session.rw(|txn| tables::insert(txn, &r))?;
    Ok(Some(v))
}
