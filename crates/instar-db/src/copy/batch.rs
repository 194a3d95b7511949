//! One table's copy: keyset batches read from the source, each written to
//! the target in one transaction with its checkpoint.

use std::time::Instant;

use instar_core::Dialect;
use sqlx::Connection;

use super::{fit, Cell, Class, CopyOptions, Progress, TablePlan, TableReport};
use crate::conn::{query, Bind, Row};
use crate::{Db, Error};

/// `SELECT <every column as the driver reads it> FROM <table>`, and the
/// key's columns, quoted.
pub(crate) fn select_from(db: &Db, p: &TablePlan) -> (String, Vec<String>) {
    let e = db.engine;
    let cols: Vec<String> = p
        .columns
        .iter()
        .map(|c| e.copy_select(&e.quote(&c.name), &c.source))
        .collect();
    let key = p.key.iter().map(|&i| e.quote(&p.columns[i].name)).collect();
    (
        format!("SELECT {} FROM {}", cols.join(", "), e.quote(&p.table)),
        key,
    )
}

/// The `SELECT` of one batch after a key (binds: the key's values).
pub(crate) fn select_sql(db: &Db, p: &TablePlan, after: bool, limit: usize) -> String {
    let e = db.engine;
    let (mut sql, key) = select_from(db, p);
    if after {
        let binds: Vec<String> = p
            .key
            .iter()
            .enumerate()
            .map(|(n, &i)| {
                let c = &p.columns[i];
                let ph = e.placeholder(n + 1);
                if e.typed_params() && c.source != Class::Int {
                    format!("CAST({ph} AS {})", c.source_type)
                } else {
                    ph
                }
            })
            .collect();
        sql += &format!(" WHERE ({}) > ({})", key.join(", "), binds.join(", "));
    }
    sql += &format!(" ORDER BY {} LIMIT {limit}", key.join(", "));
    sql
}

/// A key's values as binds.
pub(crate) fn key_binds(key: &[Cell]) -> Vec<Bind> {
    key.iter()
        .map(|c| match c {
            Cell::Null => Bind::Text(None),
            Cell::Int(n) => Bind::Int(Some(*n)),
            Cell::Real(f) => Bind::Real(Some(*f)),
            Cell::Bool(b) => Bind::Bool(Some(*b)),
            Cell::Text(s) => Bind::Text(Some(s.clone())),
            Cell::Bytes(b) => Bind::Bytes(Some(b.clone())),
        })
        .collect()
}

/// One row read from the source, by the columns' classes.
pub(crate) fn decode(r: &Row, p: &TablePlan) -> Result<Vec<Cell>, sqlx::Error> {
    if let Row::Lite(values) = r {
        use rusqlite::types::Value as V;
        return Ok(values
            .iter()
            .map(|v| match v {
                V::Null => Cell::Null,
                V::Integer(n) => Cell::Int(*n),
                V::Real(f) => Cell::Real(*f),
                V::Text(s) => Cell::Text(s.clone()),
                V::Blob(b) => Cell::Bytes(b.clone()),
            })
            .collect());
    }
    let mut out = Vec::with_capacity(p.columns.len());
    for (i, c) in p.columns.iter().enumerate() {
        let cell = match c.source {
            Class::Int => r.try_get::<Option<i64>>(i)?.map(Cell::Int),
            Class::Real | Class::Real32 => match r.try_get::<Option<f64>>(i) {
                Ok(v) => v.map(Cell::Real),
                // Read as text where the engine's driver has no float for it.
                Err(_) => text_cell(r, i)?.map(|t| match t.trim().parse() {
                    Ok(f) => Cell::Real(f),
                    Err(_) => Cell::Text(t),
                }),
            },
            Class::Bool => match r.try_get::<Option<bool>>(i) {
                Ok(v) => v.map(Cell::Bool),
                Err(_) => r.try_get::<Option<i64>>(i)?.map(Cell::Int),
            },
            Class::Blob => r.try_get::<Option<Vec<u8>>>(i)?.map(Cell::Bytes),
            _ => text_cell(r, i)?.map(Cell::Text),
        };
        out.push(cell.unwrap_or(Cell::Null));
    }
    Ok(out)
}

/// Column `i` as text (MySQL's text travels as bytes through sqlx's Any driver).
fn text_cell(r: &Row, i: usize) -> Result<Option<String>, sqlx::Error> {
    match r.try_get::<Option<String>>(i) {
        Ok(v) => Ok(v),
        Err(_) => Ok(r
            .try_get::<Option<Vec<u8>>>(i)?
            .map(|b| String::from_utf8_lossy(&b).into_owned())),
    }
}

/// Reads the batch after `after` (the first one with `None`).
pub(crate) async fn read_batch(
    db: &mut Db,
    p: &TablePlan,
    after: Option<&[Cell]>,
    limit: usize,
) -> Result<Vec<Vec<Cell>>, Error> {
    let sql = select_sql(db, p, after.is_some(), limit);
    let rows = query(&sql)
        .binds(after.map(key_binds).unwrap_or_default())
        .fetch_all(&mut db.conn)
        .await
        .map_err(|e| Error::query(format!("reading {} from the source", p.table), e))?;
    rows.iter()
        .map(|r| decode(r, p))
        .collect::<Result<_, _>>()
        .map_err(|e| Error::query(format!("reading {} from the source", p.table), e))
}

/// Where a batch goes: the target's connection, and for PostgreSQL a native
/// one for `COPY`.
pub(crate) enum Sink {
    Db,
    Pg(sqlx::PgConnection),
}

/// Copies one table, resuming after its checkpoint; reports progress after
/// each batch.
pub async fn copy_table(
    from: &mut Db,
    to: &mut Db,
    p: &TablePlan,
    o: &CopyOptions,
    progress: &(dyn Fn(&Progress) + Send + Sync),
) -> Result<TableReport, Error> {
    let started = Instant::now();
    let mut report = TableReport {
        table: p.table.clone(),
        ..Default::default()
    };
    let checkpoints = to.sibling_table(super::CHECKPOINTS);
    let (mut after, mut rows, done) = match to.copy_checkpoint(&p.table).await? {
        // With --append, a table copied before is walked again (its rows that
        // are there already are skipped).
        Some(c) if !(c.done && o.append) => {
            let key: Option<Vec<Cell>> = c
                .last_key
                .and_then(|k| serde_json::from_str::<Vec<serde_json::Value>>(&k).ok())
                .map(|v| v.iter().map(Cell::from_json).collect());
            (key, c.rows, c.done)
        }
        _ => (None, 0, false),
    };
    report.resumed_after = rows;
    let total = from
        .table_rows()
        .await?
        .get(&p.table.to_lowercase())
        .copied();
    from.utc_session().await?;
    to.utc_session().await?;
    let mut sink = if to.dialect() == Dialect::Postgres {
        Sink::Pg(to.copy_connection().await?)
    } else {
        Sink::Db
    };
    let target = p.as_target();
    let mut walked = done;
    // The source is read (and its values fitted) on a thread of its own,
    // a few batches ahead, while this one writes to the target.
    let (mut batches, reader) = if walked {
        let (_, rx) = tokio::sync::mpsc::channel(1);
        (rx, None)
    } else {
        let (rx, handle) = spawn_reader(from.settings.clone(), p.clone(), after.clone(), o);
        (rx, Some(handle))
    };
    while !walked && !o.cancel.is_cancelled() {
        let Some(next) = batches.recv().await else {
            break;
        };
        let mut batch = next?;
        let last_key: Vec<Cell> = match batch.last() {
            Some(last) => p.key.iter().map(|&i| last[i].clone()).collect(),
            None => after.clone().unwrap_or_default(),
        };
        let read = batch.len() as u64;
        walked = batch.len() < o.batch;
        if o.append || p.target_rows > 0 {
            let there = existing_keys(to, &target, &batch).await?;
            batch.retain(|r| !there.contains(&canonical_key(&target, r)));
        }
        let at = Mark {
            table: &p.table,
            last_key: &last_key,
            rows: rows + read,
            done: walked,
        };
        write_batch(to, &mut sink, &checkpoints, p, &batch, &at).await?;
        report.copied += batch.len() as u64;
        report.skipped_existing += read - batch.len() as u64;
        rows += read;
        if read > 0 {
            after = Some(last_key);
        }
        progress(&Progress {
            table: p.table.clone(),
            rows,
            total,
        });
    }
    drop(batches);
    if let Some(h) = reader {
        let _ = h.join();
    }
    if let Sink::Pg(c) = sink {
        let _ = c.close().await;
    }
    if to.dialect() == Dialect::Postgres {
        reset_sequences(to, p).await?;
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Forgets the checkpoints of `tables` (a copy verified whole), in one
/// statement: a kill leaves all of them or none.
pub async fn clear_checkpoints(to: &mut Db, tables: &[String]) -> Result<(), Error> {
    if tables.is_empty() {
        return Ok(());
    }
    let t = to.sibling_table(super::CHECKPOINTS);
    let marks: Vec<String> = (1..=tables.len())
        .map(|n| to.engine.placeholder(n))
        .collect();
    let sql = format!("DELETE FROM {t} WHERE table_name IN ({})", marks.join(", "));
    query(&sql)
        .bind_texts(tables.to_vec())
        .execute(&mut to.conn)
        .await
        .map_err(|e| Error::query("clearing the copy's checkpoints", e))?;
    Ok(())
}

/// A row's key in a form both engines agree on.
pub(crate) fn canonical_key(p: &TablePlan, row: &[Cell]) -> Vec<serde_json::Value> {
    p.key
        .iter()
        .map(|&i| super::canonical(&row[i], &p.columns[i].target))
        .collect()
}

/// The rows of `db`'s table (as `p` reads it) whose keys are those of `rows`.
pub(crate) async fn rows_by_keys(
    db: &mut Db,
    p: &TablePlan,
    rows: &[Vec<Cell>],
) -> Result<Vec<Vec<Cell>>, Error> {
    let e = db.engine;
    let mut out = Vec::new();
    for chunk in rows.chunks(500) {
        if chunk.is_empty() {
            continue;
        }
        let mut n = 0;
        let mut binds = Vec::new();
        let tuples: Vec<String> = chunk
            .iter()
            .map(|r| {
                let ph: Vec<String> = p
                    .key
                    .iter()
                    .map(|&i| {
                        n += 1;
                        binds.push(r[i].clone());
                        let c = &p.columns[i];
                        let place = e.placeholder(n);
                        if e.typed_params() && !matches!(r[i], Cell::Int(_)) {
                            format!("CAST({place} AS {})", c.source_type)
                        } else {
                            place
                        }
                    })
                    .collect();
                format!("({})", ph.join(", "))
            })
            .collect();
        let (select, key) = select_from(db, p);
        let sql = format!(
            "{select} WHERE ({}) IN ({})",
            key.join(", "),
            tuples.join(", ")
        );
        let found = query(&sql)
            .binds(key_binds(&binds))
            .fetch_all(&mut db.conn)
            .await
            .map_err(|x| Error::query(format!("looking up rows of {} by key", p.table), x))?;
        for r in &found {
            out.push(decode(r, p).map_err(|x| Error::query(format!("reading {}", p.table), x))?);
        }
    }
    Ok(out)
}

/// The keys of `rows` that `to` has already (`--append`, or a table the
/// migrations seeded).
async fn existing_keys(
    to: &mut Db,
    target: &TablePlan,
    rows: &[Vec<Cell>],
) -> Result<std::collections::HashSet<Vec<serde_json::Value>>, Error> {
    Ok(rows_by_keys(to, target, rows)
        .await?
        .iter()
        .map(|r| canonical_key(target, r))
        .collect())
}

/// Where the reader thread sends the batches it read.
type Batches = tokio::sync::mpsc::Receiver<Result<Vec<Vec<Cell>>, Error>>;

/// Batches read after `after` on a thread of their own (with its own
/// connection and runtime), fitted to the target's columns, two ahead.
fn spawn_reader(
    settings: crate::Settings,
    p: TablePlan,
    after: Option<Vec<Cell>>,
    o: &CopyOptions,
) -> (Batches, std::thread::JoinHandle<()>) {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let (size, cancel) = (o.batch, o.cancel.clone());
    let handle = std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = tx.blocking_send(Err(Error::Copy(format!("starting the reader: {e}"))));
                return;
            }
        };
        rt.block_on(async move {
            let mut db = match Db::connect(&settings).await {
                Ok(db) => db,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            if let Err(e) = db.utc_session().await {
                let _ = tx.send(Err(e)).await;
                return;
            }
            let mut after = after;
            while !cancel.is_cancelled() {
                let r = async {
                    let mut rows = read_batch(&mut db, &p, after.as_deref(), size).await?;
                    for row in &mut rows {
                        fit_row(&p, row)?;
                    }
                    Ok(rows)
                }
                .await;
                let (last, n) = match &r {
                    Ok(rows) => (
                        rows.last()
                            .map(|l| p.key.iter().map(|&i| l[i].clone()).collect()),
                        rows.len(),
                    ),
                    Err(_) => (None, 0),
                };
                let failed = r.is_err();
                if tx.send(r).await.is_err() || failed || n < size {
                    break;
                }
                after = last;
            }
            let _ = db.close().await;
        });
    });
    (rx, handle)
}

/// The row's key, for messages.
pub(crate) fn key_text(p: &TablePlan, row: &[Cell]) -> String {
    let parts: Vec<String> = p
        .key
        .iter()
        .map(|&i| format!("{} = {}", p.columns[i].name, row[i].to_json()))
        .collect();
    parts.join(", ")
}

fn fit_row(p: &TablePlan, row: &mut [Cell]) -> Result<(), Error> {
    for (i, c) in p.columns.iter().enumerate() {
        let v = std::mem::replace(&mut row[i], Cell::Null);
        row[i] = fit(v, &c.target).map_err(|why| {
            Error::Copy(format!(
                "table {}, column {} ({} in the target), row {}: {why}; fix the row in the source, or change the column's type in a migration",
                p.table,
                c.name,
                c.target_type,
                key_text(p, row)
            ))
        })?;
    }
    Ok(())
}

/// Where a batch leaves its table's copy (its checkpoint).
struct Mark<'a> {
    table: &'a str,
    last_key: &'a [Cell],
    rows: u64,
    done: bool,
}

/// Writes `rows` and the checkpoint `at` in one transaction of the target.
async fn write_batch(
    to: &mut Db,
    sink: &mut Sink,
    checkpoints: &str,
    p: &TablePlan,
    rows: &[Vec<Cell>],
    at: &Mark<'_>,
) -> Result<(), Error> {
    let key = serde_json::Value::Array(at.last_key.iter().map(Cell::to_json).collect()).to_string();
    let e = to.engine;
    // One row per table, made by `prepare`: an UPDATE locks only that row
    // (tables copied in parallel never wait on each other's checkpoints).
    let save = format!(
        "UPDATE {checkpoints} SET last_key = {}, rows_copied = {}, done = {} WHERE table_name = {}",
        e.placeholder(1),
        e.placeholder(2),
        e.placeholder(3),
        e.placeholder(4)
    );
    let context = format!("writing {} into the target", p.table);
    let failed = |e: sqlx::Error| Error::query(context.clone(), e);
    let save_binds = vec![
        Bind::Text(Some(key.clone())),
        Bind::Int(Some(at.rows as i64)),
        Bind::Int(Some(at.done as i64)),
        Bind::Text(Some(at.table.to_string())),
    ];
    match sink {
        Sink::Pg(c) => {
            let mut tx = c.begin().await.map_err(failed)?;
            if !rows.is_empty() {
                let cols: Vec<String> = p.columns.iter().map(|c| e.quote(&c.name)).collect();
                let mut copy = tx
                    .copy_in_raw(&format!(
                        "COPY {} ({}) FROM STDIN",
                        e.quote(&p.table),
                        cols.join(", ")
                    ))
                    .await
                    .map_err(failed)?;
                copy.send(copy_text(p, rows)).await.map_err(failed)?;
                copy.finish().await.map_err(failed)?;
            }
            sqlx::query(&save)
                .bind(&key)
                .bind(at.rows as i64)
                .bind(at.done as i32)
                .bind(at.table)
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            Ok(())
        }
        Sink::Db => {
            crate::db::control(&mut to.conn, e.begin()).await?;
            let r = async {
                let per = (30_000 / p.columns.len().max(1)).clamp(1, 1000);
                for chunk in rows.chunks(per) {
                    let (sql, binds) = insert_sql(to, p, chunk);
                    query(&sql)
                        .binds(binds)
                        .execute(&mut to.conn)
                        .await
                        .map_err(failed)?;
                }
                query(&save)
                    .binds(save_binds.clone())
                    .execute(&mut to.conn)
                    .await
                    .map_err(failed)?;
                Ok::<(), Error>(())
            }
            .await;
            match r {
                Ok(()) => {
                    crate::db::control(&mut to.conn, "COMMIT").await?;
                    Ok(())
                }
                Err(err) => {
                    let _ = crate::db::control(&mut to.conn, "ROLLBACK").await;
                    Err(err)
                }
            }
        }
    }
}

/// A multi-row `INSERT`.
fn insert_sql(to: &Db, p: &TablePlan, rows: &[Vec<Cell>]) -> (String, Vec<Bind>) {
    let e = to.engine;
    let cols: Vec<String> = p.columns.iter().map(|c| e.quote(&c.name)).collect();
    let mut n = 0;
    let mut tuples = Vec::with_capacity(rows.len());
    let mut binds = Vec::with_capacity(rows.len() * cols.len());
    for row in rows {
        let mut ph = Vec::with_capacity(row.len());
        for (i, cell) in row.iter().enumerate() {
            n += 1;
            let c = &p.columns[i];
            let place = e.placeholder(n);
            ph.push(if e.typed_params() {
                format!("CAST({place} AS {})", c.target_type)
            } else {
                place
            });
            binds.push(match cell {
                Cell::Bool(b) if to.dialect() != Dialect::Postgres => Bind::Int(Some(*b as i64)),
                Cell::Real(f) if e.typed_params() => Bind::Text(Some(f.to_string())),
                Cell::Int(v) if e.typed_params() => Bind::Text(Some(v.to_string())),
                Cell::Bool(b) if e.typed_params() => Bind::Text(Some(b.to_string())),
                other => super::batch::key_binds(std::slice::from_ref(other)).remove(0),
            });
        }
        tuples.push(format!("({})", ph.join(", ")));
    }
    (
        format!(
            "INSERT INTO {} ({}) VALUES {}",
            e.quote(&p.table),
            cols.join(", "),
            tuples.join(", ")
        ),
        binds,
    )
}

/// The rows in `COPY … FROM STDIN`'s text format.
fn copy_text(p: &TablePlan, rows: &[Vec<Cell>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 64);
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            match cell {
                Cell::Null => out.extend_from_slice(b"\\N"),
                Cell::Bytes(b) => {
                    out.extend_from_slice(b"\\\\x");
                    for byte in b {
                        out.extend_from_slice(format!("{byte:02x}").as_bytes());
                    }
                }
                Cell::Bool(b) => out.push(if *b { b't' } else { b'f' }),
                Cell::Int(n) if p.columns[i].target == Class::Bool => {
                    out.push(if *n != 0 { b't' } else { b'f' })
                }
                other => {
                    let text = other.text().unwrap_or_default();
                    for ch in text.bytes() {
                        match ch {
                            b'\\' => out.extend_from_slice(b"\\\\"),
                            b'\t' => out.extend_from_slice(b"\\t"),
                            b'\n' => out.extend_from_slice(b"\\n"),
                            b'\r' => out.extend_from_slice(b"\\r"),
                            c => out.push(c),
                        }
                    }
                }
            }
        }
        out.push(b'\n');
    }
    out
}

/// PostgreSQL: each serial or identity column's sequence set past the
/// largest value copied, so the application's next insert does not collide.
async fn reset_sequences(to: &mut Db, p: &TablePlan) -> Result<(), Error> {
    for c in p.columns.iter().filter(|c| c.target == Class::Int) {
        let table = to.engine.quote(&p.table);
        let col = to.engine.quote(&c.name);
        let sql = format!(
            "SELECT setval(s, COALESCE((SELECT max({col}) FROM {table}), 0) + 1, false) FROM pg_get_serial_sequence(quote_ident($1), $2) AS s WHERE s IS NOT NULL"
        );
        query(&sql)
            .bind(p.table.clone())
            .bind(c.name.clone())
            .fetch_all(&mut to.conn)
            .await
            .map_err(|e| {
                Error::query(
                    format!("resetting the sequence of {}.{}", p.table, c.name),
                    e,
                )
            })?;
    }
    Ok(())
}
