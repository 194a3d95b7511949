//! `instar lint`: what a migration's SQL will do to a live database that the
//! author may not have meant — destroy data, lock a hot table, fail on rows
//! that exist — found per dialect before it runs, each finding with its
//! rule id, severity, file and line, and what to do instead.
//!
//! The analysis is lexical (comments and string literals removed, then
//! keywords matched): it needs no database. `-- instar:allow RULE reason` on
//! a line before a statement silences that rule for that statement.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::split::{split, Dialect, Split};

/// How serious a finding is: errors make `instar lint` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look.
    Warning,
    /// Loses data or fails on a live database: fix it or allow it with a reason.
    Error,
}

/// A rule: its id, severity and what it is about.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rule {
    /// The id (`drop-column`), used by `-- instar:allow`.
    pub id: &'static str,
    /// How serious.
    pub severity: Severity,
    /// One line on what it finds.
    pub summary: &'static str,
}

/// Every rule.
pub const RULES: &[Rule] = &[
    Rule { id: "drop-table", severity: Severity::Error, summary: "DROP TABLE deletes a table and all its rows" },
    Rule { id: "drop-column", severity: Severity::Error, summary: "a dropped column's values are gone, and releases still reading it fail" },
    Rule { id: "add-not-null-without-default", severity: Severity::Error, summary: "a NOT NULL column without a DEFAULT fails on (or fills) the rows already there" },
    Rule { id: "narrowing-type", severity: Severity::Error, summary: "a column type narrower than before fails on or truncates existing values" },
    Rule { id: "type-change", severity: Severity::Warning, summary: "changing a column's type rewrites the table and can break releases still running" },
    Rule { id: "table-rewrite", severity: Severity::Warning, summary: "the statement rewrites the whole table under an exclusive lock" },
    Rule { id: "set-not-null", severity: Severity::Warning, summary: "SET NOT NULL scans the whole table under an exclusive lock (PostgreSQL)" },
    Rule { id: "create-index-blocking", severity: Severity::Warning, summary: "CREATE INDEX without CONCURRENTLY blocks writes for the whole build (PostgreSQL)" },
    Rule { id: "rename", severity: Severity::Warning, summary: "a rename breaks every release still using the old name" },
    Rule { id: "rename-used-by-release", severity: Severity::Error, summary: "a rename in a schema version that a release of [compat] runs against, as it did the version before" },
    Rule { id: "data-migration-without-checks", severity: Severity::Warning, summary: "a data migration without checks.after cannot tell it did what it meant" },
    Rule { id: "lens-not-reversible", severity: Severity::Warning, summary: "a documents migration whose lens path has one-way steps cannot be read back at the older version" },
    Rule { id: "not-linted", severity: Severity::Warning, summary: "the file could not be split into statements, so it was not checked" },
    Rule { id: "unterminated", severity: Severity::Error, summary: "a string, quoted name or comment is never closed" },
    Rule { id: "allow-without-reason", severity: Severity::Error, summary: "an instar:allow comment names no rule or gives no reason" },
];

/// The rule `id`.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The rule's id.
    pub rule: &'static str,
    /// Its severity.
    pub severity: Severity,
    /// The file.
    pub file: PathBuf,
    /// The 1-based line of the statement.
    pub line: usize,
    /// What the statement does.
    pub message: String,
    /// What to do instead.
    pub instead: String,
}

/// What lint knows about the tables while it reads the migrations in order:
/// the column types `CREATE TABLE` declared, and (when connected) row counts.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    /// Column types by lower-cased `table.column`.
    pub columns: BTreeMap<String, String>,
    /// Approximate rows per lower-cased table name (the database's statistics).
    pub rows: BTreeMap<String, u64>,
}

/// A statement reduced for matching: its words and punctuation, upper-cased,
/// without comments or string contents.
#[derive(Debug)]
pub(crate) struct Tokens {
    pub(crate) up: Vec<String>,
    raw: Vec<String>,
}

pub(crate) fn tokens(sql: &str) -> Tokens {
    let mut raw = Vec::new();
    let mut cur = String::new();
    let mut it = sql.chars().peekable();
    let flush = |cur: &mut String, raw: &mut Vec<String>| {
        if !cur.is_empty() {
            raw.push(std::mem::take(cur));
        }
    };
    while let Some(c) = it.next() {
        match c {
            '-' if it.peek() == Some(&'-') => {
                flush(&mut cur, &mut raw);
                for n in it.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
            }
            '/' if it.peek() == Some(&'*') => {
                flush(&mut cur, &mut raw);
                let mut prev = ' ';
                for n in it.by_ref() {
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
            }
            '\'' => {
                flush(&mut cur, &mut raw);
                while let Some(n) = it.next() {
                    if n == '\'' {
                        if it.peek() == Some(&'\'') {
                            it.next();
                            continue;
                        }
                        break;
                    }
                }
                raw.push("''".into());
            }
            '"' | '`' => {
                flush(&mut cur, &mut raw);
                let mut name = String::new();
                for n in it.by_ref() {
                    if n == c {
                        break;
                    }
                    name.push(n);
                }
                raw.push(name);
            }
            c if c.is_whitespace() => flush(&mut cur, &mut raw),
            '(' | ')' | ',' | ';' => {
                flush(&mut cur, &mut raw);
                raw.push(c.to_string());
            }
            c => cur.push(c),
        }
    }
    flush(&mut cur, &mut raw);
    Tokens {
        up: raw.iter().map(|t| t.to_uppercase()).collect(),
        raw,
    }
}

impl Tokens {
    pub(crate) fn is(&self, i: usize, word: &str) -> bool {
        self.up.get(i).is_some_and(|t| t == word)
    }

    /// Index past the words `seq` at `i`, if they are there.
    pub(crate) fn seq(&self, i: usize, seq: &[&str]) -> Option<usize> {
        seq.iter()
            .enumerate()
            .all(|(k, w)| self.is(i + k, w))
            .then_some(i + seq.len())
    }

    /// Skips `IF EXISTS` / `IF NOT EXISTS` / `ONLY` at `i`.
    pub(crate) fn skip_guards(&self, mut i: usize) -> usize {
        loop {
            if let Some(n) = self
                .seq(i, &["IF", "NOT", "EXISTS"])
                .or_else(|| self.seq(i, &["IF", "EXISTS"]))
            {
                i = n;
            } else if self.is(i, "ONLY") {
                i += 1;
            } else {
                return i;
            }
        }
    }

    pub(crate) fn name(&self, i: usize) -> String {
        self.raw.get(i).cloned().unwrap_or_default()
    }

    /// The comma-separated parts at parenthesis depth 0 from `i` to the end.
    fn parts(&self, i: usize) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let (mut depth, mut start) = (0i32, i);
        for k in i..self.up.len() {
            match self.up[k].as_str() {
                "(" => depth += 1,
                ")" => depth -= 1,
                "," | ";" if depth == 0 => {
                    out.push((start, k));
                    start = k + 1;
                }
                _ => {}
            }
        }
        if start < self.up.len() {
            out.push((start, self.up.len()));
        }
        out
    }

    fn has(&self, (a, b): (usize, usize), word: &str) -> bool {
        self.up[a..b].iter().any(|t| t == word)
    }

    fn text(&self, (a, b): (usize, usize)) -> String {
        let mut s = String::new();
        for t in &self.raw[a..b] {
            if !s.is_empty() && t != ")" && t != "," && t != "(" && !s.ends_with('(') {
                s.push(' ');
            }
            s.push_str(t);
        }
        s
    }
}

/// Lints one migration script: `file` as `sql`, on `dialect`. `created`
/// collects the tables this migration creates (new tables have no rows and
/// no readers: most rules do not apply to them); `schema` is updated with
/// what its `CREATE TABLE`s declare.
pub fn lint_script(file: &Path, sql: &str, dialect: Dialect, schema: &mut Schema) -> Vec<Finding> {
    let mut out = Vec::new();
    let statements = match split(sql, dialect) {
        Split::Statements(s) => s,
        Split::Whole { reason } => {
            out.push(finding(file, 1, "not-linted", format!("the file is sent to the database whole ({reason}), so lint did not check its statements"), "check it by hand, or move the statements lint can read into a file of their own"));
            return out;
        }
        Split::Unterminated { what, line } => {
            out.push(finding(
                file,
                line,
                "unterminated",
                format!("a {what} starting here is never closed"),
                "close it; as it is, it swallows the rest of the file",
            ));
            return out;
        }
    };
    let allows = allows(file, sql, &mut out);
    let mut created: Vec<String> = Vec::new();
    for st in &statements {
        let t = tokens(&st.sql);
        let mut found = Vec::new();
        statement(&t, dialect, schema, &mut created, &mut found);
        for (rule, message, instead) in found {
            // An allow comment between the previous statement and this one.
            let allowed = allows.iter().any(|(line, r)| {
                *r == rule
                    && *line <= st.line
                    && !statements
                        .iter()
                        .any(|o| o.line > *line && o.line < st.line)
            });
            if !allowed {
                out.push(finding(file, st.line, rule, message, &instead));
            }
        }
    }
    out
}

fn finding(
    file: &Path,
    line: usize,
    rule_id: &'static str,
    message: String,
    instead: &str,
) -> Finding {
    Finding {
        rule: rule_id,
        severity: rule(rule_id).map_or(Severity::Error, |r| r.severity),
        file: file.to_path_buf(),
        line,
        message,
        instead: instead.to_string(),
    }
}

/// The `-- instar:allow RULE reason` comments: (line, rule). One without a
/// known rule or a reason is itself a finding.
fn allows(file: &Path, sql: &str, out: &mut Vec<Finding>) -> Vec<(usize, &'static str)> {
    let mut list = Vec::new();
    for (n, line) in sql.lines().enumerate() {
        let Some(rest) = line
            .split("instar:allow")
            .nth(1)
            .filter(|_| line.trim_start().starts_with("--"))
        else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let id = words.next().unwrap_or("");
        let reason: Vec<&str> = words.collect();
        match rule(id) {
            Some(r) if !reason.is_empty() => list.push((n + 1, r.id)),
            _ => out.push(finding(file, n + 1, "allow-without-reason", format!("`instar:allow {id}` needs a known rule id and a reason"), "write `-- instar:allow RULE why it is safe here`, with a rule id `instar lint --rules` lists")),
        }
    }
    list
}

type Found = Vec<(&'static str, String, String)>;

fn statement(
    t: &Tokens,
    dialect: Dialect,
    schema: &mut Schema,
    created: &mut Vec<String>,
    found: &mut Found,
) {
    if let Some(i) = t.seq(0, &["CREATE", "TABLE"]) {
        let i = t.skip_guards(i);
        let table = t.name(i).to_lowercase();
        created.push(table.clone());
        declare_columns(t, i + 1, &table, schema);
    } else if let Some(i) = t.seq(0, &["DROP", "TABLE"]) {
        let i = t.skip_guards(i);
        let table = t.name(i);
        found.push(("drop-table", format!("drops table {table} and every row in it; only a backup brings them back"), format!("stop using {table} in a release first; then rename it (ALTER TABLE {table} RENAME TO {table}_old) and drop it in a later migration once nothing reads it, or keep it")));
    } else if let Some(i) = t.seq(0, &["ALTER", "TABLE"]) {
        let i = t.skip_guards(i);
        let table = t.name(i);
        let new = created.contains(&table.to_lowercase());
        for part in t.parts(i + 1) {
            alter(
                &Alter {
                    t,
                    table: &table,
                    new,
                    dialect,
                },
                part,
                schema,
                found,
            );
        }
    } else if t.is(0, "CREATE") && dialect == Dialect::Postgres {
        let i = if t.is(1, "UNIQUE") { 2 } else { 1 };
        if t.is(i, "INDEX") && !t.is(i + 1, "CONCURRENTLY") {
            let on =
                t.up.iter()
                    .position(|w| w == "ON")
                    .map(|k| t.skip_guards(k + 1));
            let table = on.map(|k| t.name(k)).unwrap_or_default();
            if !created.contains(&table.to_lowercase()) {
                found.push(("create-index-blocking", format!("builds an index on {table} while blocking every write to it{}", size(schema, &table)), "CREATE INDEX CONCURRENTLY, in a migration that runs outside a transaction (-- instar:no-transaction); if it fails, drop the INVALID index it leaves and run it again".into()));
            }
        }
    } else if let Some(i) = t.seq(0, &["RENAME", "TABLE"]) {
        let table = t.name(i);
        found.push(("rename", format!("renames table {table}: every release still running reads the old name"), "expand and contract: create the new table (or a view with the new name), write to both, move readers over, and drop the old one in a later release".into()));
    }
}

fn size(schema: &Schema, table: &str) -> String {
    match schema.rows.get(&table.to_lowercase()) {
        Some(n) => format!(" (about {n} rows, from the database's statistics)"),
        None => String::new(),
    }
}

const NOT_COLUMNS: &[&str] = &[
    "CONSTRAINT",
    "INDEX",
    "KEY",
    "PRIMARY",
    "UNIQUE",
    "FOREIGN",
    "CHECK",
    "DEFAULT",
    "PARTITION",
    "SPATIAL",
    "FULLTEXT",
    "NOT",
    "EXCLUDE",
];

/// `CREATE TABLE t (col type …, …)`: the declared column types.
fn declare_columns(t: &Tokens, i: usize, table: &str, schema: &mut Schema) {
    if !t.is(i, "(") {
        return;
    }
    let end = t.up.iter().rposition(|w| w == ")").unwrap_or(t.up.len());
    for (a, b) in t.parts(i + 1) {
        let b = b.min(end);
        if a >= b || NOT_COLUMNS.contains(&t.up[a].as_str()) {
            continue;
        }
        schema.columns.insert(
            format!("{table}.{}", t.raw[a].to_lowercase()),
            column_type(t, a + 1, b),
        );
    }
}

/// The type words from `a` (up to a constraint keyword), upper-cased.
fn column_type(t: &Tokens, a: usize, b: usize) -> String {
    let stop = [
        "NOT",
        "NULL",
        "DEFAULT",
        "PRIMARY",
        "REFERENCES",
        "UNIQUE",
        "CHECK",
        "COLLATE",
        "CONSTRAINT",
        "GENERATED",
        "AUTO_INCREMENT",
        "USING",
        "AFTER",
        "FIRST",
    ];
    let end = (a..b)
        .find(|&k| stop.contains(&t.up[k].as_str()))
        .unwrap_or(b);
    t.text((a, end)).to_uppercase()
}

/// One `ALTER TABLE` being read: its tokens, table, whether this migration
/// created the table, and the dialect.
struct Alter<'a> {
    t: &'a Tokens,
    table: &'a str,
    new: bool,
    dialect: Dialect,
}

fn alter(cx: &Alter<'_>, part: (usize, usize), schema: &mut Schema, found: &mut Found) {
    let Alter {
        t,
        table,
        new,
        dialect,
    } = *cx;
    let (a, b) = part;
    if a >= b {
        return;
    }
    let w = |k: usize| t.up.get(k).map(String::as_str).unwrap_or("");
    match w(a) {
        "DROP" => {
            let c = if w(a + 1) == "COLUMN" { a + 2 } else { a + 1 };
            if [
                "CONSTRAINT",
                "INDEX",
                "KEY",
                "PRIMARY",
                "FOREIGN",
                "CHECK",
                "DEFAULT",
                "PARTITION",
            ]
            .contains(&w(c))
                || (dialect == Dialect::Postgres && w(a + 1) != "COLUMN")
            {
                return;
            }
            let c = t.skip_guards(c);
            let col = t.name(c);
            found.push(("drop-column", format!("drops column {table}.{col} and its values; releases still reading it fail"), format!("stop reading and writing {col} in a release first, then drop it in a later migration; keep a backup (instar backup) if its values may be needed")));
        }
        "ADD" => {
            if NOT_COLUMNS.contains(&w(a + 1)) && w(a + 1) != "NOT" {
                return;
            }
            let c = t.skip_guards(if w(a + 1) == "COLUMN" { a + 2 } else { a + 1 });
            let col = t.name(c);
            schema.columns.insert(
                format!("{}.{}", table.to_lowercase(), col.to_lowercase()),
                column_type(t, c + 1, b),
            );
            if new {
                return;
            }
            let not_null = (a..b).any(|k| w(k) == "NOT" && w(k + 1) == "NULL");
            let default = t.has(part, "DEFAULT");
            if not_null && !default && !t.has(part, "GENERATED") && !t.has(part, "AUTO_INCREMENT") {
                found.push(("add-not-null-without-default", format!("adds {table}.{col} NOT NULL without a DEFAULT: {}", if dialect == Dialect::MySql { "MySQL fills the existing rows with the type's zero value (or fails in strict mode)" } else { "it fails as soon as the table has a row" }), format!("add {col} nullable (or with a DEFAULT), backfill it in a data migration, then set it NOT NULL in a later migration")));
            }
            let volatile = [
                "RANDOM",
                "GEN_RANDOM_UUID",
                "UUID_GENERATE_V4",
                "CLOCK_TIMESTAMP",
                "TIMEOFDAY",
                "NEXTVAL",
            ];
            if dialect == Dialect::Postgres
                && default
                && (a..b).any(|k| volatile.iter().any(|v| w(k).starts_with(v)))
            {
                found.push(("table-rewrite", format!("adds {table}.{col} with a volatile DEFAULT: PostgreSQL computes it for every row, rewriting the table under an ACCESS EXCLUSIVE lock{}", size(schema, table)), "add the column without a default (or with a constant one), then fill it in a data migration in batches".into()));
            }
        }
        "ALTER" | "MODIFY" | "CHANGE" => alter_column(cx, part, schema, found),
        "RENAME" => {
            let what = if w(a + 1) == "COLUMN" {
                format!("column {}.{}", table, t.name(a + 2))
            } else {
                format!("table {table}")
            };
            found.push(("rename", format!("renames {what}: every release still running uses the old name"), "expand and contract: add the new name beside the old one (a new column kept in sync, or a view), move readers and writers over, and drop the old name in a later release".into()));
        }
        _ => {}
    }
}

fn alter_column(cx: &Alter<'_>, part: (usize, usize), schema: &mut Schema, found: &mut Found) {
    let (t, table, new, dialect) = (cx.t, cx.table, cx.new, cx.dialect);
    let (a, b) = part;
    let w = |k: usize| t.up.get(k).map(String::as_str).unwrap_or("");
    let mut c = if w(a + 1) == "COLUMN" { a + 2 } else { a + 1 };
    let col = t.name(c);
    // MySQL: CHANGE old new type.
    if w(a) == "CHANGE" {
        c += 1;
    }
    let ty = match w(a) {
        "ALTER" => {
            if w(c + 1) == "SET" && w(c + 2) == "NOT" && w(c + 3) == "NULL" {
                if !new && dialect == Dialect::Postgres {
                    found.push(("set-not-null", format!("sets {table}.{col} NOT NULL: PostgreSQL scans every row under an ACCESS EXCLUSIVE lock{}", size(schema, table)), format!("first ADD CONSTRAINT {col}_not_null CHECK ({col} IS NOT NULL) NOT VALID, then VALIDATE CONSTRAINT in another migration (no lock on writes), then SET NOT NULL (PostgreSQL 12+ uses the valid check and skips the scan)")));
                }
                return;
            }
            let k = (c + 1..b).find(|&k| w(k) == "TYPE");
            match k {
                Some(k) => column_type(t, k + 1, b),
                None => return,
            }
        }
        _ => column_type(t, c + 1, b),
    };
    let key = format!("{}.{}", table.to_lowercase(), col.to_lowercase());
    let before = schema.columns.insert(key, ty.clone());
    if new {
        return;
    }
    if let Some(old) = before.as_deref().filter(|old| narrower(old, &ty)) {
        found.push(("narrowing-type", format!("changes {table}.{col} from {old} to {ty}, which holds less: longer values fail or are cut"), format!("keep {old}; or add a new {ty} column, copy the values that fit, and check the others in a data migration before switching")));
        return;
    }
    let rewrite = if dialect == Dialect::Sqlite {
        ""
    } else {
        ", rewriting the table under an exclusive lock"
    };
    found.push(("type-change", format!("changes the type of {table}.{col}{} to {ty}{rewrite}{}", before.map(|o| format!(" from {o}")).unwrap_or_default(), size(schema, table)), "expand and contract: add a column of the new type, backfill it in batches, switch reads and writes, drop the old column in a later release".into()));
}

/// Whether `new` holds less than `old`: a shorter (VAR)CHAR, a smaller
/// integer, text into a bounded string.
fn narrower(old: &str, new: &str) -> bool {
    let len =
        |s: &str| -> Option<u64> { s.split('(').nth(1)?.split(')').next()?.trim().parse().ok() };
    let base = |s: &str| s.split('(').next().unwrap_or("").trim().to_string();
    let (ob, nb) = (base(old), base(new));
    let strings = [
        "VARCHAR",
        "CHARACTER VARYING",
        "CHAR",
        "CHARACTER",
        "NVARCHAR",
        "VARBINARY",
    ];
    if strings.contains(&nb.as_str()) {
        if ob == "TEXT" || ob == "LONGTEXT" || ob == "MEDIUMTEXT" {
            return true;
        }
        if strings.contains(&ob.as_str()) {
            return matches!((len(old), len(new)), (Some(o), Some(n)) if n < o);
        }
    }
    let ints = [
        "TINYINT",
        "SMALLINT",
        "MEDIUMINT",
        "INT",
        "INTEGER",
        "BIGINT",
    ];
    let rank = |b: &str| {
        ints.iter()
            .position(|x| *x == b)
            .map(|p| if p == 4 { 3 } else { p })
    };
    matches!((rank(&ob), rank(&nb)), (Some(o), Some(n)) if n < o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(sql: &str, d: Dialect) -> Vec<&'static str> {
        let mut s = Schema::default();
        lint_script(Path::new("m.sql"), sql, d, &mut s)
            .into_iter()
            .map(|f| f.rule)
            .collect()
    }

    #[test]
    fn a_file_sent_whole_is_said_not_skipped() {
        // Unbalanced parentheses: the splitter sends the file whole.
        let found = rules(
            "CREATE TABLE t (x int;\nDROP TABLE users;",
            Dialect::Postgres,
        );
        assert_eq!(found, ["not-linted"], "said once, nothing read from it");
    }

    #[test]
    fn each_rule_fires_where_it_should_and_only_there() {
        use Dialect::*;
        assert_eq!(rules("DROP TABLE users;", Sqlite), ["drop-table"]);
        assert_eq!(
            rules("ALTER TABLE users DROP COLUMN legacy;", Postgres),
            ["drop-column"]
        );
        assert_eq!(
            rules("ALTER TABLE users DROP legacy;", MySql),
            ["drop-column"]
        );
        assert!(rules("ALTER TABLE users DROP CONSTRAINT fk;", Postgres).is_empty());
        assert_eq!(
            rules("ALTER TABLE users ADD COLUMN age int NOT NULL;", Postgres),
            ["add-not-null-without-default"]
        );
        assert!(rules(
            "ALTER TABLE users ADD COLUMN age int NOT NULL DEFAULT 0;",
            Postgres
        )
        .is_empty());
        assert!(rules("CREATE TABLE t (id int);\nALTER TABLE t ADD COLUMN age int NOT NULL;\nCREATE INDEX i ON t (age);", Postgres).is_empty(), "a table created here has no rows");
        assert_eq!(
            rules("CREATE INDEX i ON users (email);", Postgres),
            ["create-index-blocking"]
        );
        assert!(rules("CREATE INDEX CONCURRENTLY i ON users (email);", Postgres).is_empty());
        assert!(rules("CREATE INDEX i ON users (email);", Sqlite).is_empty());
        assert_eq!(
            rules(
                "ALTER TABLE users ALTER COLUMN email SET NOT NULL;",
                Postgres
            ),
            ["set-not-null"]
        );
        assert_eq!(
            rules(
                "ALTER TABLE users ADD COLUMN id2 uuid DEFAULT gen_random_uuid();",
                Postgres
            ),
            ["table-rewrite"]
        );
        assert_eq!(
            rules("ALTER TABLE users RENAME COLUMN a TO b;", Postgres),
            ["rename"]
        );
        assert_eq!(
            rules("-- DROP TABLE users;\nSELECT 'DROP TABLE users';", Sqlite),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn narrowing_is_told_from_a_type_change_by_the_earlier_definition() {
        let mut s = Schema::default();
        let f = Path::new("1.sql");
        assert!(lint_script(
            f,
            "CREATE TABLE users (id int, name varchar(200), n bigint);",
            Dialect::Postgres,
            &mut s
        )
        .is_empty());
        let got = lint_script(
            Path::new("2.sql"),
            "ALTER TABLE users ALTER COLUMN name TYPE varchar(50), ALTER COLUMN n TYPE int;",
            Dialect::Postgres,
            &mut s,
        );
        let ids: Vec<_> = got.iter().map(|f| f.rule).collect();
        assert_eq!(ids, ["narrowing-type", "narrowing-type"]);
        assert!(
            got[0].message.contains("from VARCHAR(200) to VARCHAR(50)"),
            "{}",
            got[0].message
        );
        let widen = lint_script(
            Path::new("3.sql"),
            "ALTER TABLE users MODIFY COLUMN name varchar(300);",
            Dialect::MySql,
            &mut s,
        );
        assert_eq!(
            widen.iter().map(|f| f.rule).collect::<Vec<_>>(),
            ["type-change"]
        );
    }

    #[test]
    fn allow_comments_silence_one_statement_and_need_a_reason() {
        let sql = "-- instar:allow drop-column nothing reads it since 2.3\nALTER TABLE u DROP COLUMN a;\nALTER TABLE u DROP COLUMN b;\n-- instar:allow drop-table\nDROP TABLE x;\n";
        let got = lint_script(
            Path::new("m.sql"),
            sql,
            Dialect::Postgres,
            &mut Schema::default(),
        );
        let ids: Vec<_> = got.iter().map(|f| (f.rule, f.line)).collect();
        assert_eq!(
            ids,
            [
                ("allow-without-reason", 4),
                ("drop-column", 3),
                ("drop-table", 5)
            ]
        );
    }

    #[test]
    fn files_lint_cannot_read_are_said() {
        assert_eq!(rules("SELECT 'open", Dialect::Sqlite), ["unterminated"]);
    }
}
