//! A database's schema and rows as one SQL script, for `instar squash`'s
//! baseline: what the engine's own catalog says (SQLite's `sqlite_master`,
//! MySQL's `SHOW CREATE`, PostgreSQL's `pg_dump`), then the rows the
//! migrations seeded, as `INSERT`s. Instar's own tables are left out.

use std::path::Path;

use crate::copy::Class;
use crate::{Db, Error};

/// Whether `table` is one of Instar's own (history, checkpoints, copies).
pub(crate) fn is_instar_table(table: &str, history: &str) -> bool {
    let t = table.to_lowercase();
    t.starts_with("instar_") || t.starts_with(&history.to_lowercase())
}

impl Db {
    /// The schema and rows as a script that builds the same database.
    pub async fn dump_sql(&mut self, work_dir: &Path) -> Result<String, Error> {
        let e = self.engine;
        e.dump(self, work_dir).await
    }

    /// The tables that are the application's, in the catalog's order.
    pub(crate) async fn application_tables(&mut self) -> Result<Vec<String>, Error> {
        let history = self.settings.history_table.clone();
        Ok(self
            .catalog_names("table")
            .await?
            .into_iter()
            .filter(|t| !is_instar_table(t, &history))
            .collect())
    }

    /// Every row of `tables` as `INSERT` statements.
    pub(crate) async fn rows_as_inserts(&mut self, tables: &[String]) -> Result<String, Error> {
        let e = self.engine;
        let mut out = String::new();
        for t in tables {
            let cols = self.columns(t).await?;
            let select: Vec<String> = cols
                .iter()
                .map(|(n, ty, _)| e.copy_select(&e.quote(n), &Class::of_in(ty, self.dialect())))
                .collect();
            let names: Vec<String> = cols.iter().map(|(n, _, _)| e.quote(n)).collect();
            let sql = format!("SELECT {} FROM {}", select.join(", "), e.quote(t));
            for row in self.rows(&sql, &format!("reading the rows of {t}")).await? {
                let values: Vec<String> = row.iter().map(|v| literal(v, self.dialect())).collect();
                out += &format!(
                    "INSERT INTO {} ({}) VALUES ({});\n",
                    e.quote(t),
                    names.join(", "),
                    values.join(", ")
                );
            }
        }
        Ok(out)
    }
}

/// A value read as JSON, as a SQL literal.
fn literal(v: &serde_json::Value, d: instar_core::Dialect) -> String {
    use serde_json::Value as J;
    match v {
        J::Null => "NULL".into(),
        J::Bool(b) => if *b { "1" } else { "0" }.into(),
        J::Number(n) => n.to_string(),
        J::String(s) => {
            let mut q = s.replace('\'', "''");
            if d == instar_core::Dialect::MySql {
                q = q.replace('\\', "\\\\");
            }
            format!("'{q}'")
        }
        J::Array(bytes) => {
            let hex: String = bytes
                .iter()
                .filter_map(|b| b.as_u64())
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("X'{hex}'")
        }
        J::Object(_) => format!("'{}'", v.to_string().replace('\'', "''")),
    }
}
