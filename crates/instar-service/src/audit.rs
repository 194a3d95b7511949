//! `instar audit`: checks the database the migrations built — its integrity,
//! rows breaking constraints it does not enforce, invalid indexes, objects
//! the applied migrations declare that are missing, row counts against what
//! data migrations recorded, and each collection's documents.

use instar_core::history::{Direction, EventKind};
use instar_core::objects::Declared;
use instar_db::audit::{Finding, Sampling};
use instar_db::runner;
use instar_db::Db;
use serde::Serialize;

use crate::{Error, Service};

/// Options of `instar audit`.
#[derive(Debug, Clone, Copy)]
pub struct AuditOptions {
    /// Rows (documents) read per table (collection) unless `exact`.
    pub sample: u64,
    /// Read every row and document.
    pub exact: bool,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            sample: 100_000,
            exact: false,
        }
    }
}

/// What `instar audit` found.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    /// The database (credentials hidden).
    pub database: String,
    /// What was checked.
    pub checked: Vec<String>,
    /// What was found, errors first.
    pub findings: Vec<Finding>,
}

impl AuditReport {
    /// How many findings are errors.
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == "error")
            .count()
    }
}

impl Service {
    /// Audits the database (reads only).
    pub async fn audit(&self, o: &AuditOptions) -> Result<AuditReport, Error> {
        let source = self.load()?;
        let sampling = Sampling {
            rows: o.sample,
            exact: o.exact,
        };
        let (mut findings, mut checked) = self
            .reading(async |db: &mut Db| {
                let (mut found, mut checked) = db.audit_structure(sampling).await?;
                if !db.history_exists().await? {
                    found.push(Finding {
                        check: "no-history",
                        severity: "error",
                        object: self.settings().db.history_table.clone(),
                        message: format!("the database has no history table {}: Instar did not build it, or the history lives elsewhere; the checks against what migrations declared were skipped", self.settings().db.history_table),
                        instead: "point --database at the database the migrations built ([database] history_table / history_schema if moved); for a database another tool built, `instar adopt` or `instar baseline` first".into(),
                    });
                    return Ok((found, checked));
                }
                self.declared_objects(db, &source, &mut found).await?;
                checked.push("objects the applied migrations declare".into());
                self.data_row_counts(db, &source, sampling, &mut found)
                    .await?;
                checked.push("row counts against the data migrations' history".into());
                Ok((found, checked))
            })
            .await?;
        for (name, c) in &self.settings().collections {
            if c.kv.is_some() {
                continue;
            }
            let docs = self.documents(name)?;
            let (found, read) = docs.audit((!o.exact).then_some(o.sample)).await?;
            checked.push(format!(
                "collection {name}: {read} documents against their version's declared schema"
            ));
            findings.extend(found);
        }
        findings.sort_by_key(|f| f.severity != "error");
        Ok(AuditReport {
            database: instar_db::url::redact(&self.settings().db.url),
            checked,
            findings,
        })
    }

    async fn declared_objects(
        &self,
        db: &mut Db,
        source: &instar_core::Source,
        found: &mut Vec<Finding>,
    ) -> Result<(), Error> {
        let (_, state) = runner::status(db, source).await?;
        let mut declared = Declared::default();
        for m in &source.migrations {
            if state.applied_of(m.version.as_str()).is_some() {
                declared.read(
                    m.version.as_str(),
                    &m.up.path,
                    &m.readable_sql(),
                    db.dialect(),
                );
            }
        }
        let catalog = db.catalog().await?;
        // Where a script was not read statement by statement, a missing
        // object may have been dropped by it: a warning, not an error.
        let (severity, unsure) = match declared.unread.first() {
            Some(f) => (
                "warning",
                format!(
                    " ({} was not split into statements, so what it drops is unknown)",
                    f.display()
                ),
            ),
            None => ("error", String::new()),
        };
        for ((kind, name), at) in &declared.objects {
            if catalog.contains(&(kind.to_string(), name.clone())) {
                continue;
            }
            found.push(Finding {
                check: "missing-object",
                severity,
                object: name.clone(),
                message: format!(
                    "{kind} {name}, created by migration {} ({}:{}), is not in the database{unsure}",
                    at.version,
                    at.file.display(),
                    at.line
                ),
                instead: "it was dropped or renamed outside the migrations: restore it with a new migration, and find who changed the schema by hand; if the drop was intended, write it as a migration so the files say so".into(),
            });
        }
        Ok(())
    }

    async fn data_row_counts(
        &self,
        db: &mut Db,
        source: &instar_core::Source,
        sampling: Sampling,
        found: &mut Vec<Finding>,
    ) -> Result<(), Error> {
        let history = db.read_history().await?;
        let state = instar_core::history::derive(&history);
        for m in &source.migrations {
            let Some(data) = &m.meta.data else { continue };
            // A data migration reverted since says nothing about the table now.
            if state.applied_of(m.version.as_str()).is_none() {
                continue;
            }
            let key = instar_core::history::version_key(m.version.as_str());
            let recorded = history
                .iter()
                .rev()
                .find(|r| {
                    instar_core::history::version_key(&r.version) == key
                        && r.event == EventKind::Apply
                        && r.direction == Direction::Up
                })
                .and_then(|r| r.rows_affected);
            let Some(recorded) = recorded.filter(|n| *n > 0) else {
                continue;
            };
            let table = data.table.rsplit('.').next().unwrap_or(&data.table);
            let (now, exact) = match db.row_count(table, sampling).await {
                Ok(n) => n,
                Err(e) => {
                    found.push(Finding {
                        check: "row-count",
                        severity: "error",
                        object: data.table.clone(),
                        message: format!("data migration {} rewrote {recorded} rows of {}, which cannot be counted now: {e}", m.version.as_str(), data.table),
                        instead: "the table was dropped or renamed outside the migrations, or the user lacks the right to read it".into(),
                    });
                    continue;
                }
            };
            if now < recorded as u64 {
                found.push(Finding {
                    check: "row-count",
                    severity: "warning",
                    object: data.table.clone(),
                    message: format!(
                        "{} holds {}{now} rows, fewer than the {recorded} data migration {} rewrote",
                        data.table,
                        if exact { "" } else { "about " },
                        m.version.as_str()
                    ),
                    instead: "rows were deleted since: if the application does not delete them, look for a script or a migration that did".into(),
                });
            }
        }
        Ok(())
    }
}
