//! The record of the online migration in flight (`instar_online`: its phase
//! and expansion), and running an expansion's statements.

use super::expand::{Expansion, Probe};
use super::served::InFlight;
use super::{Compiled, COMPILED};
use crate::conn::{exec, query};
use crate::db::control;
use crate::{Db, Error};

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
        let text = |i: usize| {
            v.get(i)
                .and_then(|x| x.as_str())
                .unwrap_or_default()
                .to_string()
        };
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

    /// Runs `stmts` (then `after`), in one transaction where the engine can.
    pub(crate) async fn run_all(&mut self, stmts: &[String], what: &str) -> Result<(), Error> {
        self.run_each(stmts, what, true).await
    }

    /// Runs `stmts`, in one transaction when `one_tx` and the engine can.
    pub(crate) async fn run_each(
        &mut self,
        stmts: &[String],
        what: &str,
        one_tx: bool,
    ) -> Result<(), Error> {
        let tx = one_tx && self.engine.transactional_ddl();
        if tx {
            control(&mut self.conn, self.engine.begin()).await?;
        }
        for s in stmts {
            if let Err(e) = exec(&mut self.conn, s).await {
                if tx {
                    let _ = exec(&mut self.conn, "ROLLBACK").await;
                }
                return Err(Error::Unsupported(format!(
                    "{what} failed at `{}`: {}{}",
                    crate::runner::short_statement(s),
                    crate::error::db_message(&e),
                    if tx {
                        " (rolled back: nothing of this step stayed)"
                    } else {
                        " (what ran before it stays; run the command again to go on)"
                    }
                )));
            }
        }
        if tx {
            control(&mut self.conn, "COMMIT").await?;
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
