//! What a DDL statement leaves behind, so that after a crash Instar can tell
//! whether a statement that commits by itself (MySQL DDL, `CREATE INDEX
//! CONCURRENTLY`) took effect before the process died.

/// The observable effect of a statement: an object that exists (or no longer does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Table `name` exists (`true`, after CREATE) or not (`false`, after DROP).
    Table {
        /// The table, unquoted (maybe `schema.table`).
        name: String,
        /// Whether it exists afterwards.
        exists: bool,
    },
    /// Index `name` exists, or not.
    Index {
        /// The index, unquoted.
        name: String,
        /// Its table, when the statement names it.
        table: Option<String>,
        /// Whether it exists afterwards.
        exists: bool,
    },
    /// Column `column` of `table` exists, or not.
    Column {
        /// The table, unquoted.
        table: String,
        /// The column, unquoted.
        column: String,
        /// Whether it exists afterwards.
        exists: bool,
    },
}

/// The words of a statement, with identifier quotes removed (`"x"`, `` `x` ``, `[x]`).
fn words(sql: &str) -> Vec<String> {
    sql.split(|c: char| c.is_whitespace() || c == '(' || c == ';' || c == ',')
        .filter(|w| !w.is_empty())
        .map(|w| {
            w.chars()
                .filter(|c| !matches!(c, '"' | '`' | '[' | ']'))
                .collect()
        })
        .collect()
}

/// The effect of `sql` when it is one of the common DDL shapes (CREATE/DROP
/// TABLE, CREATE/DROP INDEX, ALTER TABLE … ADD/DROP COLUMN); `None` otherwise.
pub fn expected_effect(sql: &str) -> Option<Effect> {
    let w = words(sql);
    let up: Vec<String> = w.iter().map(|x| x.to_ascii_uppercase()).collect();
    let at = |i: usize| up.get(i).map(String::as_str).unwrap_or("");
    let name_after = |mut i: usize| -> Option<(String, usize)> {
        // Skip IF [NOT] EXISTS and CONCURRENTLY.
        while matches!(at(i), "IF" | "NOT" | "EXISTS" | "CONCURRENTLY") {
            i += 1;
        }
        w.get(i).map(|n| (n.clone(), i + 1))
    };
    // `INDEX name [ON table]` from word `start`.
    let index = |start: usize, exists: bool| {
        let (name, next) = name_after(start)?;
        let table = (at(next) == "ON")
            .then(|| w.get(next + 1).cloned())
            .flatten();
        Some(Effect::Index {
            name,
            table,
            exists,
        })
    };
    match (at(0), at(1)) {
        ("CREATE", "TABLE") => name_after(2).map(|(name, _)| Effect::Table { name, exists: true }),
        ("DROP", "TABLE") => name_after(2).map(|(name, _)| Effect::Table {
            name,
            exists: false,
        }),
        ("CREATE", "INDEX") | ("CREATE", "UNIQUE") => {
            let start = if at(1) == "UNIQUE" { 3 } else { 2 };
            if at(start - 1) != "INDEX" {
                return None;
            }
            index(start, true)
        }
        ("DROP", "INDEX") => index(2, false),
        ("ALTER", "TABLE") => {
            let (table, mut i) = name_after(2)?;
            let exists = match at(i) {
                "ADD" => true,
                "DROP" => false,
                _ => return None,
            };
            i += 1;
            if at(i) == "COLUMN" {
                i += 1;
            }
            if matches!(
                at(i),
                "CONSTRAINT" | "INDEX" | "KEY" | "PRIMARY" | "UNIQUE" | "FOREIGN" | "CHECK"
            ) {
                return None;
            }
            let (column, next) = name_after(i)?;
            // One change per statement: anything after a comma is beyond this check.
            if sql.contains(',') && up.len() > next + 4 {
                return None;
            }
            Some(Effect::Column {
                table,
                column,
                exists,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_ddl_shapes() {
        assert_eq!(
            expected_effect("CREATE TABLE IF NOT EXISTS `t1` (id INT)"),
            Some(Effect::Table {
                name: "t1".into(),
                exists: true
            })
        );
        assert_eq!(
            expected_effect("drop table t1"),
            Some(Effect::Table {
                name: "t1".into(),
                exists: false
            })
        );
        assert_eq!(
            expected_effect("CREATE UNIQUE INDEX CONCURRENTLY i ON t (x)"),
            Some(Effect::Index {
                name: "i".into(),
                table: Some("t".into()),
                exists: true
            })
        );
        assert_eq!(
            expected_effect("ALTER TABLE t ADD COLUMN c INT NOT NULL DEFAULT 0"),
            Some(Effect::Column {
                table: "t".into(),
                column: "c".into(),
                exists: true
            })
        );
        assert_eq!(
            expected_effect("ALTER TABLE t ADD CONSTRAINT k UNIQUE (x)"),
            None
        );
        assert_eq!(expected_effect("INSERT INTO t VALUES (1)"), None);
    }
}
