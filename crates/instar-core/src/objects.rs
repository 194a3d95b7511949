//! The tables, views and indexes a run of migrations declares, read from
//! their SQL (lexically, as lint reads it): what `instar audit` expects to
//! find in the database.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::lint::{tokens, Tokens};
use crate::split::{split, Dialect, Split};

/// A kind of schema object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    /// A table.
    Table,
    /// A view (or materialized view).
    View,
    /// An index.
    Index,
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ObjectKind::Table => "table",
            ObjectKind::View => "view",
            ObjectKind::Index => "index",
        })
    }
}

/// Where an object was declared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    /// The migration's version.
    pub version: String,
    /// Its script.
    pub file: PathBuf,
    /// The statement's line.
    pub line: usize,
    /// For an index: its table (lower-cased).
    pub table: Option<String>,
}

/// The objects declared so far, by kind and lower-cased unqualified name.
#[derive(Debug, Clone, Default)]
pub struct Declared {
    /// Each object and where it was declared.
    pub objects: BTreeMap<(ObjectKind, String), Origin>,
    /// Scripts that could not be split into statements: what they create or
    /// drop is unknown, so a missing object is only a guess.
    pub unread: Vec<PathBuf>,
}

/// An identifier as the catalog shows it: unqualified, lower-cased.
fn bare(name: &str) -> String {
    name.rsplit('.').next().unwrap_or(name).to_lowercase()
}

impl Declared {
    /// Reads one applied migration's script, in order.
    pub fn read(&mut self, version: &str, file: &Path, sql: &str, dialect: Dialect) {
        let Split::Statements(statements) = split(sql, dialect) else {
            self.unread.push(file.to_path_buf());
            return;
        };
        for s in statements {
            let at = Origin {
                version: version.to_string(),
                file: file.to_path_buf(),
                line: s.line,
                table: None,
            };
            self.statement(&tokens(&s.sql), at);
        }
    }

    fn statement(&mut self, t: &Tokens, at: Origin) {
        if t.is(0, "CREATE") {
            self.create(t, at);
        } else if t.is(0, "DROP") {
            self.drop(t);
        } else if let Some(i) = t.seq(0, &["ALTER", "TABLE"]) {
            let i = t.skip_guards(i);
            let old = bare(&t.name(i));
            if let Some(j) = t.seq(i + 1, &["RENAME", "TO"]) {
                self.rename_table(&old, &bare(&t.name(j)));
            }
            self.alter_indexes(t, i + 1);
        } else if let Some(i) = t.seq(0, &["RENAME", "TABLE"]) {
            // MySQL: RENAME TABLE a TO b [, c TO d …]
            let mut i = i;
            while t.is(i + 1, "TO") {
                self.rename_table(&bare(&t.name(i)), &bare(&t.name(i + 2)));
                if !t.is(i + 3, ",") {
                    break;
                }
                i += 4;
            }
        } else if let Some(i) = t
            .seq(0, &["ALTER", "VIEW"])
            .or_else(|| t.seq(0, &["ALTER", "MATERIALIZED", "VIEW"]))
        {
            let i = t.skip_guards(i);
            if let Some(j) = t.seq(i + 1, &["RENAME", "TO"]) {
                let key = (ObjectKind::View, bare(&t.name(i)));
                if let Some(o) = self.objects.remove(&key) {
                    self.objects.insert((ObjectKind::View, bare(&t.name(j))), o);
                }
            }
        } else if let Some(i) = t.seq(0, &["ALTER", "INDEX"]) {
            let i = t.skip_guards(i);
            if let Some(j) = t.seq(i + 1, &["RENAME", "TO"]) {
                let key = (ObjectKind::Index, bare(&t.name(i)));
                if let Some(o) = self.objects.remove(&key) {
                    self.objects
                        .insert((ObjectKind::Index, bare(&t.name(j))), o);
                }
            }
        }
    }

    /// MySQL's index changes inside `ALTER TABLE`: `DROP INDEX|KEY name`,
    /// `RENAME INDEX|KEY a TO b`.
    fn alter_indexes(&mut self, t: &Tokens, from: usize) {
        for k in from..t.up.len() {
            let word = t.is(k + 1, "INDEX") || t.is(k + 1, "KEY");
            if t.is(k, "DROP") && word {
                self.objects
                    .remove(&(ObjectKind::Index, bare(&t.name(k + 2))));
            } else if t.is(k, "RENAME") && word && t.is(k + 3, "TO") {
                let key = (ObjectKind::Index, bare(&t.name(k + 2)));
                if let Some(o) = self.objects.remove(&key) {
                    self.objects
                        .insert((ObjectKind::Index, bare(&t.name(k + 4))), o);
                }
            }
        }
    }

    fn create(&mut self, t: &Tokens, mut at: Origin) {
        let mut i = 1;
        if t.seq(i, &["OR", "REPLACE"]).is_some() {
            i += 2;
        }
        if ["TEMP", "TEMPORARY"].iter().any(|w| t.is(i, w)) {
            return;
        }
        for w in ["UNLOGGED", "UNIQUE", "MATERIALIZED", "FULLTEXT", "SPATIAL"] {
            if t.is(i, w) {
                i += 1;
            }
        }
        let kind = match t.up.get(i).map(String::as_str) {
            Some("TABLE") => ObjectKind::Table,
            Some("VIEW") => ObjectKind::View,
            Some("INDEX") => ObjectKind::Index,
            _ => return,
        };
        i += 1;
        if t.is(i, "CONCURRENTLY") {
            i += 1;
        }
        let i = t.skip_guards(i);
        // PostgreSQL's `CREATE INDEX ON t (…)` names no index.
        if t.is(i, "ON") || t.is(i, "(") {
            return;
        }
        let raw = t.name(i);
        // An object in a named schema may live outside the one audited.
        if raw.contains('.') && !raw.to_lowercase().starts_with("public.") {
            return;
        }
        let name = bare(&raw);
        if kind == ObjectKind::Index {
            let on = (i..t.up.len()).find(|&k| t.is(k, "ON"));
            at.table = on.map(|k| bare(&t.name(t.skip_guards(k + 1))));
        }
        self.objects.entry((kind, name)).or_insert(at);
    }

    fn drop(&mut self, t: &Tokens) {
        let kind = match t.up.get(1).map(String::as_str) {
            Some("TABLE") => ObjectKind::Table,
            Some("VIEW") => ObjectKind::View,
            Some("MATERIALIZED") if t.is(2, "VIEW") => ObjectKind::View,
            Some("INDEX") => ObjectKind::Index,
            _ => return,
        };
        let mut i = if t.is(1, "MATERIALIZED") { 3 } else { 2 };
        if t.is(i, "CONCURRENTLY") {
            i += 1;
        }
        let mut i = t.skip_guards(i);
        loop {
            let name = bare(&t.name(i));
            self.objects.remove(&(kind, name.clone()));
            if kind == ObjectKind::Table {
                self.objects.retain(|(k, _), o| {
                    *k != ObjectKind::Index || o.table.as_deref() != Some(&name)
                });
            }
            if !t.is(i + 1, ",") {
                break;
            }
            i += 2;
        }
    }

    fn rename_table(&mut self, old: &str, new: &str) {
        if let Some(o) = self.objects.remove(&(ObjectKind::Table, old.to_string())) {
            self.objects.insert((ObjectKind::Table, new.to_string()), o);
        }
        for ((k, _), o) in self.objects.iter_mut() {
            if *k == ObjectKind::Index && o.table.as_deref() == Some(old) {
                o.table = Some(new.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(sqls: &[&str]) -> Vec<(ObjectKind, String)> {
        let mut d = Declared::default();
        for (n, sql) in sqls.iter().enumerate() {
            d.read(&n.to_string(), Path::new("m.sql"), sql, Dialect::Postgres);
        }
        d.objects.keys().cloned().collect()
    }

    #[test]
    fn creates_drops_and_renames_are_followed_in_order() {
        let got = read(&[
            "CREATE TABLE IF NOT EXISTS public.Users (id int);\nCREATE UNIQUE INDEX CONCURRENTLY users_id ON users (id);\nCREATE TEMP TABLE scratch (x int);",
            "CREATE OR REPLACE VIEW v AS SELECT 1;\nCREATE TABLE \"Orders\" (id int);\nCREATE INDEX ON users (id);",
            "ALTER TABLE users RENAME TO people;\nDROP TABLE IF EXISTS orders, gone;\nCREATE MATERIALIZED VIEW mv AS SELECT 1;",
        ]);
        assert_eq!(
            got,
            vec![
                (ObjectKind::Table, "people".into()),
                (ObjectKind::View, "mv".into()),
                (ObjectKind::View, "v".into()),
                (ObjectKind::Index, "users_id".into()),
            ]
        );
        let got = read(&[
            "CREATE TABLE a (x int); CREATE INDEX a_x ON a (x);",
            "DROP TABLE a;",
        ]);
        assert!(got.is_empty(), "an index goes with its table: {got:?}");
        let got = read(&[
            "CREATE TABLE a (x int);",
            "RENAME TABLE a TO b;",
            "CREATE INDEX i ON b (x);",
            "ALTER INDEX i RENAME TO j;",
        ]);
        assert_eq!(
            got,
            vec![
                (ObjectKind::Table, "b".into()),
                (ObjectKind::Index, "j".into())
            ]
        );
    }
}
