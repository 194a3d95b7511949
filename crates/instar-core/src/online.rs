//! Declarative schema operations: the `[[ops]]` of a `kind = "online"`
//! migration, as written in its `migration.toml`.
//!
//! Each op says *what* changes (add a column, rename one, change its type);
//! the engine crate compiles it into the statements that do it cheaply on each
//! engine. Types, defaults and expressions are SQL text in the engine's own
//! dialect; table, column and constraint names are quoted by Instar.

use serde::{Deserialize, Serialize};

/// One schema operation.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// A new table.
    CreateTable {
        /// Its name.
        table: String,
        /// Its columns, in order.
        columns: Vec<ColumnDef>,
        /// A composite primary key (a single one may be marked on its column).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        primary_key: Vec<String>,
    },
    /// Drops a table (and its rows: irreversible).
    DropTable {
        /// Its name.
        table: String,
    },
    /// Renames a table.
    RenameTable {
        /// Its name now.
        table: String,
        /// Its new name.
        to: String,
    },
    /// Adds a column to one table or several.
    AddColumn {
        /// The table (or use `tables`).
        table: Option<String>,
        /// Several tables, each given the same column.
        tables: Option<Vec<String>>,
        /// The column's name.
        column: String,
        /// Its SQL type.
        #[serde(rename = "type")]
        ty: String,
        /// Its default, as an SQL expression (`"0"`, `"'none'"`).
        default: Option<String>,
        /// `NOT NULL` (needs a default when the table has rows).
        #[serde(default)]
        not_null: bool,
        /// A table that already has the column is skipped, not an error.
        #[serde(default)]
        if_not_exists: bool,
        /// A table that does not exist is skipped, not an error.
        #[serde(default)]
        skip_missing_table: bool,
        /// The column's value computed from the row's other columns (an SQL
        /// expression): existing rows are filled with it, and while two
        /// versions are served, so is every row the old version writes.
        up: Option<String>,
    },
    /// Drops a column (its values are lost: irreversible).
    DropColumn {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// While two versions are served: the column's value for rows the
        /// new version writes, computed from the new version's columns.
        down: Option<String>,
    },
    /// Renames a column.
    RenameColumn {
        /// The table.
        table: String,
        /// The column's name now.
        column: String,
        /// Its new name.
        to: String,
    },
    /// Changes a column's type; `up` computes the new value from the row
    /// (default: the column itself), `down` the old one from the new. With
    /// `lens`, the column holds JSON documents of that collection, and `up`
    /// and `down` are the collection's lenses between `from_version` and
    /// `to_version`, as the engine's JSON functions.
    AlterColumn {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// The new SQL type (with `lens`, default: the column's type).
        #[serde(rename = "type", default)]
        ty: String,
        /// The old type, needed to go back down.
        from_type: Option<String>,
        /// SQL expression giving the new value (the column's name stands for its old value).
        up: Option<String>,
        /// SQL expression giving the old value back.
        down: Option<String>,
        /// The change cannot be undone exactly (declared on purpose).
        #[serde(default)]
        lossy: bool,
        /// The collection (`[collections.<name>]` of `instar.toml`) whose
        /// documents the column holds.
        lens: Option<String>,
        /// The documents' version before (with `lens`).
        from_version: Option<String>,
        /// The documents' version after (with `lens`).
        to_version: Option<String>,
    },
    /// Makes a column `NOT NULL`; `up` fills the rows where it is `NULL`.
    SetNotNull {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// SQL expression for the rows holding `NULL`.
        up: Option<String>,
    },
    /// A unique constraint.
    AddUnique {
        /// The table.
        table: String,
        /// Its columns.
        columns: Vec<String>,
        /// Its name (default `<table>_<columns>_key`).
        name: Option<String>,
    },
    /// A check constraint.
    AddCheck {
        /// The table.
        table: String,
        /// Its name.
        name: String,
        /// The condition, an SQL expression.
        check: String,
    },
    /// A foreign key.
    AddForeignKey {
        /// The referencing table.
        table: String,
        /// Its columns.
        columns: Vec<String>,
        /// The referenced table.
        references: String,
        /// The referenced columns (default: the same names).
        #[serde(default)]
        references_columns: Vec<String>,
        /// Its name (default `<table>_<columns>_fkey`).
        name: Option<String>,
        /// `ON DELETE` action (`cascade`, `set null`, `restrict` …).
        on_delete: Option<String>,
    },
    /// An index.
    CreateIndex {
        /// The table.
        table: String,
        /// Its columns (or expressions, written as SQL).
        columns: Vec<String>,
        /// Its name (default `<table>_<columns>_idx`).
        name: Option<String>,
        /// A unique index.
        #[serde(default)]
        unique: bool,
    },
    /// Drops an index.
    DropIndex {
        /// Its name.
        name: String,
        /// Its table (MySQL names indexes per table).
        table: String,
    },
    /// Raw SQL, the escape hatch.
    Sql {
        /// Forward statements.
        up: String,
        /// Reverse statements (none: irreversible).
        down: Option<String>,
    },
}

/// A column of `create_table`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ColumnDef {
    /// Its name.
    pub name: String,
    /// Its SQL type.
    #[serde(rename = "type")]
    pub ty: String,
    /// `NOT NULL`.
    #[serde(default)]
    pub not_null: bool,
    /// Its default, an SQL expression.
    pub default: Option<String>,
    /// The table's (single-column) primary key.
    #[serde(default)]
    pub primary_key: bool,
    /// A unique column.
    #[serde(default)]
    pub unique: bool,
}

impl Op {
    /// The op's name as written (`add_column`).
    pub fn name(&self) -> &'static str {
        match self {
            Op::CreateTable { .. } => "create_table",
            Op::DropTable { .. } => "drop_table",
            Op::RenameTable { .. } => "rename_table",
            Op::AddColumn { .. } => "add_column",
            Op::DropColumn { .. } => "drop_column",
            Op::RenameColumn { .. } => "rename_column",
            Op::AlterColumn { .. } => "alter_column",
            Op::SetNotNull { .. } => "set_not_null",
            Op::AddUnique { .. } => "add_unique",
            Op::AddCheck { .. } => "add_check",
            Op::AddForeignKey { .. } => "add_foreign_key",
            Op::CreateIndex { .. } => "create_index",
            Op::DropIndex { .. } => "drop_index",
            Op::Sql { .. } => "sql",
        }
    }

    /// Why the op cannot be undone by `instar down`, if it cannot.
    pub fn irreversible(&self) -> Option<String> {
        match self {
            // A lens goes both ways; its down is the lens read backwards.
            Op::AlterColumn { lens: Some(_), .. } => None,
            Op::DropTable { table } => Some(format!("drop_table {table} loses its rows")),
            Op::DropColumn { table, column, .. } => {
                Some(format!("drop_column {table}.{column} loses its values"))
            }
            Op::AlterColumn {
                table,
                column,
                from_type: None,
                ..
            } => Some(format!(
                "alter_column {table}.{column} has no from_type to go back to"
            )),
            Op::AlterColumn {
                table,
                column,
                up: Some(_),
                down: None,
                ..
            } => Some(format!(
                "alter_column {table}.{column} has an up expression but no down"
            )),
            Op::DropIndex { name, .. } => {
                Some(format!("drop_index {name} does not keep its definition"))
            }
            Op::Sql { down: None, .. } => Some("an sql op without down".into()),
            _ => None,
        }
    }

    /// The tables an `add_column` op names (one, or its list); for any other op, its table.
    pub fn tables(&self) -> Vec<&str> {
        match self {
            Op::AddColumn { table, tables, .. } => table
                .iter()
                .map(String::as_str)
                .chain(tables.iter().flatten().map(String::as_str))
                .collect(),
            Op::CreateTable { table, .. }
            | Op::DropTable { table }
            | Op::RenameTable { table, .. }
            | Op::DropColumn { table, .. }
            | Op::RenameColumn { table, .. }
            | Op::AlterColumn { table, .. }
            | Op::SetNotNull { table, .. }
            | Op::AddUnique { table, .. }
            | Op::AddCheck { table, .. }
            | Op::AddForeignKey { table, .. }
            | Op::CreateIndex { table, .. }
            | Op::DropIndex { table, .. } => vec![table.as_str()],
            Op::Sql { .. } => vec![],
        }
    }

    /// A reason the op is malformed, checked when the file is read.
    pub fn malformed(&self) -> Option<String> {
        let empty = |s: &str| s.trim().is_empty();
        match self {
            Op::AddColumn { table, tables, .. } => match (table, tables) {
                (None, None) => Some("add_column needs `table` or `tables`".into()),
                (Some(_), Some(_)) => Some("add_column takes `table` or `tables`, not both".into()),
                (None, Some(v)) if v.is_empty() => Some("add_column's `tables` is empty".into()),
                _ => None,
            },
            Op::CreateTable { columns, .. } if columns.is_empty() => {
                Some("create_table needs at least one column".into())
            }
            Op::AddUnique { columns, .. }
            | Op::CreateIndex { columns, .. }
            | Op::AddForeignKey { columns, .. }
                if columns.is_empty() =>
            {
                Some(format!("{} needs at least one column", self.name()))
            }
            Op::AddForeignKey {
                columns,
                references_columns,
                ..
            } if !references_columns.is_empty() && references_columns.len() != columns.len() => {
                Some("add_foreign_key's columns and references_columns differ in number".into())
            }
            Op::Sql { up, .. } if empty(up) => Some("an sql op needs `up`".into()),
            Op::AlterColumn {
                lens: Some(_),
                from_version,
                to_version,
                up,
                down,
                ..
            } => {
                if from_version.is_none() || to_version.is_none() {
                    Some("alter_column with `lens` needs `from_version` and `to_version` (the documents' versions before and after)".into())
                } else if up.is_some() || down.is_some() {
                    Some("alter_column takes `lens` or `up`/`down` expressions, not both".into())
                } else {
                    None
                }
            }
            Op::AlterColumn { ty, .. } if empty(ty) => {
                Some("alter_column needs `type` (or `lens`, which keeps the column's type)".into())
            }
            _ => self
                .tables()
                .iter()
                .any(|t| empty(t))
                .then(|| format!("{} has an empty table name", self.name())),
        }
    }
}

/// The line of each `[[ops]]` header in `text` (1-based), in order.
pub fn op_lines(text: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == "[[ops]]")
        .map(|(i, _)| i + 1)
        .collect()
}

/// A name made of parts, as Instar names constraints and indexes it makes up
/// (at most 63 characters, PostgreSQL's limit; MySQL's is 64).
pub fn made_up_name(table: &str, columns: &[String], suffix: &str) -> String {
    let mut base = format!("{}_{}", table, columns.join("_"));
    base.retain(|c| c.is_ascii_alphanumeric() || c == '_');
    let max = 63 - suffix.len() - 1;
    if base.len() > max {
        base.truncate(max);
    }
    format!("{base}_{suffix}")
}

/// `s` ending with exactly one `;`.
pub fn terminated(s: &str) -> String {
    let t = s.trim_end();
    if t.ends_with(';') {
        t.to_string()
    } else {
        format!("{t};")
    }
}

/// A script of each op's statements, each op's starting on the op's
/// `[[ops]]` line where it can (so a statement is named by its op's line).
pub fn layout(ops: &[(usize, Vec<String>)]) -> String {
    let mut out = String::new();
    let mut line = 1;
    for (at, stmts) in ops {
        while line < *at {
            out.push('\n');
            line += 1;
        }
        let text = stmts
            .iter()
            .map(|s| terminated(s))
            .collect::<Vec<_>>()
            .join(" ");
        line += text.matches('\n').count() + 1;
        out.push_str(&text);
        out.push('\n');
    }
    out
}

/// The ops as engine-neutral SQL (PostgreSQL's non-blocking forms), for the
/// tools that read a migration without a database: `lint`, `compat`, `audit`.
/// What runs is compiled per engine against the catalog.
pub fn sketch(ops: &[Op], toml: &str) -> String {
    let lines = op_lines(toml);
    let ops: Vec<(usize, Vec<String>)> = ops
        .iter()
        .enumerate()
        .map(|(i, op)| (lines.get(i).copied().unwrap_or(1), sketch_op(op)))
        .collect();
    layout(&ops)
}

fn sketch_op(op: &Op) -> Vec<String> {
    let alter = |t: &str| format!("ALTER TABLE {t}");
    let name = |n: &Option<String>, t: &str, cols: &[String], suffix: &str| {
        n.clone().unwrap_or_else(|| made_up_name(t, cols, suffix))
    };
    match op {
        Op::CreateTable {
            table,
            columns,
            primary_key,
        } => {
            let mut items: Vec<String> = columns
                .iter()
                .map(|c| {
                    let mut s = format!("{} {}", c.name, c.ty);
                    if let Some(d) = &c.default {
                        s.push_str(&format!(" DEFAULT {d}"));
                    }
                    if c.not_null {
                        s.push_str(" NOT NULL");
                    }
                    if c.primary_key {
                        s.push_str(" PRIMARY KEY");
                    }
                    s
                })
                .collect();
            if !primary_key.is_empty() {
                items.push(format!("PRIMARY KEY ({})", primary_key.join(", ")));
            }
            vec![format!("CREATE TABLE {table} ({})", items.join(", "))]
        }
        Op::DropTable { table } => vec![format!("DROP TABLE {table}")],
        Op::RenameTable { table, to } => vec![format!("{} RENAME TO {to}", alter(table))],
        Op::AddColumn {
            column,
            ty,
            default,
            not_null,
            ..
        } => op
            .tables()
            .iter()
            .map(|t| {
                format!(
                    "{} ADD COLUMN {column} {ty}{}{}",
                    alter(t),
                    default
                        .as_ref()
                        .map(|d| format!(" DEFAULT {d}"))
                        .unwrap_or_default(),
                    if *not_null { " NOT NULL" } else { "" }
                )
            })
            .collect(),
        Op::DropColumn { table, column, .. } => {
            vec![format!("{} DROP COLUMN {column}", alter(table))]
        }
        Op::RenameColumn { table, column, to } => {
            vec![format!("{} RENAME COLUMN {column} TO {to}", alter(table))]
        }
        // Rewrites every document of the column.
        Op::AlterColumn {
            table,
            column,
            lens: Some(_),
            ..
        } => vec![format!("UPDATE {table} SET {column} = {column}")],
        Op::AlterColumn {
            table, column, ty, ..
        } => {
            vec![format!("{} ALTER COLUMN {column} TYPE {ty}", alter(table))]
        }
        Op::SetNotNull { table, column, .. } => {
            vec![format!(
                "{} ALTER COLUMN {column} SET NOT NULL",
                alter(table)
            )]
        }
        Op::AddUnique {
            table,
            columns,
            name: n,
        } => vec![format!(
            "{} ADD CONSTRAINT {} UNIQUE ({})",
            alter(table),
            name(n, table, columns, "key"),
            columns.join(", ")
        )],
        Op::AddCheck {
            table,
            name: n,
            check,
        } => vec![format!(
            "{} ADD CONSTRAINT {n} CHECK ({check}) NOT VALID",
            alter(table)
        )],
        Op::AddForeignKey {
            table,
            columns,
            references,
            references_columns,
            name: n,
            ..
        } => {
            let to = if references_columns.is_empty() {
                columns
            } else {
                references_columns
            };
            vec![format!(
                "{} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {references} ({}) NOT VALID",
                alter(table),
                name(n, table, columns, "fkey"),
                columns.join(", "),
                to.join(", ")
            )]
        }
        Op::CreateIndex {
            table,
            columns,
            name: n,
            unique,
        } => vec![format!(
            "CREATE {}INDEX CONCURRENTLY {} ON {table} ({})",
            if *unique { "UNIQUE " } else { "" },
            name(n, table, columns, "idx"),
            columns.join(", ")
        )],
        Op::DropIndex { name: n, .. } => vec![format!("DROP INDEX CONCURRENTLY {n}")],
        Op::Sql { up, .. } => vec![up.clone()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct File {
        ops: Vec<Op>,
    }

    #[test]
    fn ops_parse_and_unknown_keys_are_refused() {
        let f: File = toml::from_str(
            r#"
[[ops]]
op = "add_column"
tables = ["a", "b"]
column = "c"
type = "integer"
default = "0"
if_not_exists = true

[[ops]]
op = "rename_column"
table = "a"
column = "x"
to = "y"
"#,
        )
        .unwrap();
        assert_eq!(f.ops.len(), 2);
        assert_eq!(f.ops[0].tables(), vec!["a", "b"]);
        assert!(f.ops[0].malformed().is_none());
        let bad = toml::from_str::<File>(
            "[[ops]]\nop = \"rename_column\"\ntable = \"a\"\ncolumn = \"x\"\nnew_name = \"y\"\n",
        );
        assert!(bad.unwrap_err().to_string().contains("new_name"));
        let bad = toml::from_str::<File>("[[ops]]\nop = \"add_colum\"\ntable = \"a\"\n");
        assert!(bad.unwrap_err().to_string().contains("add_colum"));
    }

    #[test]
    fn sketch_lays_statements_on_their_op_lines() {
        let toml = "kind = \"online\"\n\n[[ops]]\nop = \"rename_column\"\ntable = \"a\"\ncolumn = \"x\"\nto = \"y\"\n\n[[ops]]\nop = \"drop_table\"\ntable = \"b\"\n";
        let f: File = toml::from_str(toml).unwrap();
        let sql = sketch(&f.ops, toml);
        let lines: Vec<&str> = sql.lines().collect();
        assert_eq!(lines[2], "ALTER TABLE a RENAME COLUMN x TO y;");
        assert_eq!(lines[8], "DROP TABLE b;");
    }

    #[test]
    fn lines_and_reversibility() {
        assert_eq!(
            op_lines("kind = \"online\"\n\n[[ops]]\nop = \"sql\"\n[[ops]]\n"),
            vec![3, 5]
        );
        let drop = Op::DropColumn {
            table: "t".into(),
            column: "c".into(),
            down: None,
        };
        assert!(drop.irreversible().unwrap().contains("t.c"));
        let both = Op::AddColumn {
            table: Some("t".into()),
            tables: Some(vec!["u".into()]),
            column: "c".into(),
            ty: "int".into(),
            default: None,
            not_null: false,
            if_not_exists: false,
            skip_missing_table: false,
            up: None,
        };
        assert!(both.malformed().unwrap().contains("not both"));
        assert_eq!(
            made_up_name("orders", &["customer_id".into()], "fkey"),
            "orders_customer_id_fkey"
        );
        assert!(made_up_name(&"x".repeat(80), &[], "idx").len() <= 63);
    }
}
