//! `instar copy --lens COLLECTION:V`: each row of the collection's table has
//! its document moved to version V on its way to the target.

use std::sync::Arc;

use instar_db::copy::{Cell, Transform};
use instar_lens::graph::Complements;

use super::Documents;
use crate::Error;

impl Documents {
    /// The collection's table (lower-cased), and the change that moves a
    /// row's document to version `to` (its version column set to `to`).
    pub(crate) fn translator(&self, to: &str) -> Result<(String, Transform), Error> {
        self.check_version(to, "the copy's")?;
        let graph = self.graph.clone();
        let c = self.collection.clone();
        let to = to.to_string();
        let name = self.name.clone();
        let t: Transform = Arc::new(move |cols: &[String], row: &mut Vec<Cell>| {
            let at = |n: &str| cols.iter().position(|c| c.eq_ignore_ascii_case(n));
            let body =
                at(&c.body).ok_or_else(|| format!("collection {name}: no column {}", c.body))?;
            let version = c.version_column.as_deref().and_then(at);
            let from = version
                .and_then(|i| row[i].text())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| c.default_version.clone());
            let Some(text) = row[body].text() else {
                return Ok(());
            };
            let doc: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| format!("collection {name}: the document is not JSON: {e}"))?;
            let moved = graph
                .read(&doc, &from, &to, &Complements::new())
                .map_err(|e| format!("collection {name}: from {from} to {to}: {e}"))?;
            row[body] = Cell::Text(moved.to_string());
            if let Some(i) = version {
                row[i] = Cell::Text(to.clone());
            }
            Ok(())
        });
        Ok((self.collection.table.to_lowercase(), t))
    }
}
