//! After a copy: row counts on both sides, and rows compared value by value
//! (all of them, or windows spread over the key).

use serde_json::Value as J;

use super::batch::{key_text, read_batch};
use super::{canonical, Cell, Class, TablePlan, Transform, VerifyMode};
use crate::{Db, Error};

/// Mismatches listed per table.
const LISTED: usize = 10;

/// Windows a sample is spread over.
const WINDOWS: u64 = 10;

impl TablePlan {
    /// The same table as the target reads it.
    fn as_target(&self) -> TablePlan {
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

/// Verifies one copied table.
pub async fn verify_table(
    from: &mut Db,
    to: &mut Db,
    p: &TablePlan,
    mode: VerifyMode,
    transform: Option<&Transform>,
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
    let names: Vec<String> = p.columns.iter().map(|c| c.name.clone()).collect();
    for start in starts {
        let mut after = start;
        let mut left = per;
        while left > 0 {
            let n = left.min(5_000);
            let mut src = read_batch(from, p, after.as_deref(), n).await?;
            let Some(last) = src.last() else { break };
            let last_key: Vec<Cell> = p.key.iter().map(|&i| last[i].clone()).collect();
            let dst = read_batch(to, &tp, after.as_deref(), n).await?;
            if let Some(t) = transform {
                for row in &mut src {
                    t(&names, row).map_err(|e| {
                        Error::Copy(format!("table {}, row {}: {e}", p.table, key_text(p, row)))
                    })?;
                }
            }
            compare(p, &src, &dst, &last_key, &mut v);
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

fn key_of(p: &TablePlan, row: &[Cell]) -> Vec<J> {
    p.key
        .iter()
        .map(|&i| canonical(&row[i], &p.columns[i].target))
        .collect()
}

/// Merges the two sides of one window by key (rows past the source's last key are the next window's).
fn compare(p: &TablePlan, src: &[Vec<Cell>], dst: &[Vec<Cell>], last: &[Cell], v: &mut Verified) {
    let note = |v: &mut Verified, m: String| {
        if v.mismatches.len() < LISTED {
            v.mismatches.push(m);
        }
    };
    let last: Vec<J> = p
        .key
        .iter()
        .zip(last)
        .map(|(&i, c)| canonical(c, &p.columns[i].target))
        .collect();
    let dst: Vec<&Vec<Cell>> = dst
        .iter()
        .filter(|r| cmp_keys(&key_of(p, r), &last).is_le())
        .collect();
    let (mut i, mut j) = (0, 0);
    while i < src.len() || j < dst.len() {
        let ord = match (src.get(i), dst.get(j)) {
            (Some(s), Some(d)) => cmp_keys(&key_of(p, s), &key_of(p, d)),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match ord {
            std::cmp::Ordering::Less => {
                note(
                    v,
                    format!("row {} is missing in the target", key_text(p, &src[i])),
                );
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                note(
                    v,
                    format!("row {} is in the target only", key_text(p, dst[j])),
                );
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                v.compared += 1;
                for (k, c) in p.columns.iter().enumerate() {
                    let (a, b) = (
                        canonical(&src[i][k], &c.target),
                        canonical(&dst[j][k], &c.target),
                    );
                    if a != b {
                        note(
                            v,
                            format!(
                                "row {}: {} is {a} in the source, {b} in the target",
                                key_text(p, &src[i]),
                                c.name
                            ),
                        );
                        break;
                    }
                }
                i += 1;
                j += 1;
            }
        }
    }
}

fn cmp_keys(a: &[J], b: &[J]) -> std::cmp::Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = match (x, y) {
            (J::Number(m), J::Number(n)) => m
                .as_f64()
                .partial_cmp(&n.as_f64())
                .unwrap_or(std::cmp::Ordering::Equal),
            _ => x.to_string().cmp(&y.to_string()),
        };
        if o.is_ne() {
            return o;
        }
    }
    std::cmp::Ordering::Equal
}
