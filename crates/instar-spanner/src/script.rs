//! A GoogleSQL script as Spanner runs it: statements grouped into runs of DDL
//! (one schema-change operation each) and runs of DML (one transaction each).

use std::path::Path;

use instar_core::split::{split, Dialect, Split};

use crate::Error;

/// GoogleSQL quotes strings with `'`/`"` and identifiers with backticks, and
/// comments with `--`, `#` and `/* */`: MySQL's lexical rules, which the
/// splitter knows.
pub const DIALECT: Dialect = Dialect::MySql;

/// What a group of statements is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKind {
    /// Schema statements: one `UpdateDatabaseDdl` operation.
    Ddl,
    /// INSERT/UPDATE/DELETE: one read-write transaction.
    Dml,
}

/// Consecutive statements of one kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// DDL or DML.
    pub kind: GroupKind,
    /// The 0-based index in the script of its first statement.
    pub first: usize,
    /// Its statements with the line each starts on.
    pub statements: Vec<(String, usize)>,
}

/// The statements of a script, with their lines.
pub fn statements(sql: &str, path: &Path) -> Result<Vec<(String, usize)>, Error> {
    match split(sql, DIALECT) {
        Split::Statements(s) => Ok(s.into_iter().map(|s| (s.sql.into_owned(), s.line)).collect()),
        Split::Whole { reason } => Err(Error::Run(format!(
            "{}: cannot be split into statements ({reason}); Spanner runs scripts statement by statement",
            path.display()
        ))),
        Split::Unterminated { what, line } => Err(Error::Run(format!(
            "{}:{line}: an unterminated {what}: the rest of the script would be swallowed by it",
            path.display()
        ))),
    }
}

fn first_word(sql: &str) -> String {
    let mut rest = sql.trim_start();
    loop {
        if let Some(r) = rest.strip_prefix("--").or_else(|| rest.strip_prefix('#')) {
            rest = r.split_once('\n').map_or("", |(_, t)| t).trim_start();
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |(_, t)| t).trim_start();
        } else {
            break;
        }
    }
    rest.split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
}

/// Whether a statement is DDL, DML, or neither (refused, naming its line).
pub fn kind(sql: &str, path: &Path, line: usize) -> Result<GroupKind, Error> {
    match first_word(sql).as_str() {
        "CREATE" | "ALTER" | "DROP" | "ANALYZE" | "GRANT" | "REVOKE" | "RENAME" => Ok(GroupKind::Ddl),
        "INSERT" | "UPDATE" | "DELETE" => Ok(GroupKind::Dml),
        w => Err(Error::Run(format!(
            "{}:{line}: `{}` is neither DDL nor INSERT/UPDATE/DELETE: a Spanner migration runs schema statements as operations and DML in transactions (transaction control and queries have no place in it)",
            path.display(),
            if w.is_empty() { "(empty)" } else { w }
        ))),
    }
}

/// The script's statements in groups, in order.
pub fn groups(statements: &[(String, usize)], path: &Path) -> Result<Vec<Group>, Error> {
    let mut out: Vec<Group> = Vec::new();
    for (i, (sql, line)) in statements.iter().enumerate() {
        let k = kind(sql, path, *line)?;
        match out.last_mut() {
            Some(g) if g.kind == k => g.statements.push((sql.clone(), *line)),
            _ => out.push(Group {
                kind: k,
                first: i,
                statements: vec![(sql.clone(), *line)],
            }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_statements_of_a_kind_share_a_group() {
        let sql = "CREATE TABLE a (id INT64) PRIMARY KEY (id);\n-- seed\nINSERT INTO a (id) VALUES (1);\nINSERT INTO a (id) VALUES (2);\nCREATE INDEX ai ON a (id);\nALTER TABLE a ADD COLUMN b STRING(MAX);\n";
        let p = Path::new("up.sql");
        let g = groups(&statements(sql, p).unwrap(), p).unwrap();
        let shape: Vec<(GroupKind, usize, usize)> = g
            .iter()
            .map(|g| (g.kind, g.first, g.statements.len()))
            .collect();
        assert_eq!(
            shape,
            [
                (GroupKind::Ddl, 0, 1),
                (GroupKind::Dml, 1, 2),
                (GroupKind::Ddl, 3, 2)
            ]
        );
        assert_eq!(g[1].statements[0].1, 3);
    }

    #[test]
    fn queries_and_transaction_control_are_refused_with_their_line() {
        let p = Path::new("m/up.sql");
        let sql = "CREATE TABLE a (id INT64) PRIMARY KEY (id);\nBEGIN;\n";
        let e = groups(&statements(sql, p).unwrap(), p)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("m/up.sql:2: `BEGIN`"), "{e}");
    }
}
