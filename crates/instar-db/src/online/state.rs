//! The record of the online migration in flight (`instar_online`: its phase
//! and expansion), and running an expansion's statements.

use super::expand::{Expansion, Probe};
use super::served::InFlight;
use super::{Compiled, COMPILED};
use crate::conn::{exec, query};
use crate::ddl_lock::ShortLocks;
use crate::{Db, Error};
use instar_core::event::EventSink;

impl Db {
    pub(crate) async fn ensure_compiled_table(&mut self) -> Result<String, Error> {
        self.compiled_table().await
    }

    /// The online migration being served at two versions, if any.
    pub async fn in_flight(&mut self) -> Result<Option<InFlight>, Error> {
        Ok(self.in_flight_full().await?.map(|(f, _)| f))
    }

    pub(crate) async fn in_flight_full(&mut self) -> Result<Option<(InFlight, Expansion)>, Error> {
        if !self.table_exists(COMPILED).await? {
            return Ok(None);
        }
        let t = self.sibling_table(COMPILED);
        let sql = format!(
            "SELECT version, phase, expansion, started_at FROM {t} WHERE phase IS NOT NULL"
        );
        let row = query(&sql)
            .fetch_optional(&mut self.conn)
            .await
            .map_err(|e| Error::query("reading the online migration in flight", e))?;
        let Some(r) = row else {
            return Ok(None);
        };
        let v = crate::db::row_values(&r)?;
        let text = |i: usize| crate::db::text_of(&v, i);
        let x: Expansion = serde_json::from_str(&text(2)).map_err(|e| {
            Error::Unsupported(format!(
                "the expansion kept in {COMPILED} cannot be read ({e}); was it edited by hand?"
            ))
        })?;
        Ok(Some((
            InFlight {
                version: text(0),
                phase: text(1),
                old_version: x.old_version.clone(),
                old_schema: x.old_schema.clone(),
                new_schema: x.new_schema.clone(),
                started_at: text(3),
                connect_new: x.connect_new.clone(),
            },
            x,
        )))
    }

    pub(crate) async fn keep_expansion(
        &mut self,
        version: &str,
        x: &Expansion,
    ) -> Result<(), Error> {
        let t = self.sibling_table(COMPILED);
        let p = |n| self.engine.placeholder(n);
        let sql = format!(
            "UPDATE {t} SET phase = 'expanding', expansion = {}, started_at = {} WHERE version = {}",
            p(1),
            p(2),
            p(3)
        );
        let json = serde_json::to_string(x).expect("an expansion serialises");
        query(&sql)
            .bind(json.as_str())
            .bind(instar_core::time::now_rfc3339().as_str())
            .bind(version)
            .execute(&mut self.conn)
            .await
            .map_err(|e| Error::query("keeping the expansion", e))?;
        Ok(())
    }

    /// Runs `stmts` in one transaction where the engine can, each lock wait
    /// short: a statement that times out waiting for a lock is tried again
    /// (the whole transaction where there is one, else from that statement).
    pub(crate) async fn run_all(
        &mut self,
        stmts: &[String],
        what: &str,
        sink: &mut dyn EventSink,
    ) -> Result<(), Error> {
        let locks = ShortLocks::of(self);
        locks.set(self.engine, &mut self.conn).await?;
        let r = self.run_retrying(stmts, what, locks, sink).await;
        let reset = ShortLocks::reset(self.engine, &mut self.conn).await;
        r.and(reset)
    }

    async fn run_retrying(
        &mut self,
        stmts: &[String],
        what: &str,
        locks: ShortLocks,
        sink: &mut dyn EventSink,
    ) -> Result<(), Error> {
        let tx = self.engine.transactional_ddl();
        let mut from = 0;
        let mut attempt = 0;
        loop {
            let Err((i, e)) = self.run_from(&stmts[from..], tx).await else {
                return Ok(());
            };
            let at = from + i;
            let why = if ShortLocks::is_wait(self.engine, &e) {
                attempt += 1;
                if !tx {
                    // What ran before it took effect (and is idempotent here).
                    from = at;
                }
                match locks
                    .after_wait(self.engine, &mut self.conn, what, attempt, sink)
                    .await
                {
                    Ok(()) => continue,
                    Err(why) => why,
                }
            } else {
                crate::error::db_message(&e)
            };
            return Err(step_failed(what, &stmts[at], &why, tx));
        }
    }

    /// Runs `stmts` in a transaction when `tx`; the failing statement's index
    /// and error (the transaction rolled back).
    async fn run_from(&mut self, stmts: &[String], tx: bool) -> Result<(), (usize, sqlx::Error)> {
        if tx {
            exec(&mut self.conn, self.engine.begin())
                .await
                .map_err(|e| (0, e))?;
        }
        for (i, s) in stmts.iter().enumerate() {
            if let Err(e) = exec(&mut self.conn, s).await {
                if tx {
                    let _ = exec(&mut self.conn, "ROLLBACK").await;
                }
                return Err((i, e));
            }
        }
        if tx {
            exec(&mut self.conn, "COMMIT")
                .await
                .map_err(|e| (stmts.len().saturating_sub(1), e))?;
        }
        Ok(())
    }

    /// Runs `stmts` one by one outside a transaction, waiting for locks as
    /// long as the engine does: for statements whose lock blocks no reader or
    /// writer (`CREATE INDEX CONCURRENTLY`).
    pub(crate) async fn run_patient(&mut self, stmts: &[String], what: &str) -> Result<(), Error> {
        for s in stmts {
            if let Err(e) = exec(&mut self.conn, s).await {
                return Err(step_failed(what, s, &crate::error::db_message(&e), false));
            }
        }
        Ok(())
    }

    /// Rows a probe finds, as text.
    pub(crate) async fn probe(&mut self, p: &Probe) -> Result<Vec<Vec<String>>, Error> {
        let rows = query(&p.sql)
            .fetch_all(&mut self.conn)
            .await
            .map_err(|e| Error::query(format!("checking {}", p.what), e))?;
        rows.iter()
            .map(|r| {
                let v = crate::db::row_values(r)?;
                Ok(v.iter()
                    .map(|x| match x {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Null => "NULL".into(),
                        other => other.to_string(),
                    })
                    .collect())
            })
            .collect()
    }
}

impl Db {
    pub(crate) async fn compiled_table(&mut self) -> Result<String, Error> {
        let t = self.sibling_table(COMPILED);
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {t} (version VARCHAR(255) NOT NULL PRIMARY KEY, up_sql {long} NOT NULL, down_sql {long}, phase VARCHAR(32), expansion {long}, started_at VARCHAR(64))",
            long = self.engine.column_type(crate::engine::Col::Long)
        );
        crate::db::run_sql(
            &mut self.conn,
            &sql,
            "creating the table of compiled online migrations",
        )
        .await?;
        Ok(t)
    }

    /// The kept compile of migration `version`: (up, down).
    pub(crate) async fn kept_compile(
        &mut self,
        version: &str,
    ) -> Result<Option<(String, Option<String>)>, Error> {
        if !self.table_exists(COMPILED).await? {
            return Ok(None);
        }
        let t = self.sibling_table(COMPILED);
        let sql = format!(
            "SELECT up_sql, down_sql FROM {t} WHERE version = {}",
            self.engine.placeholder(1)
        );
        let row = query(&sql)
            .bind(version)
            .fetch_optional(&mut self.conn)
            .await
            .map_err(|e| Error::query("reading a compiled online migration", e))?;
        row.map(|r| {
            let v = r.json_values()?;
            let text = |i: usize| v.get(i).and_then(|x| x.as_str()).map(str::to_string);
            Ok((text(0).unwrap_or_default(), text(1)))
        })
        .transpose()
        .map_err(|e: sqlx::Error| Error::query("reading a compiled online migration", e))
    }

    pub(crate) async fn keep_compile(&mut self, version: &str, c: &Compiled) -> Result<(), Error> {
        let t = self.compiled_table().await?;
        let p = |n| self.engine.placeholder(n);
        let delete = format!("DELETE FROM {t} WHERE version = {}", p(1));
        let insert = format!(
            "INSERT INTO {t} (version, up_sql, down_sql) VALUES ({}, {}, {})",
            p(1),
            p(2),
            p(3)
        );
        let context = "keeping a compiled online migration";
        query(&delete)
            .bind(version)
            .execute(&mut self.conn)
            .await
            .map_err(|e| Error::query(context, e))?;
        query(&insert)
            .bind(version)
            .bind(c.up.as_str())
            .bind(c.down.clone())
            .execute(&mut self.conn)
            .await
            .map_err(|e| Error::query(context, e))?;
        Ok(())
    }
}

/// The error of a step of `start`, `complete` or `rollback`.
fn step_failed(what: &str, stmt: &str, why: &str, tx: bool) -> Error {
    Error::Unsupported(format!(
        "{what} failed at `{}`: {why}{}",
        crate::runner::short_statement(stmt),
        if tx {
            " (rolled back: nothing of this step stayed)"
        } else {
            " (what ran before it stays; run the command again to go on)"
        }
    ))
}
