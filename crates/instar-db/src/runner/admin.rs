//! `repair` and `baseline`: the history rows that change state without running a script.

use std::time::Duration;

use instar_core::history::{derive, Direction, EventKind};
use instar_core::Source;

use crate::{Db, Error};

use super::new_row;

/// What `repair` should do.
#[derive(Debug, Clone, Default)]
pub struct RepairOptions {
    /// Record the current checksum of every edited applied migration.
    pub accept_checksums: bool,
    /// Mark this dirty (or pending) migration as applied instead of clearing it.
    pub mark_applied: Option<String>,
    /// Count the statement this dirty migration stopped at as done (it took effect
    /// although the run that sent it died before recording it); `up` then resumes after it.
    pub statement_done: Option<String>,
    /// Why; stored in the history.
    pub reason: Option<String>,
}

/// Clears dirty marks (the migrations become pending again), marks one applied,
/// or accepts edited checksums; each action is a history row. Returns what it did.
pub async fn repair(
    db: &mut Db,
    source: &Source,
    opts: &RepairOptions,
    lock_timeout: Duration,
) -> Result<Vec<String>, Error> {
    db.lock(lock_timeout, || {}).await?;
    let r = repair_locked(db, source, opts).await;
    db.unlock().await?;
    r
}

async fn repair_locked(
    db: &mut Db,
    source: &Source,
    opts: &RepairOptions,
) -> Result<Vec<String>, Error> {
    // The history is only created (or upgraded) when there is something to write.
    let state = derive(&db.read_history().await?);
    let mut done = Vec::new();
    let mut rows = Vec::new();
    if let Some(v) = &opts.statement_done {
        let d = state.dirty_of(v.as_str()).ok_or_else(|| {
            Error::Unsupported(format!(
                "--statement-done {v}: migration {v} is not dirty (`instar status` lists the dirty ones)"
            ))
        })?;
        let next = d.statements_applied + 1;
        let (h, conn) = db.parts();
        h.progress(conn, d.row_id, next as usize, None, None)
            .await?;
        let note = format!(
            "statement {next} counted as done by repair: {}",
            opts.reason.as_deref().unwrap_or("no reason given")
        );
        let sql = crate::engine::marks(
            db.engine,
            &format!("UPDATE {} SET note = ? WHERE id = ?", db.table),
        );
        crate::conn::query(&sql)
            .bind(note)
            .bind(d.row_id)
            .execute(&mut db.conn)
            .await
            .map_err(|e| Error::query("recording the repair", e))?;
        return Ok(vec![format!(
            "counted statement {next} of {} as done; `instar up` resumes after it",
            d.version
        )]);
    }
    if let Some(v) = &opts.mark_applied {
        let m = source
            .find(v)
            .ok_or_else(|| instar_core::Error::UnknownVersion(v.clone()))?;
        let mut row = new_row(m, EventKind::Apply, Direction::Up);
        row.finished_at = Some(row.started_at.clone());
        row.note = Some(format!(
            "marked applied by repair: {}",
            opts.reason.as_deref().unwrap_or("no reason given")
        ));
        rows.push(row);
        done.push(format!("marked {} applied", m.version));
    }
    for d in state.dirty.values() {
        if Some(&d.version) == opts.mark_applied.as_ref() {
            continue;
        }
        let m = source.find(&d.version);
        let mut row = match m {
            Some(m) => new_row(m, EventKind::Repair, d.direction),
            None => {
                let mut r = new_row(
                    source
                        .migrations
                        .first()
                        .ok_or_else(|| instar_core::Error::UnknownVersion(d.version.clone()))?,
                    EventKind::Repair,
                    d.direction,
                );
                r.version = d.version.clone();
                r.name = d.name.clone();
                r.checksum = d.checksum.clone();
                r
            }
        };
        row.note = Some(format!(
            "dirty mark cleared: {}",
            opts.reason.as_deref().unwrap_or("no reason given")
        ));
        rows.push(row);
        done.push(format!(
            "cleared the dirty mark of {} ({} of {} statements had run); it is pending again",
            d.version, d.statements_applied, d.statements_total
        ));
    }
    if opts.accept_checksums {
        for m in &source.migrations {
            if let Some(a) = state.applied_of(m.version.as_str()) {
                if a.checksum.as_deref() != Some(m.checksum.as_str()) && !m.is_repeatable() {
                    let mut row = new_row(m, EventKind::Realign, Direction::Up);
                    row.note = Some(format!(
                        "checksum {} accepted (was {}): {}",
                        m.checksum,
                        a.checksum.as_deref().unwrap_or("none"),
                        opts.reason.as_deref().unwrap_or("no reason given")
                    ));
                    rows.push(row);
                    done.push(format!("accepted the new checksum of {}", m.version));
                }
                if let (Some(was), Some(now)) = (&a.lenses, &m.lenses) {
                    if was != now {
                        let mut row = new_row(m, EventKind::Realign, Direction::Up);
                        row.statement_hashes =
                            Some(format!("{}{now}", instar_core::history::LENSES));
                        row.note = Some(format!(
                            "lenses {now} accepted (were {was}): {}",
                            opts.reason.as_deref().unwrap_or("no reason given")
                        ));
                        rows.push(row);
                        done.push(format!("accepted the new lenses of {}", m.version));
                    }
                }
            }
        }
    }
    if rows.is_empty() {
        return Ok(done);
    }
    db.ensure_history().await?;
    let (history, conn) = db.parts();
    for row in &rows {
        history.insert(conn, row).await?;
    }
    Ok(done)
}

/// Records that everything up to and including `version` is already in the
/// database (adopting an existing database). Refused when anything is applied.
pub async fn baseline(
    db: &mut Db,
    source: &Source,
    version: &str,
    note: Option<String>,
    lock_timeout: Duration,
) -> Result<(), Error> {
    let m = source
        .find(version)
        .ok_or_else(|| instar_core::Error::UnknownVersion(version.into()))?
        .clone();
    if note
        .as_deref()
        .is_some_and(|n| n.starts_with(instar_core::history::ADOPTED))
    {
        return Err(Error::Unsupported(format!(
            "a baseline note may not begin with {:?}: that marks the rows `instar adopt` writes (one migration each); reword the note",
            instar_core::history::ADOPTED
        )));
    }
    db.lock(lock_timeout, || {}).await?;
    let r = async {
        db.ensure_history().await?;
        let state = derive(&db.read_history().await?);
        if !state.applied.is_empty() || state.baseline.is_some() {
            return Err(Error::Unsupported("baseline is only for a database with no applied migrations; this one has history already".into()));
        }
        let mut row = new_row(&m, EventKind::Baseline, Direction::Up);
        row.finished_at = Some(row.started_at.clone());
        row.note = note;
        let (history, conn) = db.parts();
        history.insert(conn, &row).await.map(|_| ())
    }
    .await;
    db.unlock().await?;
    r
}
