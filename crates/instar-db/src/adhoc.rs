//! SQL of the user's that is not a migration: a test's fixture, its
//! assertions, an audit's queries. Run on a [`Db`] without the history.

use instar_core::split::{split, Split};
use serde_json::Value;

use crate::conn::query;
use crate::{Db, Error};

impl Db {
    /// Runs a script statement by statement (split as migrations are); a
    /// failure is an error naming `origin` (a file) and the statement's line.
    /// Returns how many statements ran.
    pub async fn run_script(&mut self, sql: &str, origin: &str) -> Result<usize, Error> {
        let statements = match split(sql, self.dialect()) {
            Split::Statements(s) => s,
            Split::Whole { .. } => {
                self.execute(sql, &format!("{origin}:1")).await?;
                return Ok(1);
            }
            Split::Unterminated { what, line } => {
                return Err(Error::Query {
                    context: format!("{origin}:{line}"),
                    message: format!("a {what} is never closed"),
                    code: None,
                })
            }
        };
        for s in &statements {
            self.execute(&s.sql, &format!("{origin}:{}", s.line))
                .await?;
        }
        Ok(statements.len())
    }

    /// Runs one statement of the user's; a failure is reported as `context`.
    pub async fn execute(&mut self, sql: &str, context: &str) -> Result<u64, Error> {
        crate::conn::exec(&mut self.conn, sql)
            .await
            .map_err(|e| Error::query(context, e))
    }

    /// Runs a query that must return one true value (a boolean, or a non-zero
    /// number): whether it did, and what it returned as SQL would show it.
    pub async fn check_query(&mut self, sql: &str, context: &str) -> Result<(bool, String), Error> {
        Db::check(&mut self.conn, sql)
            .await
            .map_err(|e| Error::query(context, e))
    }

    /// A query's rows, each column as a JSON value (integers, reals and text
    /// as they are, NULL as null).
    pub async fn rows(&mut self, sql: &str, context: &str) -> Result<Vec<Vec<Value>>, Error> {
        let rows = query(sql)
            .fetch_all(&mut self.conn)
            .await
            .map_err(|e| Error::query(context, e))?;
        rows.iter()
            .map(|r| r.json_values().map_err(|e| Error::query(context, e)))
            .collect()
    }
}
