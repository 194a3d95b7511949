//! A database's schema as comparable objects, for comparing many databases
//! that should have the same schema (a fleet of tenants).

use std::collections::BTreeMap;

use crate::{Db, Error};

impl Db {
    /// The application's tables, views and indexes (Instar's own left out):
    /// `"table users"` → its columns (`name type`, primary-key position),
    /// `"index users_email"` / `"view v"` → empty (their presence). Names are
    /// lower-cased.
    pub async fn schema_objects(&mut self) -> Result<BTreeMap<String, String>, Error> {
        let history = self.settings.history_table.clone();
        let mut out = BTreeMap::new();
        for (kind, name) in self.catalog().await? {
            if crate::dump::is_instar_table(&name, &history) {
                continue;
            }
            let shape = if kind == "table" {
                self.columns(&name)
                    .await?
                    .iter()
                    .map(|(c, t, pk)| {
                        if *pk > 0 {
                            format!("{} {} pk{pk}", c.to_lowercase(), t.to_lowercase())
                        } else {
                            format!("{} {}", c.to_lowercase(), t.to_lowercase())
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            } else {
                String::new()
            };
            out.insert(format!("{kind} {name}"), shape);
        }
        Ok(out)
    }
}
