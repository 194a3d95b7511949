//! Data migrations on Spanner: the script's one DML statement over keyset
//! batches of a single-column key (INT64 or STRING), each batch committed in
//! one transaction with its checkpoint and the lease's renewal. A batch is
//! sized within Spanner's mutation limit (80,000 per commit, counting each
//! column and index entry a row's change can write).

use std::time::Instant;

use instar_core::history::{Direction, EventKind};
use instar_core::meta::{DataConfig, KeyColumns};
use instar_core::source::Migration;
use serde_json::Value;

use crate::client::{Param, Session};
use crate::run::{finish, row, Ctx, Event};
use crate::Error;

/// Spanner's limit of mutations in one commit.
pub const MUTATION_LIMIT: u64 = 80_000;

/// How a data migration ended.
pub(crate) enum Outcome {
    /// Every batch committed.
    Finished {
        /// Rows walked.
        rows: i64,
    },
    /// Stopped at a checkpoint (`max_duration` spent).
    Stopped,
}

/// Where a walk stands (its checkpoint row).
#[derive(Debug, Clone)]
struct Walk {
    last: Option<String>,
    upper: Option<String>,
    rows_done: i64,
    batches: i64,
    total: i64,
}

fn first(rows: &[Vec<Value>], i: usize) -> Option<String> {
    rows.first()
        .and_then(|r| r.get(i))
        .and_then(Value::as_str)
        .map(String::from)
}

fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', ""))
}

/// The key's Spanner type: `INT64` or `STRING` (others are refused).
fn key_type(session: &Session, table: &str, key: &str) -> Result<&'static str, Error> {
    let rows = session.query(
        "SELECT spanner_type FROM information_schema.columns WHERE table_schema = '' AND table_name = @t AND column_name = @c",
        &[("t", Param::Str(table.into())), ("c", Param::Str(key.into()))],
    )?;
    match first(&rows, 0).as_deref() {
        None => Err(Error::Run(format!(
            "the data migration's key column {table}.{key} does not exist"
        ))),
        Some("INT64") => Ok("INT64"),
        Some(t) if t.starts_with("STRING") => Ok("STRING"),
        Some(t) => Err(Error::Run(format!(
            "the data migration's key {table}.{key} is {t}: Spanner batches walk INT64 or STRING keys"
        ))),
    }
}

/// The most rows one batch can change within the mutation limit: every
/// column of the table and every indexed column may be written per row.
fn rows_per_commit(session: &Session, table: &str) -> Result<u64, Error> {
    let p = [("t", Param::Str(table.into()))];
    let cols = session.query(
        "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = '' AND table_name = @t",
        &p,
    )?;
    let idx = session.query(
        "SELECT COUNT(*) FROM information_schema.index_columns WHERE table_schema = '' AND table_name = @t AND index_name != 'PRIMARY_KEY'",
        &p,
    )?;
    let n = |r: &[Vec<Value>]| first(r, 0).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    Ok((MUTATION_LIMIT / (n(&cols) + n(&idx)).max(1)).max(1))
}

fn param(kind: &str, v: &str) -> Param {
    match kind {
        "INT64" => v.parse().map_or_else(|_| Param::Str(v.into()), Param::Int),
        _ => Param::Str(v.into()),
    }
}

fn check_script(m: &Migration, sql: &str) -> Result<String, Error> {
    let stmts = crate::script::statements(sql, &m.up.path)?;
    match stmts.as_slice() {
        [(s, line)] if s.contains("{batch}") => {
            crate::script::kind(s, &m.up.path, *line)?;
            Ok(s.clone())
        }
        [(s, line)] => Err(Error::Run(format!(
            "{}:{line}: a data migration's statement needs `{{batch}}` where its key range goes (`UPDATE t SET … WHERE {{batch}}`); got: {s}",
            m.up.path.display()
        ))),
        _ => Err(Error::Run(format!(
            "{}: a data migration is exactly one DML statement with `{{batch}}`; this script has {}",
            m.up.path.display(),
            stmts.len()
        ))),
    }
}

fn checks(session: &Session, m: &Migration, list: &[String], when: &str) -> Result<(), Error> {
    for c in list {
        let rows = session.query(c, &[])?;
        let ok = rows
            .first()
            .and_then(|r| r.first())
            .and_then(Value::as_bool);
        if ok != Some(true) {
            return Err(Error::Run(format!(
                "{} {}: the check {when} is not true: {c}",
                m.version.as_str(),
                m.name
            )));
        }
    }
    Ok(())
}

fn load_walk(session: &Session, m: &Migration) -> Result<Option<Walk>, Error> {
    let rows = session.query(
        "SELECT checksum, last_key, upper_key, rows_done, batches, total FROM instar_checkpoints WHERE version = @v",
        &[("v", Param::Str(m.version.as_str().into()))],
    )?;
    let Some(r) = rows.first() else {
        return Ok(None);
    };
    let s = |i: usize| r.get(i).and_then(Value::as_str).map(String::from);
    if s(0).as_deref() != Some(m.checksum.as_str()) {
        return Err(Error::Run(format!(
            "{} {} ({}) was edited since its data migration began (its checkpoint was taken with another script): undo the edit to resume, or `instar repair` to start it over",
            m.version.as_str(),
            m.name,
            m.up.path.display()
        )));
    }
    let n = |i: usize| s(i).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(Some(Walk {
        last: s(1),
        upper: s(2),
        rows_done: n(3),
        batches: n(4),
        total: n(5),
    }))
}

/// The statement of a data migration and how its batches are cut.
struct Walker {
    stmt: String,
    first_stmt: String,
    kind: &'static str,
    t: String,
    k: String,
    batch: u64,
}

impl Walker {
    /// Runs the next batch with its checkpoint: the rows it changed, or
    /// `None` when the walk is over.
    fn next(
        &self,
        ctx: &Ctx,
        m: &Migration,
        path: &std::path::Path,
        walk: &mut Walk,
    ) -> Result<Option<i64>, Error> {
        let (kind, t, k) = (self.kind, &self.t, &self.k);
        let Some(upper) = walk.upper.clone() else {
            return Ok(None);
        };
        let mut p = vec![
            ("upper", param(kind, &upper)),
            ("n", Param::Int(self.batch as i64)),
        ];
        let range = match &walk.last {
            Some(lo) => {
                p.push(("lo", param(kind, lo)));
                format!("{k} > @lo AND {k} <= @upper")
            }
            None => format!("{k} <= @upper"),
        };
        let rows = ctx.session.query(
            &format!("SELECT COUNT(*), CAST(MAX(k) AS STRING) FROM (SELECT {k} AS k FROM {t} WHERE {range} ORDER BY {k} LIMIT @n)"),
            &p,
        )?;
        let (Some(n), Some(hi)) = (
            first(&rows, 0).and_then(|c| c.parse::<i64>().ok()),
            first(&rows, 1),
        ) else {
            return Ok(None);
        };
        let mut params = vec![("instar_hi", param(kind, &hi))];
        if let Some(lo) = &walk.last {
            params.push(("instar_lo", param(kind, lo)));
        }
        let sql = if walk.last.is_some() {
            &self.stmt
        } else {
            &self.first_stmt
        };
        let changed = ctx.session.rw(|txn| {
            ctx.fence(txn)?;
            let (_, changed) = txn.execute(sql, &params)?;
            txn.execute(
                "UPDATE instar_checkpoints SET last_key = @hi, rows_done = rows_done + @n, batches = batches + 1, updated_at = CURRENT_TIMESTAMP() WHERE version = @v",
                &[("hi", Param::Str(hi.clone())), ("n", Param::Int(n)), ("v", Param::Str(m.version.as_str().into()))],
            )?;
            Ok(changed)
        }).map_err(|e| match e {
            Error::Api { message, .. } => Error::Run(format!(
                "{} {} ({}): the batch after key {} up to {hi} failed: {message}. Nothing of that batch was written; `instar up` resumes at it",
                m.version.as_str(), m.name, path.display(), walk.last.as_deref().unwrap_or("(start)")
            )),
            e => e,
        })?;
        walk.last = Some(hi);
        walk.rows_done += n;
        walk.batches += 1;
        Ok(Some(changed))
    }
}

/// Runs (or resumes) a data migration.
pub(crate) fn run(ctx: &mut Ctx, m: &Migration, direction: Direction) -> Result<Outcome, Error> {
    let t0 = Instant::now();
    let cfg: &DataConfig = m.meta.data.as_ref().ok_or_else(|| {
        Error::Run(format!(
            "{} {}: kind = \"data\" needs a [data] table",
            m.version.as_str(),
            m.name
        ))
    })?;
    let script = crate::run::script_of(m, direction)?;
    let key = match &cfg.key {
        KeyColumns::One(k) => k.clone(),
        KeyColumns::Many(_) => {
            return Err(Error::Run(format!(
                "{} {}: Spanner data migrations walk a single-column key (a composite key is not supported here)",
                m.version.as_str(),
                m.name
            )))
        }
    };
    let template = check_script(m, &script.sql)?;
    let kind = key_type(ctx.session, &cfg.table, &key)?;
    let batch = cfg
        .batch_size
        .clamp(1, rows_per_commit(ctx.session, &cfg.table)?);
    let (t, k) = (ident(&cfg.table), ident(&key));
    let mut walk = match load_walk(ctx.session, m)? {
        Some(w) => w,
        None => start_walk(ctx, m, cfg, &t, &k)?,
    };
    let walker = Walker {
        stmt: template.replace(
            "{batch}",
            &format!("({k} > @instar_lo AND {k} <= @instar_hi)"),
        ),
        first_stmt: template.replace("{batch}", &format!("({k} <= @instar_hi)")),
        kind,
        t,
        k,
        batch,
    };
    let mut affected = 0i64;
    while let Some(changed) = walker.next(ctx, m, &script.path, &mut walk)? {
        affected += changed;
        (ctx.on_event)(Event::Batch {
            version: m.version.as_str().into(),
            rows_done: walk.rows_done,
            total: walk.total,
        });
        if ctx.deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(Outcome::Stopped);
        }
        if let Some(pause) = &cfg.pause {
            std::thread::sleep(pause.value);
        }
    }
    checks(ctx.session, m, &m.meta.checks.after, "after it")?;
    let mut r = row(ctx, m, EventKind::Apply, direction);
    r.statements_total = 1;
    r.statements_applied = 1;
    r.rows_affected = Some(affected);
    r.note = Some(format!(
        "{} rows walked in {} batches of up to {batch} rows",
        walk.rows_done, walk.batches
    ));
    // The checkpoint goes in the transaction that records the migration applied.
    finish(ctx, r, t0, &|txn| {
        txn.execute(
            "DELETE FROM instar_checkpoints WHERE version = @v",
            &[("v", Param::Str(m.version.as_str().into()))],
        )
        .map(|_| ())
    })?;
    Ok(Outcome::Finished {
        rows: walk.rows_done,
    })
}

fn start_walk(ctx: &Ctx, m: &Migration, cfg: &DataConfig, t: &str, k: &str) -> Result<Walk, Error> {
    checks(ctx.session, m, &m.meta.checks.before, "before it")?;
    let rows = ctx
        .session
        .query(&format!("SELECT CAST(MAX({k}) AS STRING) FROM {t}"), &[])?;
    let upper = first(&rows, 0);
    let total = match &upper {
        Some(u) => {
            let kind = key_type(ctx.session, &cfg.table, k.trim_matches('`'))?;
            let c = ctx.session.query(
                &format!("SELECT COUNT(*) FROM {t} WHERE {k} <= @u"),
                &[("u", param(kind, u))],
            )?;
            first(&c, 0).and_then(|c| c.parse().ok()).unwrap_or(0)
        }
        None => 0,
    };
    ctx.session.rw(|txn| {
        ctx.fence(txn)?;
        txn.execute(
            "INSERT INTO instar_checkpoints (version, checksum, last_key, upper_key, rows_done, batches, total, updated_at) VALUES (@v, @c, NULL, @u, 0, 0, @total, CURRENT_TIMESTAMP())",
            &[
                ("v", Param::Str(m.version.as_str().into())),
                ("c", Param::Str(m.checksum.clone())),
                ("u", Param::opt_str(upper.as_deref())),
                ("total", Param::Int(total)),
            ],
        )
    })?;
    Ok(Walk {
        last: None,
        upper,
        rows_done: 0,
        batches: 0,
        total,
    })
}
