//! What `instar audit` checks inside the database itself: SQLite's integrity
//! and foreign-key checks; rows breaking constraints the database does not
//! vouch for (PostgreSQL's NOT VALID constraints, every MySQL foreign key —
//! rows loaded with `FOREIGN_KEY_CHECKS = 0` leave no trace); invalid
//! indexes; and the catalog, for comparing with what migrations declared.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::conn::query;
use crate::{Db, Error};

/// One thing the audit found.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The check (`integrity`, `foreign-key`, `check-constraint`,
    /// `invalid-index`, `missing-object`, `row-count`, `no-history`,
    /// `unknown-version`, `invalid-document`).
    pub check: &'static str,
    /// `error` or `warning`.
    pub severity: &'static str,
    /// The table, index, constraint or document concerned.
    pub object: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub instead: String,
}

/// How much of each table the checks read.
#[derive(Debug, Clone, Copy)]
pub struct Sampling {
    /// Rows read per table (the first ones) unless `exact`.
    pub rows: u64,
    /// Read every row.
    pub exact: bool,
}

impl Sampling {
    fn limit(&self) -> String {
        if self.exact {
            String::new()
        } else {
            format!(" LIMIT {}", self.rows)
        }
    }
}

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A table's name as written in SQL, shown without its quotes.
fn shown(table: &str) -> String {
    table.replace(['"', '`'], "")
}

impl Db {
    /// The tables, views and indexes the database has: `(kind, name)` as its
    /// catalog writes them, kind `table`, `view` or `index`.
    async fn catalog_rows(&mut self) -> Result<Vec<(String, String)>, Error> {
        let sql = self.engine.audit_sql().catalog;
        let rows = self.rows(sql, "reading the catalog").await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.first().map(text).unwrap_or_default(),
                    r.get(1).map(text).unwrap_or_default(),
                )
            })
            .collect())
    }

    /// The tables, views and indexes the database has: `(kind, lower-cased name)`.
    pub async fn catalog(&mut self) -> Result<BTreeSet<(String, String)>, Error> {
        let rows = self.catalog_rows().await?;
        Ok(rows
            .into_iter()
            .map(|(k, n)| (k, n.to_lowercase()))
            .collect())
    }

    /// The names of the catalog's objects of `kind`, as it writes them.
    pub(crate) async fn catalog_names(&mut self, kind: &str) -> Result<Vec<String>, Error> {
        let rows = self.catalog_rows().await?;
        Ok(rows
            .into_iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, n)| n)
            .collect())
    }

    /// Whether `table` (as written in SQL) has more than `n` rows.
    async fn more_than(&mut self, table: &str, n: u64) -> Result<bool, Error> {
        let sql = format!(
            "SELECT count(*) FROM (SELECT 1 AS one FROM {table} LIMIT {}) s",
            n + 1
        );
        let c: i64 = query(&sql)
            .scalar(&mut self.conn)
            .await
            .map_err(|e| Error::query(format!("counting rows of {}", shown(table)), e))?;
        Ok(c as u64 > n)
    }

    /// Rows of `table`: exact, or the engine's estimate when `exact` is off
    /// and the table is bigger than `sample` (then `false` is returned too).
    pub async fn row_count(&mut self, table: &str, s: Sampling) -> Result<(u64, bool), Error> {
        let quoted = self.engine.quote(table);
        if !s.exact && self.more_than(&quoted, s.rows).await? {
            let estimate = self.table_rows().await?.get(&table.to_lowercase()).copied();
            if let Some(n) = estimate {
                return Ok((n, false));
            }
        }
        Ok((self.count_rows(table).await?, true))
    }

    /// The checks inside the database; returns the findings and what was checked.
    pub async fn audit_structure(
        &mut self,
        s: Sampling,
    ) -> Result<(Vec<Finding>, Vec<String>), Error> {
        let sql = self.engine.audit_sql();
        let mut found = Vec::new();
        let mut checked = Vec::new();
        if let Some(q) = sql.integrity {
            checked.push("integrity (PRAGMA integrity_check)".to_string());
            for r in self.rows(q, "checking integrity").await? {
                let line = r.first().map(text).unwrap_or_default();
                if line != "ok" {
                    found.push(Finding {
                        check: "integrity",
                        severity: "error",
                        object: "database".into(),
                        message: line,
                        instead: "restore the newest sound backup (`instar backups`, `instar restore`), or rebuild the file with `sqlite3 db .recover`".into(),
                    });
                }
            }
        }
        if let Some(q) = sql.foreign_key_check {
            checked.push("foreign keys (PRAGMA foreign_key_check)".to_string());
            self.sqlite_foreign_keys(q, &mut found).await?;
        }
        if let Some(q) = sql.unenforced_foreign_keys {
            checked.push("rows against foreign keys the database does not vouch for".to_string());
            for r in self.rows(q, "listing foreign keys").await? {
                let f: Vec<String> = r.iter().map(text).collect();
                if let [name, table, parent, cols, pcols] = &f[..] {
                    self.orphans(name, table, parent, cols, pcols, s, &mut found)
                        .await?;
                }
            }
        }
        if let Some(q) = sql.unvalidated_checks {
            checked.push("rows against NOT VALID check constraints".to_string());
            for r in self.rows(q, "listing check constraints").await? {
                let f: Vec<String> = r.iter().map(text).collect();
                if let [name, table, expr] = &f[..] {
                    self.broken_checks(name, table, expr, s, &mut found).await?;
                }
            }
        }
        if let Some(q) = sql.invalid_indexes {
            checked.push("invalid indexes".to_string());
            for r in self.rows(q, "listing invalid indexes").await? {
                let f: Vec<String> = r.iter().map(text).collect();
                if let [index, table] = &f[..] {
                    found.push(Finding {
                        check: "invalid-index",
                        severity: "error",
                        object: shown(index),
                        message: format!("index {} on {} is invalid (a CREATE INDEX CONCURRENTLY that failed or was cancelled): writes maintain it, no query uses it", shown(index), shown(table)),
                        instead: format!("DROP INDEX CONCURRENTLY {index}; then create it again with CREATE INDEX CONCURRENTLY (or REINDEX INDEX CONCURRENTLY {index})"),
                    });
                }
            }
        }
        Ok((found, checked))
    }

    async fn sqlite_foreign_keys(
        &mut self,
        q: &str,
        found: &mut Vec<Finding>,
    ) -> Result<(), Error> {
        let mut by_pair: std::collections::BTreeMap<(String, String), (u64, String)> =
            Default::default();
        for r in self.rows(q, "checking foreign keys").await? {
            let table = r.first().map(text).unwrap_or_default();
            let parent = r.get(2).map(text).unwrap_or_default();
            let e = by_pair.entry((table, parent)).or_insert((0, String::new()));
            e.0 += 1;
            if e.1.is_empty() {
                e.1 = r.get(1).map(text).unwrap_or_default();
            }
        }
        for ((table, parent), (n, rowid)) in by_pair {
            found.push(Finding {
                check: "foreign-key",
                severity: "error",
                object: table.clone(),
                message: format!("{n} row(s) of {table} point at no row of {parent} (the first: rowid {rowid})"),
                instead: format!("find them with `SELECT * FROM pragma_foreign_key_check('{table}')`, then insert the missing {parent} rows or delete the orphans; keep PRAGMA foreign_keys = ON in the application"),
            });
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn orphans(
        &mut self,
        name: &str,
        table: &str,
        parent: &str,
        cols: &str,
        pcols: &str,
        s: Sampling,
        found: &mut Vec<Finding>,
    ) -> Result<(), Error> {
        let q = |c: &str| self.engine.quote(c);
        let cols: Vec<String> = cols.split(',').map(q).collect();
        let pcols: Vec<String> = pcols.split(',').map(q).collect();
        let not_null: Vec<String> = cols.iter().map(|c| format!("c.{c} IS NOT NULL")).collect();
        let joined: Vec<String> = cols
            .iter()
            .zip(&pcols)
            .map(|(c, p)| format!("p.{p} = c.{c}"))
            .collect();
        let sql = format!(
            "SELECT count(*) FROM (SELECT {} FROM {table}{}) c WHERE {} AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE {})",
            cols.join(", "),
            s.limit(),
            not_null.join(" AND "),
            joined.join(" AND ")
        );
        let n: i64 = query(&sql)
            .scalar(&mut self.conn)
            .await
            .map_err(|e| Error::query(format!("checking foreign key {name}"), e))?;
        if n == 0 {
            return Ok(());
        }
        let sampled = !s.exact && self.more_than(table, s.rows).await?;
        found.push(Finding {
            check: "foreign-key",
            severity: "error",
            object: shown(table),
            message: format!(
                "{n} row(s) of {} point at no row of {} through foreign key {name} ({}){}",
                shown(table),
                shown(parent),
                cols.join(", ").replace(['"', '`'], ""),
                if sampled { format!(" in the first {} rows (--exact counts them all)", s.rows) } else { String::new() }
            ),
            instead: format!("insert the missing {} rows or delete the orphans, then validate the key (PostgreSQL: ALTER TABLE … VALIDATE CONSTRAINT {name}); load data with foreign-key checks on", shown(parent)),
        });
        Ok(())
    }

    async fn broken_checks(
        &mut self,
        name: &str,
        table: &str,
        expr: &str,
        s: Sampling,
        found: &mut Vec<Finding>,
    ) -> Result<(), Error> {
        let sql = format!(
            "SELECT count(*) FROM (SELECT * FROM {table}{}) c WHERE NOT ({expr})",
            s.limit()
        );
        let n: i64 = query(&sql)
            .scalar(&mut self.conn)
            .await
            .map_err(|e| Error::query(format!("checking constraint {name}"), e))?;
        if n > 0 {
            found.push(Finding {
                check: "check-constraint",
                severity: "error",
                object: shown(table),
                message: format!("{n} row(s) of {} break check constraint {name} ({expr}), which was added NOT VALID and never validated", shown(table)),
                instead: format!("fix those rows (SELECT * FROM {table} WHERE NOT ({expr})), then ALTER TABLE {table} VALIDATE CONSTRAINT {name}"),
            });
        }
        Ok(())
    }
}
