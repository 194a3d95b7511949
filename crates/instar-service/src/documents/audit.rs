//! `instar audit` on a collection: documents at a version the collection does
//! not declare, and documents that do not match their version's declared
//! schema (`schemas/<version>.schema.json`).

use instar_db::audit::Finding;
use instar_db::docs::Docs;

use super::{validator_with, Documents};
use crate::Error;

/// Findings listed per collection and check; beyond, one summary line.
const LISTED: usize = 20;

impl Documents {
    /// Reads up to `limit` documents (all with `None`) in key order; returns
    /// the findings and how many were read.
    pub(crate) async fn audit(&self, limit: Option<u64>) -> Result<(Vec<Finding>, u64), Error> {
        let strict = crate::settings::Collection {
            validate: true,
            ..self.collection.clone()
        };
        // A stored document is held to its version's declared schema
        // (`schemas/<version>.schema.json`); what the lenses declare is for
        // translated documents.
        let check = validator_with(&self.name, &strict, &self.graph, false)?
            .ok_or_else(|| Error::Config("the validator of an audit".into()))?;
        let mut db = self.db().await?;
        let mut found = Vec::new();
        let mut counts = [0u64; 2];
        let mut read = 0u64;
        let r = async {
            let d = Docs::open(&mut db, self.table()).await?;
            let mut after: Option<String> = None;
            loop {
                let page = match limit {
                    Some(l) if read >= l => break,
                    Some(l) => (l - read).min(1000) as usize,
                    None => 1000,
                };
                let batch = d.scan(&mut db, after.as_deref(), page).await?;
                let Some(last) = batch.last() else { break };
                after = Some(last.key.clone());
                read += batch.len() as u64;
                for s in &batch {
                    let v = s
                        .version
                        .clone()
                        .filter(|v| !v.is_empty())
                        .unwrap_or_else(|| self.collection.default_version.clone());
                    let (i, f) = if !self.collection.versions.contains(&v) {
                        (0, Finding {
                            check: "unknown-version",
                            severity: "error",
                            object: format!("{} {}", self.name, s.key),
                            message: format!("document {} of collection {} is at version {v:?}, which the collection does not declare (versions: {})", s.key, self.name, self.collection.versions.join(", ")),
                            instead: "declare the version and a lens to it in instar.toml, or fix the row's version column (a newer release of the application may have written it)".into(),
                        })
                    } else if let Err(why) = check(&v, &s.body) {
                        (1, Finding {
                            check: "invalid-document",
                            severity: "error",
                            object: format!("{} {}", self.name, s.key),
                            message: format!("document {} of collection {} does not match the schema of its version {v}: {why}", s.key, self.name),
                            instead: format!("fix the document (instar docs put {} {} --at {v}), or the schema if the document is right", self.name, s.key),
                        })
                    } else {
                        continue;
                    };
                    counts[i] += 1;
                    if counts[i] <= LISTED as u64 {
                        found.push(f);
                    }
                }
            }
            Ok::<_, Error>(())
        }
        .await;
        db.close().await?;
        r?;
        for (i, check) in ["unknown-version", "invalid-document"].iter().enumerate() {
            if counts[i] > LISTED as u64 {
                found.push(Finding {
                    check,
                    severity: "error",
                    object: self.name.clone(),
                    message: format!(
                        "{} more documents of collection {} fail this check ({} in all)",
                        counts[i] - LISTED as u64,
                        self.name,
                        counts[i]
                    ),
                    instead: "see the ones listed".into(),
                });
            }
        }
        Ok((found, read))
    }
}
