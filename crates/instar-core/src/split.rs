//! Splitting a migration script into statements, per SQL dialect.
//!
//! Statements are run one by one so that progress can be recorded per statement
//! and an error can name the line it came from. The lexer knows each dialect's
//! quoting (`'…'`, `"…"`, `` `…` ``, `[…]`, PostgreSQL `$tag$…$tag$` and `E'…'`),
//! comments (`--`, `#` on MySQL, nested `/* */` on PostgreSQL), parentheses
//! (PostgreSQL rules hold `;` inside `( … )`), compound bodies (`BEGIN … END` in
//! triggers, procedures, functions and events, with `CASE … END` inside) and the
//! MySQL client's `DELIMITER` directive.
//!
//! Where it cannot be sure (an unterminated quote or comment, unbalanced
//! `BEGIN`/`END`), [`split`] says so and the caller sends the file whole.

use std::borrow::Cow;

use serde::Serialize;

/// The SQL dialect a script is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL and MariaDB.
    MySql,
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
            Dialect::MySql => "mysql",
        })
    }
}

/// One statement of a script: borrowed from the script's text, so that a large
/// file is not copied statement by statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement<'a> {
    /// The statement text, without its terminating delimiter.
    pub sql: Cow<'a, str>,
    /// The 1-based line of the script the statement starts on.
    pub line: usize,
}

impl Statement<'_> {
    /// The statement with its own copy of the text.
    pub fn into_owned(self) -> Statement<'static> {
        Statement {
            sql: Cow::Owned(self.sql.into_owned()),
            line: self.line,
        }
    }
}

/// The result of splitting a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Split<'a> {
    /// The script's statements, in order (possibly none).
    Statements(Vec<Statement<'a>>),
    /// The splitter could not be sure; the script must be sent as one unit.
    Whole {
        /// Why the script could not be split.
        reason: String,
    },
    /// A string, quoted identifier, comment or dollar quote is never closed: the
    /// script cannot be right (and sent as it is, it would swallow what follows).
    Unterminated {
        /// What is open: `string`, `block comment`, `$tag$ quote` …
        what: String,
        /// The 1-based line it starts on.
        line: usize,
    },
}

impl Split<'_> {
    /// The result with its own copy of every statement's text.
    pub fn into_owned(self) -> Split<'static> {
        match self {
            Split::Statements(s) => {
                Split::Statements(s.into_iter().map(Statement::into_owned).collect())
            }
            Split::Whole { reason } => Split::Whole { reason },
            Split::Unterminated { what, line } => Split::Unterminated { what, line },
        }
    }
}

/// What the lexer found open at the end of the script.
struct Open {
    what: String,
    line: usize,
}

/// Splits `sql` into statements according to `dialect`.
pub fn split(sql: &str, dialect: Dialect) -> Split<'_> {
    Lexer::new(sql, dialect).run()
}

struct Lexer<'a> {
    src: &'a str,
    b: &'a [u8],
    i: usize,
    line: usize,
    dialect: Dialect,
    delimiter: String,
    out: Vec<Statement<'a>>,
    // Current statement: byte start and line of its first token.
    start: Option<(usize, usize)>,
    words: Vec<String>,
    depth: i32,
    parens: i32,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str, dialect: Dialect) -> Self {
        Lexer {
            src,
            b: src.as_bytes(),
            i: 0,
            line: 1,
            dialect,
            delimiter: ";".into(),
            out: Vec::new(),
            start: None,
            words: Vec::new(),
            depth: 0,
            parens: 0,
        }
    }

    fn run(mut self) -> Split<'a> {
        while self.i < self.b.len() {
            let before = self.i;
            if let Err(Open { what, line }) = self.step() {
                return Split::Unterminated { what, line };
            }
            if self.i == before {
                // Every step must consume input; one that did not would loop forever.
                // Sending the script whole is always safe.
                return Split::Whole {
                    reason: format!("the splitter could not read past line {}", self.line),
                };
            }
        }
        if self.depth != 0 || self.parens != 0 {
            let what = if self.depth != 0 {
                "BEGIN … END"
            } else {
                "parentheses"
            };
            return Split::Whole {
                reason: format!("unbalanced {what} at end of script"),
            };
        }
        self.finish(self.b.len(), false);
        Split::Statements(self.out)
    }

    fn at(&self, k: usize) -> u8 {
        *self.b.get(self.i + k).unwrap_or(&0)
    }

    fn advance(&mut self, n: usize) {
        for _ in 0..n {
            if self.i < self.b.len() {
                if self.b[self.i] == b'\n' {
                    self.line += 1;
                }
                self.i += 1;
            }
        }
    }

    fn begin_token(&mut self) {
        if self.start.is_none() {
            self.start = Some((self.i, self.line));
        }
    }

    /// Ends the statement begun at `start` at byte `end`. At a delimiter it
    /// keeps the whitespace before it, as the engine's own shell sends it
    /// (SQLite stores a `CREATE` up to the `;`); at the end of the file it
    /// keeps none.
    fn finish(&mut self, end: usize, at_delimiter: bool) {
        if let Some((s, line)) = self.start.take() {
            let text = &self.src[s..end];
            let sql = if at_delimiter {
                text.trim_start()
            } else {
                text.trim()
            };
            if !sql.trim_end().is_empty() {
                self.out.push(Statement {
                    sql: Cow::Borrowed(sql),
                    line,
                });
            }
        }
        self.words.clear();
        self.depth = 0;
        self.parens = 0;
    }

    fn at_line_start(&self) -> bool {
        self.i == 0 || self.b[self.i - 1] == b'\n'
    }

    fn step(&mut self) -> Result<(), Open> {
        let c = self.at(0);
        if self.dialect == Dialect::MySql && self.start.is_none() && self.at_line_start() {
            if let Some(()) = self.delimiter_directive() {
                return Ok(());
            }
        }
        if self.start.is_none() && self.at_line_start() && c == b'-' {
            if let Some(r) = self.goose_block() {
                return r;
            }
        }
        if self.b[self.i..].starts_with(self.delimiter.as_bytes())
            && self.depth <= 0
            && self.parens <= 0
        {
            let end = self.i;
            self.advance(self.delimiter.len());
            self.finish(end, true);
            return Ok(());
        }
        match c {
            b'-' if self.at(1) == b'-'
                && (self.dialect != Dialect::MySql
                    || matches!(self.at(2), b' ' | b'\t' | b'\n' | b'\r' | 0)) =>
            {
                self.skip_line()
            }
            b'#' if self.dialect == Dialect::MySql => self.skip_line(),
            b'/' if self.at(1) == b'*' => {
                let keep =
                    self.start.is_some() || (self.dialect == Dialect::MySql && self.at(2) == b'!');
                if keep {
                    self.begin_token();
                }
                self.block_comment()?
            }
            b'\'' => {
                self.begin_token();
                let backslash = self.dialect == Dialect::MySql || self.e_prefix();
                self.quoted(b'\'', backslash)?
            }
            b'"' => {
                self.begin_token();
                self.quoted(b'"', self.dialect == Dialect::MySql)?
            }
            b'`' if self.dialect != Dialect::Postgres => {
                self.begin_token();
                self.quoted(b'`', false)?
            }
            b'[' if self.dialect == Dialect::Sqlite => {
                self.begin_token();
                self.quoted(b']', false)?
            }
            b'$' if self.dialect == Dialect::Postgres => {
                self.begin_token();
                self.dollar()?
            }
            b'(' => {
                self.begin_token();
                self.parens += 1;
                self.advance(1);
            }
            b')' => {
                self.begin_token();
                self.parens -= 1;
                self.advance(1);
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                self.begin_token();
                self.word();
            }
            c if c.is_ascii_whitespace() => self.advance(1),
            _ => {
                self.begin_token();
                // Advance one whole UTF-8 character.
                let len = self.src[self.i..].chars().next().map_or(1, char::len_utf8);
                self.advance(len);
            }
        }
        Ok(())
    }

    /// Handles a goose `-- +goose StatementBegin` … `-- +goose StatementEnd`
    /// block: the text between is one statement, as written (its last `;`
    /// dropped). `None` when the line does not begin one.
    fn goose_block(&mut self) -> Option<Result<(), Open>> {
        let line_len = |r: &str| r.find('\n').map_or(r.len(), |n| n + 1);
        let first = line_len(&self.src[self.i..]);
        if crate::layouts::goose_statement_mark(&self.src[self.i..self.i + first]) != Some(true) {
            return None;
        }
        let body_start = self.i + first;
        let mut pos = body_start;
        while pos < self.b.len() {
            let len = line_len(&self.src[pos..]);
            if crate::layouts::goose_statement_mark(&self.src[pos..pos + len]) == Some(false) {
                let body = &self.src[body_start..pos];
                let sql = body.trim();
                let sql = sql.strip_suffix(';').unwrap_or(sql).trim_end();
                let lead = &body[..body.len() - body.trim_start().len()];
                if !sql.is_empty() {
                    self.out.push(Statement {
                        sql: Cow::Borrowed(sql),
                        line: self.line + 1 + lead.matches('\n').count(),
                    });
                }
                self.advance(pos + len - self.i);
                return Some(Ok(()));
            }
            pos += len;
        }
        Some(Err(Open {
            what: "-- +goose StatementBegin block (no -- +goose StatementEnd)".into(),
            line: self.line,
        }))
    }

    /// Handles a MySQL client `DELIMITER x` line; `None` when the line is not one.
    fn delimiter_directive(&mut self) -> Option<()> {
        let rest = &self.src[self.i..];
        let line_end = rest.find('\n').unwrap_or(rest.len());
        let line = rest[..line_end].trim();
        let mut parts = line.split_whitespace();
        if !parts.next()?.eq_ignore_ascii_case("delimiter") {
            return None;
        }
        let delim = parts.next()?;
        self.delimiter = delim.to_string();
        self.advance(line_end);
        Some(())
    }

    fn e_prefix(&self) -> bool {
        self.dialect == Dialect::Postgres
            && self.i >= 1
            && matches!(self.b[self.i - 1], b'e' | b'E')
            && (self.i < 2 || !is_ident(self.b[self.i - 2]))
    }

    fn skip_line(&mut self) {
        while self.i < self.b.len() && self.b[self.i] != b'\n' {
            self.i += 1;
        }
    }

    fn block_comment(&mut self) -> Result<(), Open> {
        let line = self.line;
        let nests = self.dialect == Dialect::Postgres;
        let mut level = 0;
        while self.i < self.b.len() {
            if self.at(0) == b'/' && self.at(1) == b'*' {
                if level == 0 || nests {
                    level += 1;
                }
                self.advance(2);
            } else if self.at(0) == b'*' && self.at(1) == b'/' {
                level -= 1;
                self.advance(2);
                if level == 0 {
                    return Ok(());
                }
            } else {
                self.advance(1);
            }
        }
        Err(Open {
            what: "block comment".into(),
            line,
        })
    }

    fn quoted(&mut self, close: u8, backslash: bool) -> Result<(), Open> {
        let line = self.line;
        self.advance(1);
        while self.i < self.b.len() {
            let c = self.at(0);
            if backslash && c == b'\\' {
                self.advance(2);
            } else if c == close {
                if self.at(1) == close && close != b']' {
                    self.advance(2);
                } else {
                    self.advance(1);
                    return Ok(());
                }
            } else {
                self.advance(1);
            }
        }
        Err(Open {
            what: match close {
                b'\'' => "string",
                _ => "quoted identifier",
            }
            .into(),
            line,
        })
    }

    /// A PostgreSQL dollar-quoted string `$tag$ … $tag$`, or a lone `$` / `$1`.
    fn dollar(&mut self) -> Result<(), Open> {
        if self.i > 0 && is_ident(self.b[self.i - 1]) {
            self.advance(1);
            return Ok(());
        }
        let rest = &self.b[self.i + 1..];
        let tag_len = rest.iter().take_while(|&&c| is_ident(c)).count();
        let valid_tag =
            rest.get(tag_len) == Some(&b'$') && rest.first().is_none_or(|c| !c.is_ascii_digit());
        if !valid_tag {
            self.advance(1);
            return Ok(());
        }
        let tag = &self.src[self.i..self.i + tag_len + 2];
        let line = self.line;
        let body_start = self.i + tag.len();
        match self.src[body_start..].find(tag) {
            Some(pos) => {
                let total = tag.len() + pos + tag.len();
                self.advance(total);
                Ok(())
            }
            None => Err(Open {
                what: format!("{tag} quote"),
                line,
            }),
        }
    }

    fn word(&mut self) {
        let s = self.i;
        let custom = self.delimiter != ";";
        while self.i < self.b.len() && (is_ident(self.b[self.i]) || self.b[self.i] == b'$') {
            // `END$$` after `DELIMITER $$`: the delimiter ends the word (but a word
            // always takes its first character, or a delimiter met inside
            // parentheses would never be consumed).
            if custom && self.i > s && self.b[self.i..].starts_with(self.delimiter.as_bytes()) {
                break;
            }
            self.i += 1;
        }
        let w = self.src[s..self.i].to_ascii_uppercase();
        if self.words.len() < 12 {
            self.words.push(w.clone());
        }
        if !self.compound() {
            return;
        }
        match w.as_str() {
            "BEGIN" | "CASE" => self.depth += 1,
            "END" => {
                let next = self.peek_word();
                if matches!(
                    next.as_str(),
                    "IF" | "LOOP" | "WHILE" | "REPEAT" | "CASE" | "FOR"
                ) {
                    // `END IF` etc. close blocks that never opened a level; `END CASE`
                    // closes the level its `CASE` opened. Consume the word either way.
                    if next == "CASE" {
                        self.depth -= 1;
                    }
                    self.skip_ws();
                    while self.i < self.b.len() && is_ident(self.b[self.i]) {
                        self.i += 1;
                    }
                } else {
                    self.depth -= 1;
                }
            }
            _ => {}
        }
    }

    fn skip_ws(&mut self) {
        while self.i < self.b.len() && self.b[self.i].is_ascii_whitespace() {
            self.advance(1);
        }
    }

    fn peek_word(&self) -> String {
        let mut j = self.i;
        while j < self.b.len() && self.b[j].is_ascii_whitespace() {
            j += 1;
        }
        let s = j;
        while j < self.b.len() && is_ident(self.b[j]) {
            j += 1;
        }
        self.src[s..j].to_ascii_uppercase()
    }

    /// Whether the current statement can hold a `BEGIN … END` body.
    fn compound(&self) -> bool {
        let w = &self.words;
        if w.first().map(String::as_str) == Some("BEGIN") {
            // MariaDB's anonymous `BEGIN NOT ATOMIC … END` block.
            return self.dialect == Dialect::MySql && w.get(1).map(String::as_str) == Some("NOT");
        }
        if w.first().map(String::as_str) != Some("CREATE") {
            return false;
        }
        let kinds: &[&str] = match self.dialect {
            Dialect::Sqlite => &["TRIGGER"],
            Dialect::Postgres => &["FUNCTION", "PROCEDURE"],
            Dialect::MySql => &["TRIGGER", "PROCEDURE", "FUNCTION", "EVENT"],
        };
        w.iter()
            .skip(1)
            .take(8)
            .any(|x| kinds.contains(&x.as_str()))
    }
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stmts(sql: &str, d: Dialect) -> Vec<String> {
        match split(sql, d) {
            Split::Statements(s) => s.into_iter().map(|s| s.sql.into_owned()).collect(),
            Split::Whole { reason } => panic!("whole: {reason}"),
            Split::Unterminated { what, line } => panic!("unterminated {what} on line {line}"),
        }
    }

    #[test]
    fn splits_simple_statements_with_lines() {
        let Split::Statements(s) = split(
            "CREATE TABLE a (x int);\n\n-- c;\nINSERT INTO a VALUES (1);",
            Dialect::Sqlite,
        ) else {
            panic!()
        };
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].line, 4);
        assert_eq!(s[1].sql, "INSERT INTO a VALUES (1)");
    }

    #[test]
    fn dollar_quotes_hold_semicolons() {
        let sql = "CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; END; $body$ LANGUAGE plpgsql;\nSELECT $1;";
        assert_eq!(stmts(sql, Dialect::Postgres).len(), 2);
    }

    #[test]
    fn mysql_procedure_body() {
        let sql = "CREATE PROCEDURE p() BEGIN IF 1 THEN SELECT 1; END IF; SELECT CASE WHEN 1 THEN 2 END; END;\nSELECT 2;";
        assert_eq!(stmts(sql, Dialect::MySql).len(), 2);
    }

    #[test]
    fn a_letter_delimiter_inside_parentheses_terminates() {
        for sql in [
            "DELIMITER x\nSELECT (x)",
            "DELIMITER x\nCREATE PROCEDURE p() BEGIN SELECT x; END x\n",
            "DELIMITER $$\nSELECT ($$)",
        ] {
            let _ = split(sql, Dialect::MySql);
        }
    }

    #[test]
    fn unterminated_string_is_whole() {
        assert_eq!(
            split("SELECT 1;\nSELECT 'abc;", Dialect::Postgres),
            Split::Unterminated {
                what: "string".into(),
                line: 2
            }
        );
    }
}
