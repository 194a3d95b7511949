//! A script's statements sent as few calls as possible: every statement of a
//! small script (and the `BEGIN` before them) in one call, a large one in calls
//! of about [`CALL_BYTES`] each, still inside the one transaction. Each call's
//! text is built when it is sent, so a dump-sized file is never copied whole.

use instar_core::split::Statement;

use super::step::pg_position;
use crate::conn::{run_counting, Bind, Conn};

/// About how much SQL one call carries.
const CALL_BYTES: usize = 1 << 20;

/// The separator after a statement: `;` right after its last token, so the
/// engine stores a `CREATE` exactly as written (SQLite keeps the text up to the
/// `;` in `sqlite_master`), as `sqlite3` and `psql` would send it.
const SEP: &str = ";\n";

/// The separator after a statement whose last line ends in a line comment
/// (`-- …`): a `;` on that line would be inside the comment. Batches run on
/// SQLite and PostgreSQL only (MySQL never runs a migration in a transaction
/// of Instar's), where `--` is the one line comment.
const SEP_AFTER_COMMENT: &str = "\n;\n";

/// The separator that ends `sql`: a newline is added only when its last line
/// holds `--` outside a string or quoted name, so a `'--'` default is stored
/// as written.
fn sep(sql: &str) -> &'static str {
    let last = sql.rsplit('\n').next().unwrap_or("");
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for c in last.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '-' && prev == '-' => return SEP_AFTER_COMMENT,
            None => {}
        }
        prev = if quote.is_some() { ' ' } else { c };
    }
    SEP
}

pub(super) struct Batch<'a> {
    /// A statement sent before the script's in the first call (`BEGIN`).
    start: Option<&'a str>,
    stmts: &'a [Statement<'a>],
    /// The statements of call `k` are `bounds[k]..bounds[k + 1]`.
    bounds: Vec<usize>,
}

/// Where a call failed: the script statement (index) and the error's
/// character offset inside it when the engine gave one. `None` when the failure
/// was after the script (its history row or COMMIT).
pub(super) type Located = Option<(usize, Option<usize>)>;

impl<'a> Batch<'a> {
    pub(super) fn new(start: Option<&'a str>, stmts: &'a [Statement<'a>]) -> Batch<'a> {
        let mut bounds = vec![0];
        let mut size = 0;
        for (i, s) in stmts.iter().enumerate() {
            if size > 0 && size + s.sql.len() > CALL_BYTES {
                bounds.push(i);
                size = 0;
            }
            size += s.sql.len() + sep(&s.sql).len();
        }
        bounds.push(stmts.len());
        Batch {
            start,
            stmts,
            bounds,
        }
    }

    /// Runs every call, `tail` (SQL and its binds) appended to the last one.
    /// Returns the rows changed, or where it failed and the driver's error.
    pub(super) async fn run(
        &self,
        conn: &mut Conn,
        tail: Option<(&str, &[Bind])>,
    ) -> Result<u64, (Located, sqlx::Error)> {
        let calls = self.bounds.len() - 1;
        let mut rows = 0;
        for k in 0..calls {
            let (mut text, starts) = self.text(k, tail.map_or(0, |(t, _)| t.len()));
            let mut binds: &[Bind] = &[];
            if let Some((t, b)) = tail.filter(|_| k + 1 == calls) {
                if !text.is_empty() {
                    let last = self.stmts[..self.bounds[k + 1]].last();
                    text.push_str(last.map_or(SEP, |s| sep(&s.sql)));
                }
                text.push_str(t);
                binds = b;
            }
            match run_counting(conn, text, binds).await {
                Ok(n) => rows += n,
                Err((completed, e)) => return Err((self.locate(k, &starts, completed, &e), e)),
            }
        }
        Ok(rows)
    }

    /// Call `k`'s text (with room for `extra` more bytes), and the character
    /// offset of each of its script statements in it.
    fn text(&self, k: usize, extra: usize) -> (String, Vec<usize>) {
        let stmts = &self.stmts[self.bounds[k]..self.bounds[k + 1]];
        let size: usize = stmts.iter().map(|s| s.sql.len() + sep(&s.sql).len()).sum();
        let mut text = String::with_capacity(size + extra + 64);
        let mut chars = 0;
        if let Some(b) = self.start.filter(|_| k == 0) {
            text.push_str(b);
            text.push_str(SEP);
            chars += b.chars().count() + SEP.len();
        }
        let mut starts = Vec::with_capacity(stmts.len());
        let mut after: Option<&str> = None;
        for s in stmts {
            if let Some(sep) = after {
                text.push_str(sep);
                chars += sep.len();
            }
            starts.push(chars);
            text.push_str(&s.sql);
            chars += s.sql.chars().count();
            after = Some(sep(&s.sql));
        }
        (text, starts)
    }

    /// The failing script statement, from what the execution itself reported:
    /// PostgreSQL's position in the text sent when it gives one (a syntax error
    /// stops the whole call before anything in it runs), otherwise the number
    /// of statements of call `k` that completed before the error.
    fn locate(&self, k: usize, starts: &[usize], completed: usize, e: &sqlx::Error) -> Located {
        let first = self.bounds[k];
        if let Some(pos) = pg_position(e) {
            let at = pos.saturating_sub(1);
            let i = starts.iter().rposition(|&s| s <= at)?;
            return Some((first + i, Some(at - starts[i])));
        }
        let prefix = usize::from(k == 0 && self.start.is_some());
        let i = completed.checked_sub(prefix)?;
        (i < starts.len()).then_some((first + i, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stmts(n: usize, len: usize) -> Vec<Statement<'static>> {
        (0..n)
            .map(|i| Statement {
                sql: "x".repeat(len).into(),
                line: i + 1,
            })
            .collect()
    }

    #[test]
    fn a_small_script_is_one_call_and_a_large_one_is_cut_at_statements() {
        let small = stmts(3, 10);
        let b = Batch::new(Some("BEGIN"), &small);
        assert_eq!(b.bounds, vec![0, 3]);
        let (text, starts) = b.text(0, 0);
        assert_eq!(
            text,
            format!("BEGIN{SEP}{x}{SEP}{x}{SEP}{x}", x = "x".repeat(10))
        );
        assert_eq!(starts, vec![7, 19, 31]);

        let large = stmts(5, CALL_BYTES / 2);
        let b = Batch::new(Some("BEGIN"), &large);
        assert_eq!(b.bounds, vec![0, 1, 2, 3, 4, 5], "{:?}", b.bounds);
        let (text, starts) = b.text(1, 0);
        assert_eq!((text.len(), starts), (CALL_BYTES / 2, vec![0]));
        // Statement 0 of call 3 is the script's statement 3; BEGIN was in call 0 only.
        let e = sqlx::Error::Protocol("x".into());
        assert_eq!(b.locate(3, &[0], 0, &e), Some((3, None)));
        assert_eq!(b.locate(0, &[7], 0, &e), None);
        assert_eq!(b.locate(0, &[7], 1, &e), Some((0, None)));
    }

    #[test]
    fn a_statement_ends_at_its_last_token_unless_a_line_comment_ends_it() {
        let s = [
            Statement {
                sql: "CREATE INDEX i ON t (x)".into(),
                line: 1,
            },
            Statement {
                sql: "SELECT 1 -- one".into(),
                line: 2,
            },
            Statement {
                sql: "SELECT 2".into(),
                line: 3,
            },
        ];
        let (text, starts) = Batch::new(None, &s).text(0, 0);
        assert_eq!(
            text,
            "CREATE INDEX i ON t (x);\nSELECT 1 -- one\n;\nSELECT 2"
        );
        assert_eq!(starts, vec![0, 25, 43]);
    }

    #[test]
    fn no_statements_is_one_call_of_the_start_alone() {
        let b = Batch::new(Some("BEGIN"), &[]);
        assert_eq!(b.bounds, vec![0, 0]);
        assert_eq!(b.text(0, 0).0, format!("BEGIN{SEP}"));
    }
}
