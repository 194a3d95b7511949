//! Documents migrations: every document of a collection moved to one version,
//! in the same keyset batches, checkpoints and slices as a data migration.
//!
//! Each batch is one transaction. First, for every version whose path to the
//! target fuses into one edit ([`instar_lens::fuse`]) that the engine's JSON
//! functions can express, one set-based `UPDATE` moves that version's
//! documents of the batch — those that meet the edit's conditions (no
//! complement needed, none kept from before) — without any of them passing
//! through Instar. Then the documents of the batch still at another version
//! are read (their rows locked until the commit), translated in process with
//! their complements, and written back. A document that cannot be translated
//! stops the run (`on_error = "stop"`: the batch rolls back, the message names
//! the collection, key, lens file and op) or stays as it is, recorded in
//! `instar_errors` (`"skip"`).

use std::collections::BTreeMap;
use std::sync::Arc;

use instar_core::history::Direction;
use instar_core::meta::{DocumentsConfig, OnError, BATCH_PLACEHOLDER};
use instar_core::plan::Step;
use instar_core::time;
use instar_lens::graph::{Complements, Graph};
use serde::Serialize;
use serde_json::Value;

use super::checkpoint::{Checkpoint, Names};
use super::keys::bind_key;
use super::walk::{save, Job};
use crate::db::control;
use crate::docs::text_at;
use crate::docs::{raw_row, DocTable, Docs};
use crate::engine::marks;
use crate::{Db, Error};

/// A JSON Schema check of a document at one version: `Err` says what is wrong.
pub type Validator = dyn Fn(&str, &Value) -> Result<(), String> + Send + Sync;

/// A collection, as a documents migration needs it.
#[derive(Clone)]
pub struct DocCollection {
    /// Where its documents are.
    pub table: DocTable,
    /// Its versions and lenses.
    pub graph: Arc<Graph>,
    /// The version of a document without one.
    pub default_version: String,
    /// Checks each translated document against its version's schema (`validate = true`).
    pub validate: Option<Arc<Validator>>,
}

impl std::fmt::Debug for DocCollection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocCollection")
            .field("table", &self.table)
            .field("default_version", &self.default_version)
            .field("validate", &self.validate.is_some())
            .finish()
    }
}

/// How the documents at one version get to the target.
#[derive(Debug, Clone, Serialize)]
pub struct Move {
    /// Their version.
    pub from: String,
    /// The `UPDATE` that moves them, run once per batch (`{batch}` is the
    /// batch's key range), when the path is pushed down to SQL.
    pub sql: Option<String>,
    /// Which of them are translated in process, and why.
    pub in_process: String,
}

/// One documents migration step, ready to walk.
pub(super) struct Mover<'a> {
    coll: &'a DocCollection,
    docs: Docs,
    pub(super) to: String,
    pub(super) moves: Vec<Move>,
    on_error: OnError,
}

/// The version a step moves documents to: `to`, or on the way down `down_to`
/// (default: the declared version before `to`).
fn target(coll: &DocCollection, cfg: &DocumentsConfig, d: Direction) -> Result<String, String> {
    let versions = coll.graph.versions();
    let declared = |v: &str| versions.iter().any(|x| x == v);
    if !declared(&cfg.to) {
        return Err(format!(
            "[documents] to = {:?} is not a declared version of collection {} (versions: {})",
            cfg.to,
            coll.table.collection,
            versions.join(", ")
        ));
    }
    if d == Direction::Up {
        return Ok(cfg.to.clone());
    }
    match &cfg.down_to {
        Some(v) if declared(v) => Ok(v.clone()),
        Some(v) => Err(format!(
            "[documents] down_to = {v:?} is not a declared version (versions: {})",
            versions.join(", ")
        )),
        None => {
            let i = versions.iter().position(|x| *x == cfg.to).unwrap_or(0);
            i.checked_sub(1)
                .map(|p| versions[p].clone())
                .ok_or_else(|| format!("{} is the first version: there is none to move back to; set [documents] down_to", cfg.to))
        }
    }
}

impl<'a> Mover<'a> {
    /// Opens the collection's table and works out, version by version, how
    /// its documents get to the step's target.
    /// A dry run (`dry`) creates nothing.
    pub(super) async fn new(
        db: &mut Db,
        coll: &'a DocCollection,
        cfg: &DocumentsConfig,
        step: &Step,
        dry: bool,
    ) -> Result<Mover<'a>, Error> {
        let refuse = |reason: String| Error::DataRefused {
            version: step.version.clone(),
            reason,
        };
        let to = target(coll, cfg, step.direction).map_err(refuse)?;
        if coll.table.version.is_none() && to != coll.default_version {
            return Err(refuse(format!(
                "collection {} has no version_column, so every document is at {}; add a version column to store documents at {to}",
                coll.table.collection, coll.default_version
            )));
        }
        let mut docs = Docs::open(db, coll.table.clone()).await?;
        if !dry {
            docs.ensure_complements(db).await?;
        }
        let mut mover = Mover {
            coll,
            docs,
            to,
            moves: Vec::new(),
            on_error: cfg.on_error,
        };
        if coll.table.version.is_some() {
            for v in coll.graph.versions() {
                if *v != mover.to {
                    let m = mover.plan_move(db, v, cfg.pushdown);
                    mover.moves.push(m);
                }
            }
        }
        Ok(mover)
    }

    fn text(&self, db: &Db, s: &str) -> String {
        db.engine.json().text(s)
    }

    /// The rows whose version column says `v` (NULL counts as the default version).
    fn at_version(&self, db: &Db, v: &str) -> String {
        let (_, _, _, col) = self.docs.names();
        let col = col.unwrap_or("NULL");
        if v == self.coll.default_version {
            format!("({col} = {} OR {col} IS NULL)", self.text(db, v))
        } else {
            format!("{col} = {}", self.text(db, v))
        }
    }

    /// The rows not yet at the target.
    fn pending(&self, db: &Db) -> String {
        let (_, _, _, col) = self.docs.names();
        let Some(col) = col else {
            return "1 = 0".into();
        };
        let to = self.text(db, &self.to);
        if self.to == self.coll.default_version {
            format!("({col} IS NOT NULL AND {col} <> {to})")
        } else {
            format!("({col} IS NULL OR {col} <> {to})")
        }
    }

    fn plan_move(&self, db: &Db, from: &str, pushdown: bool) -> Move {
        let in_process = |why: String| Move {
            from: from.to_string(),
            sql: None,
            in_process: format!("all, in process: {why}"),
        };
        if !pushdown {
            return in_process("[documents] pushdown = false".into());
        }
        if self.coll.validate.is_some() {
            return in_process(
                "validate = true checks every translated document against its schema".into(),
            );
        }
        let fused = match self.coll.graph.fusion(from, &self.to) {
            Ok(f) => f,
            Err(why) => return in_process(why),
        };
        let (table, key, body, version) = self.docs.names();
        let j = db.engine.json();
        let (edit, shape) = match crate::json_sql::pushdown(j, &fused, body, self.docs.body_type())
        {
            Ok(p) => p,
            Err(why) => return in_process(why),
        };
        let sql = format!(
            "UPDATE {table} SET {body} = {edit}, {} = {} WHERE {BATCH_PLACEHOLDER} AND {} AND {shape} AND NOT EXISTS (SELECT 1 FROM {} WHERE collection = {} AND doc_key = {})",
            version.unwrap_or("NULL"),
            self.text(db, &self.to),
            self.at_version(db, from),
            self.docs.complements_table(),
            self.text(db, &self.coll.table.collection),
            db.engine.as_text(&format!("{table}.{key}")),
        );
        let mut conditions = Vec::new();
        if !fused.absent.is_empty() {
            conditions.push(format!("a field {} is there", fused.absent.join(", ")));
        }
        if !fused.present.is_empty() {
            conditions.push(format!("a field {} is missing", fused.present.join(", ")));
        }
        conditions.push("it has complements kept from before".into());
        Move {
            from: from.to_string(),
            sql: Some(sql),
            in_process: format!(
                "only documents the UPDATE leaves (not a JSON object, or {})",
                conditions.join(", or ")
            ),
        }
    }

    /// Whether a batch can be rehearsed (its UPDATEs name `instar_complements`).
    pub(super) fn can_rehearse(&self) -> bool {
        self.docs.has_complements()
    }

    /// One batch in one transaction: the pushed-down UPDATEs, then the rest
    /// in process, then the checkpoint; committed, or (a dry run, `dry`)
    /// rolled back without a checkpoint.
    pub(super) async fn batch(
        &self,
        db: &mut Db,
        job: &Job<'_>,
        last: Option<&[Value]>,
        end: &[Value],
        cp: &Checkpoint,
        dry: bool,
    ) -> Result<(u64, u64), Error> {
        control(&mut db.conn, db.engine.begin()).await?;
        if let Err(e) = job.fence(db, cp.slice).await {
            let _ = crate::conn::exec(&mut db.conn, "ROLLBACK").await;
            return Err(e);
        }
        match self.batch_in(db, job, last, end, cp, dry).await {
            Ok(done) => {
                let finish = if dry { "ROLLBACK" } else { "COMMIT" };
                control(&mut db.conn, finish).await?;
                Ok(done)
            }
            Err(e) if dry => {
                let _ = crate::conn::exec(&mut db.conn, "ROLLBACK").await;
                Err(e)
            }
            Err(e) => {
                let _ = crate::conn::exec(&mut db.conn, "ROLLBACK").await;
                let message = match &e {
                    Error::BatchFailed { message, .. } => message.clone(),
                    other => other.to_string(),
                };
                job.record_failure(db, last, end, &message).await?;
                Err(match e {
                    Error::BatchFailed { .. } => e,
                    other => job.failed(last, end, other.to_string(), cp),
                })
            }
        }
    }

    async fn batch_in(
        &self,
        db: &mut Db,
        job: &Job<'_>,
        last: Option<&[Value]>,
        end: &[Value],
        cp: &Checkpoint,
        dry: bool,
    ) -> Result<(u64, u64), Error> {
        let s = job.shape;
        let mut rows = 0u64;
        for m in &self.moves {
            let Some(sql) = &m.sql else { continue };
            let mut k = 0;
            let stmt = sql.replace(BATCH_PLACEHOLDER, &s.range(last.is_some(), &mut k));
            let mut q = crate::conn::query(&stmt);
            if let Some(l) = last {
                q = bind_key(q, l)?;
            }
            let r = bind_key(q, end)?
                .execute(&mut db.conn)
                .await
                .map_err(|e| Error::query(format!("moving documents at {} in SQL", m.from), e))?;
            rows += r.rows_affected;
        }
        let (moved, errors) = self.in_process(db, job, last, end, cp, dry).await?;
        rows += moved;
        if dry {
            return Ok((rows, errors));
        }
        let advance = super::checkpoint::advance_sql(db, job.names);
        save(&advance, job.step, cp, end, rows, errors)
            .execute(&mut db.conn)
            .await
            .map_err(|e| Error::query("writing the checkpoint", e))?;
        Ok((rows, errors))
    }

    /// The batch's documents not at the target yet, translated here.
    async fn in_process(
        &self,
        db: &mut Db,
        job: &Job<'_>,
        last: Option<&[Value]>,
        end: &[Value],
        cp: &Checkpoint,
        dry: bool,
    ) -> Result<(u64, u64), Error> {
        let s = job.shape;
        let keys: Vec<Vec<Value>> = last
            .map(<[Value]>::to_vec)
            .into_iter()
            .chain([end.to_vec()])
            .collect();
        let mut k = 0;
        let range = s.range(last.is_some(), &mut k);
        let sql = format!(
            "{} WHERE {range} AND {} ORDER BY {}{}",
            self.docs.select_sql(db),
            self.pending(db),
            s.order(false),
            db.engine.lock_rows()
        );
        let mut q = crate::conn::query(&sql);
        for key in &keys {
            q = bind_key(q, key)?;
        }
        let found = q.fetch_all(&mut db.conn).await.map_err(|e| {
            Error::query(
                format!("reading documents of {}", self.coll.table.collection),
                e,
            )
        })?;
        if found.is_empty() {
            return Ok((0, 0));
        }
        let docs: Vec<(String, String, Option<String>)> = found
            .iter()
            .map(|r| raw_row(r, &self.coll.table.collection))
            .collect::<Result<_, _>>()?;
        let comps = self.complements(db, &range, &keys).await?;
        let batch: Vec<(Option<&String>, &str, Option<&str>)> = docs
            .iter()
            .map(|(key, raw, version)| (comps.get(key), raw.as_str(), version.as_deref()))
            .collect();
        // With a WebAssembly stage on the way, the batch is one stream;
        // otherwise each document is translated and written in turn, so a
        // batch's translated bodies are never all held at once.
        let mut streamed = self
            .coll
            .graph
            .has_wasm()
            .then(|| self.translate_all(&batch).into_iter());
        let (mut moved, mut errors) = (0, 0);
        for ((key, _, _), doc) in docs.iter().zip(batch) {
            let result = match &mut streamed {
                Some(results) => results.next().unwrap_or(Ok(None)),
                None => self.translate(doc),
            };
            match result {
                Ok(None) => {}
                Ok(Some((body, c))) => {
                    let c = (!c.is_empty())
                        .then(|| serde_json::to_value(&c))
                        .transpose()
                        .map_err(|e| Error::Unsupported(format!("encoding complements: {e}")))?;
                    self.docs
                        .rewrite(db, key, &body, &self.to, c.as_ref())
                        .await?;
                    moved += 1;
                }
                Err(why) => {
                    let message = format!(
                        "collection {}, key {key}: {why}",
                        self.coll.table.collection
                    );
                    if self.on_error == OnError::Stop {
                        return Err(job.failed(last, end, message, cp));
                    }
                    if !dry {
                        record(db, job.names, &job.step.version, key, &message).await?;
                    }
                    errors += 1;
                }
            }
        }
        Ok((moved, errors))
    }

    /// The complements kept for the batch's documents, by key.
    async fn complements(
        &self,
        db: &mut Db,
        range: &str,
        keys: &[Vec<Value>],
    ) -> Result<BTreeMap<String, String>, Error> {
        let (table, key, _, _) = self.docs.names();
        let sql = format!(
            "SELECT doc_key, complement FROM {} WHERE collection = {} AND doc_key IN (SELECT {} FROM {table} WHERE {range}) ORDER BY id",
            self.docs.complements_table(),
            self.text(db, &self.coll.table.collection),
            db.engine.as_text(key),
        );
        let mut q = crate::conn::query(&sql);
        for k in keys {
            q = bind_key(q, k)?;
        }
        let rows = q
            .fetch_all(&mut db.conn)
            .await
            .map_err(|e| Error::query("reading the batch's complements", e))?;
        let mut out = BTreeMap::new();
        let failed = |e| Error::query("reading the batch's complements", e);
        for r in &rows {
            let k = text_at(r, 0).map_err(failed)?.unwrap_or_default();
            let c = text_at(r, 1).map_err(failed)?.unwrap_or_default();
            out.insert(k, c);
        }
        Ok(out)
    }

    /// One stored document, ready to move: its body, version and
    /// complements; `None` when it is at the target already, `Err` saying why
    /// it cannot be moved.
    fn prepare(
        &self,
        raw: &str,
        version: Option<&str>,
        complements: Option<&String>,
    ) -> Result<Option<(Value, String, Complements)>, String> {
        let body: Value = serde_json::from_str(raw)
            .map_err(|e| format!("the stored body is not JSON ({e}); it is left as it is"))?;
        let from = version
            .filter(|v| !v.is_empty())
            .unwrap_or(&self.coll.default_version);
        let versions = self.coll.graph.versions();
        if !versions.iter().any(|v| v == from) {
            return Err(format!(
                "its version {from} is not declared (versions: {}); it is left as it is",
                versions.join(", ")
            ));
        }
        if from == self.to {
            return Ok(None);
        }
        let kept: Complements = match complements {
            Some(c) => serde_json::from_str(c)
                .map_err(|e| format!("its complements cannot be read ({e})"))?,
            None => Complements::new(),
        };
        Ok(Some((body, from.to_string(), kept)))
    }

    /// A translated document checked against the target's schema (`validate`).
    fn checked(&self, moved: (Value, Complements)) -> Result<Option<(Value, Complements)>, String> {
        if let Some(check) = &self.coll.validate {
            check(&self.to, &moved.0).map_err(|why| {
                format!(
                    "translated to {}, it does not match the version's schema: {why}",
                    self.to
                )
            })?;
        }
        Ok(Some(moved))
    }

    /// One stored document `(complements, raw, version)` moved to the
    /// target: `None` when it is there already.
    fn translate(
        &self,
        (comps, raw, version): (Option<&String>, &str, Option<&str>),
    ) -> Result<Option<(Value, Complements)>, String> {
        let Some((body, from, kept)) = self.prepare(raw, version, comps)? else {
            return Ok(None);
        };
        let moved = self
            .coll
            .graph
            .moved(&body, &from, &self.to, kept)
            .map_err(|e| e.to_string())?;
        self.checked(moved)
    }

    /// The batch's documents translated together, in order: a WebAssembly
    /// stage streams them through one instance ([`Graph::moved_many`]).
    fn translate_all(
        &self,
        docs: &[(Option<&String>, &str, Option<&str>)],
    ) -> Vec<Result<Option<(Value, Complements)>, String>> {
        let mut out: Vec<Result<Option<(Value, Complements)>, String>> =
            Vec::with_capacity(docs.len());
        let mut ready = Vec::new();
        let mut at = Vec::new();
        for (i, (comps, raw, version)) in docs.iter().enumerate() {
            match self.prepare(raw, *version, *comps) {
                Ok(Some(p)) => {
                    ready.push(p);
                    at.push(i);
                    out.push(Ok(None));
                }
                other => out.push(other.map(|_| None)),
            }
        }
        for (i, r) in at
            .into_iter()
            .zip(self.coll.graph.moved_many(ready, &self.to))
        {
            out[i] = r
                .map_err(|e| e.to_string())
                .and_then(|moved| self.checked(moved));
        }
        out
    }
}

/// Records a document left as it was (`on_error = "skip"`).
async fn record(
    db: &mut Db,
    n: &Names,
    version: &str,
    key: &str,
    message: &str,
) -> Result<(), Error> {
    let sql = marks(
        db.engine,
        &format!(
            "INSERT INTO {} (version, row_key, error, at) VALUES (?, ?, ?, ?)",
            n.errors
        ),
    );
    crate::conn::query(&sql)
        .bind(version.to_string())
        .bind(Value::from(vec![Value::from(key)]).to_string())
        .bind(message.to_string())
        .bind(time::now_rfc3339())
        .execute(&mut db.conn)
        .await
        .map_err(|e| Error::query("recording a skipped document", e))?;
    Ok(())
}
