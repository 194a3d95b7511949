//! One group of a script: DDL as a schema-change operation (recorded before
//! it is submitted, found again after a crash), DML as one transaction that
//! also counts itself in the `start` row.

use std::path::Path;

use instar_core::source::{Migration, Script};

use crate::client::Operation;
use crate::run::{Ctx, Event};
use crate::script::Group;
use crate::tables::{self, op_suffix, Progress};
use crate::Error;

/// The error of a migration stopped half way, with the way out: `applied`
/// statements took effect, statement `failed` (1-based, at `line`) failed.
fn dirty(
    m: &Migration,
    path: &Path,
    applied: i64,
    failed: i64,
    line: Option<usize>,
    why: &str,
) -> Error {
    let v = m.version.as_str();
    let took = match applied {
        0 => "no statement took effect".to_string(),
        1 => "statement 1 took effect".to_string(),
        n => format!("statements 1–{n} took effect"),
    };
    let at = line.map(|l| format!(" (line {l})")).unwrap_or_default();
    let next = applied + 1;
    Error::Run(format!(
        "{v} {} ({}{}) stopped: {took}; statement {failed}{at} failed: {why}. The migration is dirty: fix the cause and run `instar up` to resume at statement {next} (the statements before it are not sent again), or undo what took effect by hand and run `instar repair` (it becomes pending again)",
        m.name,
        path.display(),
        line.map(|l| format!(":{l}")).unwrap_or_default(),
    ))
}

fn save(ctx: &Ctx, row_id: i64, p: &Progress) -> Result<(), Error> {
    ctx.session.rw(|txn| {
        ctx.fence(txn)?;
        tables::update_start(txn, row_id, p)
    })
}

/// Runs a DDL group as one operation.
pub(crate) fn ddl(
    ctx: &mut Ctx,
    m: &Migration,
    script: &Script,
    g: &Group,
    row_id: i64,
    mut p: Progress,
) -> Result<Progress, Error> {
    let id = format!(
        "instar_{}_{}_{}",
        op_suffix(ctx.run_id),
        op_suffix(m.version.as_str()),
        g.first
    );
    let id: String = id.chars().take(128).collect();
    let name = format!("{}/operations/{id}", ctx.client.url().database);
    // Recorded first: a process killed from here on leaves the name behind,
    // and the next run asks Spanner what became of it.
    p.in_flight = Some(g.first as i64);
    p.operation = Some(name.clone());
    p.error = None;
    p.failed_statement = None;
    save(ctx, row_id, &p)?;
    let sql: Vec<String> = g.statements.iter().map(|(s, _)| s.clone()).collect();
    let op = match ctx.client.update_ddl(&sql, &id) {
        Ok(op) => op,
        // Refused up front (Spanner validates a batch before running it): nothing took effect.
        Err(Error::Api { code, message }) if code != 6 && code != 10 && code != 14 => {
            p.in_flight = None;
            p.operation = None;
            p.error = Some(message.clone());
            p.failed_statement = Some(format!(
                "{} (line {})",
                g.statements[0].0, g.statements[0].1
            ));
            save(ctx, row_id, &p)?;
            return Err(dirty(
                m,
                &script.path,
                p.applied,
                p.applied + 1,
                Some(g.statements[0].1),
                &message,
            ));
        }
        // Unknown whether Spanner took it: the next run finds out.
        Err(e) => return Err(e),
    };
    (ctx.on_event)(Event::Operation {
        version: m.version.as_str().into(),
        operation: op.name.clone(),
        statements: sql.len(),
    });
    let op = ctx.client.wait(op, |_| {})?;
    settle(ctx, m, script, &g.statements, row_id, p, &op)
}

/// Counts what a finished operation did, records it, and fails if it failed.
fn settle(
    ctx: &Ctx,
    m: &Migration,
    script: &Script,
    statements: &[(String, usize)],
    row_id: i64,
    mut p: Progress,
    op: &Operation,
) -> Result<Progress, Error> {
    p.applied += op.statements_done.min(statements.len()) as i64;
    p.in_flight = None;
    p.operation = None;
    match &op.error {
        None => {
            p.error = None;
            p.failed_statement = None;
            save(ctx, row_id, &p)?;
            Ok(p)
        }
        Some(why) => {
            let failed = statements.get(op.statements_done);
            p.error = Some(why.clone());
            p.failed_statement = failed.map(|(s, l)| format!("{s} (line {l})"));
            save(ctx, row_id, &p)?;
            Err(dirty(
                m,
                &script.path,
                p.applied,
                p.applied + 1,
                failed.map(|(_, l)| *l),
                why,
            ))
        }
    }
}

/// A `start` row left with an operation by a run that stopped before
/// hearing how it ended: asks Spanner, waits for it if it still runs, and
/// counts what took effect. An operation Spanner never received is simply
/// not counted (the group is submitted again under a new id).
pub(crate) fn recover(
    ctx: &mut Ctx,
    m: &Migration,
    script: &Script,
    statements: &[(String, usize)],
    row_id: i64,
    p: Progress,
    name: &str,
) -> Result<Progress, Error> {
    let first = p.applied as usize;
    let rest: Vec<(String, usize)> = statements.iter().skip(first).cloned().collect();
    match ctx.client.operation(name)? {
        None => {
            let p = Progress {
                in_flight: None,
                operation: None,
                ..p
            };
            save(ctx, row_id, &p)?;
            Ok(p)
        }
        Some(op) => {
            (ctx.on_event)(Event::Operation {
                version: m.version.as_str().into(),
                operation: op.name.clone(),
                statements: op.statements_done,
            });
            let op = ctx.client.wait(op, |_| {})?;
            settle(ctx, m, script, &rest, row_id, p, &op)
        }
    }
}

/// Runs a DML group in one transaction with its count in the `start` row.
pub(crate) fn dml(
    ctx: &mut Ctx,
    m: &Migration,
    script: &Script,
    g: &Group,
    row_id: i64,
    mut p: Progress,
) -> Result<Progress, Error> {
    let sql: Vec<String> = g.statements.iter().map(|(s, _)| s.clone()).collect();
    let mut failed: Option<(usize, String)> = None;
    let done = p.applied + sql.len() as i64;
    let result = ctx.session.rw(|txn| {
        ctx.fence(txn)?;
        if let Err((i, e)) = txn.batch(&sql) {
            if !e.is_aborted() {
                failed = Some((i, e.to_string()));
            }
            return Err(e);
        }
        let next = Progress {
            applied: done,
            ..Progress::default()
        };
        tables::update_start(txn, row_id, &next)
    });
    match (result, failed) {
        (Ok(()), _) => {
            p.applied = done;
            p.error = None;
            p.failed_statement = None;
            Ok(p)
        }
        (Err(_), Some((i, why))) => {
            // The transaction was rolled back: none of the group took effect.
            let (s, line) = &g.statements[i.min(g.statements.len() - 1)];
            p.error = Some(why.clone());
            p.failed_statement = Some(format!("{s} (line {line})"));
            save(ctx, row_id, &p)?;
            let mut e = dirty(
                m,
                &script.path,
                p.applied,
                p.applied + 1 + i as i64,
                Some(*line),
                &why,
            )
            .to_string();
            if i > 0 {
                e.push_str(&format!(
                    " (statements {}–{} ran in the same transaction and were rolled back with it)",
                    p.applied + 1,
                    p.applied + i as i64
                ));
            }
            Err(Error::Run(e))
        }
        (Err(e), None) => Err(e),
    }
}
