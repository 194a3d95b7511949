//! After a copy: row counts on both sides, and rows compared value by value
//! (all of them, or windows spread over the key).

use serde_json::Value as J;

use super::batch::{canonical_key, decode, key_text, read_batch, rows_by_keys, select_from};
use super::{canonical, fit, Cell, Class, TablePlan, VerifyMode};
use crate::{Db, Error};

/// Mismatches listed per table.
const LISTED: usize = 10;

/// Windows a sample is spread over.
const WINDOWS: u64 = 10;

impl TablePlan {
    /// The same table as the target reads it.
    pub(crate) fn as_target(&self) -> TablePlan {
        let mut t = self.clone();
        for c in &mut t.columns {
            c.source = c.target.clone();
            c.source_type = c.target_type.clone();
        }
        t
    }
}

/// What verification found: rows on each side, rows compared, mismatches.
pub struct Verified {
    /// Rows in the source.
    pub source_rows: u64,
    /// Rows in the target.
    pub target_rows: u64,
    /// Rows compared.
    pub compared: u64,
    /// The first mismatches, each with its key.
    pub mismatches: Vec<String>,
}

/// Verifies one copied table: counts, then the source's rows (all, or the
/// sample's windows) looked up in the target by key and compared value by value.
pub async fn verify_table(
    from: &mut Db,
    to: &mut Db,
    p: &TablePlan,
    mode: VerifyMode,
) -> Result<Verified, Error> {
    let mut v = Verified {
        source_rows: from.count_rows(&p.table).await?,
        target_rows: to.count_rows(&p.table).await?,
        compared: 0,
        mismatches: Vec::new(),
    };
    let tp = p.as_target();
    let (starts, per): (Vec<Option<Vec<Cell>>>, usize) = match mode {
        VerifyMode::Counts => return Ok(v),
        VerifyMode::Full => (vec![None], usize::MAX),
        VerifyMode::Sample(n) => (windows(from, p, n).await?, (n / WINDOWS).max(1) as usize),
    };
    for start in starts {
        let mut after = start;
        let mut left = per;
        while left > 0 {
            let n = left.min(5_000);
            let src = read_batch(from, p, after.as_deref(), n).await?;
            let Some(last) = src.last() else { break };
            let last_key: Vec<Cell> = p.key.iter().map(|&i| last[i].clone()).collect();
            let mut fitted = src.clone();
            for row in &mut fitted {
                for (i, c) in p.columns.iter().enumerate() {
                    row[i] = fit(std::mem::replace(&mut row[i], Cell::Null), &c.target)
                        .unwrap_or(Cell::Null);
                }
            }
            let dst = match int_range(p, &fitted) {
                Some((lo, hi)) => rows_in_range(to, &tp, lo, hi).await?,
                None => rows_by_keys(to, &tp, &fitted).await?,
            };
            compare(p, &src, &dst, &mut v);
            left = left.saturating_sub(src.len());
            if src.len() < n {
                break;
            }
            after = Some(last_key);
        }
    }
    Ok(v)
}

/// Window starts for a sample of `n` rows: evenly spread over a single
/// integer key's range, else the first rows.
async fn windows(from: &mut Db, p: &TablePlan, n: u64) -> Result<Vec<Option<Vec<Cell>>>, Error> {
    let single_int = p.key.len() == 1 && p.columns[p.key[0]].source == Class::Int;
    if !single_int {
        return Ok(vec![None]);
    }
    let e = from.engine;
    let k = e.quote(&p.columns[p.key[0]].name);
    let sql = format!("SELECT min({k}), max({k}) FROM {}", e.quote(&p.table));
    let rows = from.rows(&sql, "reading the key range").await?;
    let (Some(min), Some(max)) = (
        rows.first().and_then(|r| r.first()).and_then(J::as_i64),
        rows.first().and_then(|r| r.get(1)).and_then(J::as_i64),
    ) else {
        return Ok(vec![None]);
    };
    let span = (max - min) as i128;
    if span <= n as i128 {
        return Ok(vec![None]);
    }
    Ok((0..WINDOWS as i128)
        .map(|i| {
            let start = min as i128 + span * i / WINDOWS as i128 - 1;
            Some(vec![Cell::Int(start as i64)])
        })
        .collect())
}

/// A single integer key's first and last value in `rows` (in key order).
fn int_range(p: &TablePlan, rows: &[Vec<Cell>]) -> Option<(i64, i64)> {
    let [k] = p.key[..] else { return None };
    match (rows.first().map(|r| &r[k]), rows.last().map(|r| &r[k])) {
        (Some(Cell::Int(lo)), Some(Cell::Int(hi))) => Some((*lo, *hi)),
        _ => None,
    }
}

/// The target's rows whose single integer key is in `lo..=hi`: one range
/// read instead of a lookup per key.
async fn rows_in_range(
    to: &mut Db,
    tp: &TablePlan,
    lo: i64,
    hi: i64,
) -> Result<Vec<Vec<Cell>>, Error> {
    let (select, key) = select_from(to, tp);
    let k = &key[0];
    let sql = format!("{select} WHERE {k} >= {lo} AND {k} <= {hi}");
    let rows = crate::conn::query(&sql)
        .fetch_all(&mut to.conn)
        .await
        .map_err(|x| Error::query(format!("reading {} from the target", tp.table), x))?;
    rows.iter()
        .map(|r| decode(r, tp))
        .collect::<Result<_, _>>()
        .map_err(|x| Error::query(format!("reading {} from the target", tp.table), x))
}

/// Each source row against the target row with its key (in any order).
fn compare(p: &TablePlan, src: &[Vec<Cell>], dst: &[Vec<Cell>], v: &mut Verified) {
    let by_key: std::collections::HashMap<Vec<J>, &Vec<Cell>> =
        dst.iter().map(|r| (canonical_key(p, r), r)).collect();
    for s in src {
        let note = |v: &mut Verified, m: String| {
            if v.mismatches.len() < LISTED {
                v.mismatches.push(m);
            }
        };
        let Some(d) = by_key.get(&canonical_key(p, s)) else {
            note(
                v,
                format!("row {} is missing in the target", key_text(p, s)),
            );
            continue;
        };
        v.compared += 1;
        for (k, c) in p.columns.iter().enumerate() {
            let (a, b) = (canonical(&s[k], &c.target), canonical(&d[k], &c.target));
            if a != b {
                note(
                    v,
                    format!(
                        "row {}: {} is {a} in the source, {b} in the target",
                        key_text(p, s),
                        c.name
                    ),
                );
                break;
            }
        }
    }
}
