//! A backfill: one `UPDATE` walked over a table in keyset batches outside any
//! migration's history (an online migration's expand phase), with the
//! checkpoints, resume after a kill, progress, `--parallel` slices and
//! throttling of a data migration. The caller holds the run lock.

use instar_core::event::EventSink;
use instar_core::history::Direction;
use instar_core::meta::{DataConfig, KeyColumns, Kind, Meta, OnError};
use instar_core::plan::Step;
use instar_core::Migration;

use super::{checkpoints, walk_all, Outcome, Record};
use crate::runner::RunOptions;
use crate::{Db, Error};

/// One backfill: `statement` holds `{batch}`; `name` names its checkpoints.
pub struct Backfill<'a> {
    /// The checkpoints' name (`online:<version>:<table>`).
    pub name: &'a str,
    /// The table walked.
    pub table: &'a str,
    /// Its key columns.
    pub key: Vec<String>,
    /// The `UPDATE … WHERE {batch}`.
    pub statement: &'a str,
    /// Rows per batch.
    pub batch_size: u64,
}

/// Walks `b` to the end (or until the time budget or a cancel pauses it):
/// `true` when it finished. A checkpoint left by an earlier walk of the same
/// backfill is resumed.
pub async fn backfill(
    db: &mut Db,
    b: &Backfill<'_>,
    opts: &RunOptions,
    sink: &mut dyn EventSink,
) -> Result<bool, Error> {
    let checksum = {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(b.statement.as_bytes()))
    };
    let m = Migration {
        version: instar_core::Version::parse("0", instar_core::Layout::Instar)
            .ok_or_else(|| Error::Unsupported("version 0".into()))?,
        name: b.name.to_string(),
        layout: instar_core::Layout::Instar,
        up: instar_core::source::Script {
            path: format!("backfill of {}", b.table).into(),
            sql: b.statement.to_string(),
            original: None,
        },
        down: None,
        meta: Meta {
            kind: Some(Kind::Data),
            data: Some(DataConfig {
                table: b.table.to_string(),
                key: KeyColumns::Many(b.key.clone()),
                batch_size: b.batch_size,
                pause: None,
                target_batch_time: None,
                on_error: OnError::Stop,
                exact_count: false,
            }),
            ..Default::default()
        },
        transaction: true,
        down_transaction: None,
        checksum,
        variants: Vec::new(),
        lenses: None,
    };
    let mut step = Step {
        index: 0,
        version: b.name.to_string(),
        direction: Direction::Up,
        resume_from: 0,
        resume_row: None,
        in_flight: false,
    };
    let n = super::checkpoint::names(db);
    super::checkpoint::ensure_tables(db, &n).await?;
    if checkpoints(db)
        .await?
        .iter()
        .any(|c| c.version == step.version && c.checksum.as_ref() == Some(&m.checksum))
    {
        step.resume_row = Some(0);
    }
    Ok(matches!(
        walk_all(db, &m, &step, opts, sink, Record::CheckpointsOnly).await?,
        Outcome::Done
    ))
}

/// Forgets the checkpoints of backfill `name` (a rolled-back expansion's).
pub async fn forget_backfill(db: &mut Db, name: &str) -> Result<(), Error> {
    if !db.table_exists("instar_checkpoints").await? {
        return Ok(());
    }
    let n = super::checkpoint::names(db);
    let sql = format!(
        "DELETE FROM {} WHERE version = {}",
        n.checkpoints,
        db.engine.placeholder(1)
    );
    crate::conn::query(&sql)
        .bind(name)
        .execute(&mut db.conn)
        .await
        .map_err(|e| Error::query("forgetting a backfill's checkpoints", e))?;
    Ok(())
}
