//! Spanner's REST API: sessions, queries, read-write transactions (retried
//! when Spanner aborts them), and database DDL as long-running operations.

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::url::SpannerUrl;
use crate::Error;

/// A connection to one database.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    url: SpannerUrl,
    token: Option<String>,
}

/// A query parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// `INT64`.
    Int(i64),
    /// `STRING`.
    Str(String),
    /// A NULL of the given Spanner type code (`STRING`, `INT64` …).
    Null(&'static str),
}

impl Param {
    fn value(&self) -> Value {
        match self {
            Param::Int(i) => Value::String(i.to_string()),
            Param::Str(s) => Value::String(s.clone()),
            Param::Null(_) => Value::Null,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Param::Int(_) => "INT64",
            Param::Str(_) => "STRING",
            Param::Null(t) => t,
        }
    }

    /// A nullable string.
    pub fn opt_str(s: Option<&str>) -> Param {
        s.map_or(Param::Null("STRING"), |s| Param::Str(s.into()))
    }

    /// A nullable integer.
    pub fn opt_int(i: Option<i64>) -> Param {
        i.map_or(Param::Null("INT64"), Param::Int)
    }
}

/// A long-running DDL operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// `projects/…/databases/D/operations/ID`.
    pub name: String,
    /// Whether it has finished.
    pub done: bool,
    /// How many of its statements have taken effect (Spanner's commit timestamps).
    pub statements_done: usize,
    /// How it failed, if it did.
    pub error: Option<String>,
}

impl Operation {
    fn from_json(v: &Value) -> Operation {
        Operation {
            name: v["name"].as_str().unwrap_or_default().to_string(),
            done: v["done"].as_bool().unwrap_or(false),
            statements_done: v["metadata"]["commitTimestamps"]
                .as_array()
                .map_or(0, Vec::len),
            error: v.get("error").map(|e| {
                format!(
                    "{} ({})",
                    e["message"].as_str().unwrap_or("unknown error"),
                    crate::code_name(e["code"].as_i64().unwrap_or(2) as i32)
                )
            }),
        }
    }
}

fn params_json(params: &[(&str, Param)]) -> (Value, Value) {
    let mut values = Map::new();
    let mut types = Map::new();
    for (name, p) in params {
        values.insert((*name).into(), p.value());
        types.insert((*name).into(), json!({ "code": p.code() }));
    }
    (Value::Object(values), Value::Object(types))
}

impl Client {
    /// A client for `url` (nothing is sent yet).
    pub fn new(url: &SpannerUrl) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout_read(Duration::from_secs(120))
            .build();
        let token = if url.tls {
            std::env::var("INSTAR_SPANNER_TOKEN").ok()
        } else {
            None
        };
        Client {
            agent,
            url: url.clone(),
            token,
        }
    }

    /// The database's URL.
    pub fn url(&self) -> &SpannerUrl {
        &self.url
    }

    /// Sends one request; `path` is relative to `/v1/`.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Error> {
        let mut req = self
            .agent
            .request(method, &format!("{}/{path}", self.url.base));
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let res = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        match res {
            Ok(r) => {
                let text = r.into_string().map_err(|e| self.transport(e.to_string()))?;
                if text.trim().is_empty() {
                    return Ok(Value::Null);
                }
                serde_json::from_str(&text).map_err(|e| Error::Api {
                    code: 13,
                    message: format!("an answer that is not JSON ({e}): {text}"),
                })
            }
            Err(ureq::Error::Status(status, r)) => {
                let text = r.into_string().unwrap_or_default();
                Err(api_error(status, &text))
            }
            Err(ureq::Error::Transport(t)) => Err(self.transport(t.to_string())),
        }
    }

    fn transport(&self, why: String) -> Error {
        Error::Connect {
            endpoint: self.url.endpoint.clone(),
            why,
        }
    }

    /// A new session on the database.
    pub fn session(&self) -> Result<Session, Error> {
        let v = match self.call(
            "POST",
            &format!("{}/sessions", self.url.database),
            Some(json!({})),
        ) {
            // The emulator answers INTERNAL ("failed to marshal error
            // message") where Spanner says NOT_FOUND: ask for the database.
            Err(e @ Error::Api { .. }) if self.call("GET", &self.url.database, None).is_err() => {
                return Err(Error::Url(format!(
                    "the Spanner database {} does not exist ({e}): create it first (gcloud spanner databases create {} --instance {})",
                    self.url.database,
                    self.url.database_id(),
                    self.url.instance().rsplit('/').next().unwrap_or("")
                )))
            }
            other => other?,
        };
        let name = v["name"]
            .as_str()
            .ok_or_else(|| Error::Api {
                code: 13,
                message: format!("no session name in {v}"),
            })?
            .to_string();
        Ok(Session {
            client: self.clone(),
            name,
        })
    }

    /// Submits DDL statements as one operation with the id given (so that a
    /// repeated submission is refused and the operation can be found again).
    pub fn update_ddl(
        &self,
        statements: &[String],
        operation_id: &str,
    ) -> Result<Operation, Error> {
        let v = self.call(
            "PATCH",
            &format!("{}/ddl", self.url.database),
            Some(json!({ "statements": statements, "operationId": operation_id })),
        )?;
        Ok(Operation::from_json(&v))
    }

    /// The operation of that name, if Spanner knows it.
    pub fn operation(&self, name: &str) -> Result<Option<Operation>, Error> {
        match self.call("GET", name, None) {
            Ok(v) => Ok(Some(Operation::from_json(&v))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Polls an operation until it is done (schema changes on a large table
    /// take minutes to hours: there is no limit), calling `tick` between polls.
    pub fn wait(
        &self,
        op: Operation,
        mut tick: impl FnMut(&Operation),
    ) -> Result<Operation, Error> {
        let mut op = op;
        let mut delay = Duration::from_millis(50);
        while !op.done {
            tick(&op);
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(5));
            op = self.operation(&op.name)?.ok_or_else(|| Error::Api {
                code: 5,
                message: format!("operation {} disappeared while it ran", op.name),
            })?;
        }
        Ok(op)
    }

    /// The database's schema as DDL statements.
    pub fn ddl(&self) -> Result<Vec<String>, Error> {
        let v = self.call("GET", &format!("{}/ddl", self.url.database), None)?;
        Ok(v["statements"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }
}

fn api_error(status: u16, text: &str) -> Error {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    // The emulator: {"code": 9, "message": …}; Google: {"error": {"code": 409, "status": "ABORTED", "message": …}}.
    let (code, message) = if let Some(e) = v.get("error") {
        let code = e["status"].as_str().map_or(2, crate::code_of);
        (code, e["message"].as_str().unwrap_or(text).to_string())
    } else if let Some(c) = v["code"].as_i64() {
        (c as i32, v["message"].as_str().unwrap_or(text).to_string())
    } else {
        let code = match status {
            404 => 5,
            409 => 10,
            401 => 16,
            403 => 7,
            503 => 14,
            _ => 2,
        };
        (code, format!("HTTP {status}: {text}"))
    };
    Error::Api { code, message }
}

/// A session: where queries and transactions run.
pub struct Session {
    client: Client,
    name: String,
}

impl Session {
    /// The client it belongs to.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn post(&self, verb: &str, body: Value) -> Result<Value, Error> {
        self.client
            .call("POST", &format!("{}:{verb}", self.name), Some(body))
    }

    /// Refuses a database of the PostgreSQL dialect: Instar's own tables and
    /// statements on Spanner are GoogleSQL.
    pub fn check_dialect(&self) -> Result<(), Error> {
        let rows = self.query(
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = 'pg_catalog'",
            &[],
        )?;
        if rows.first().and_then(|r| r.first()).and_then(Value::as_str) != Some("0") {
            return Err(Error::Url(format!(
                "{} is a PostgreSQL-dialect Spanner database: Instar runs GoogleSQL-dialect databases only (its history, lease and checkpoint tables and its statements are GoogleSQL)",
                self.client.url.database
            )));
        }
        Ok(())
    }

    /// Rows of a read-only query at a strong timestamp (values as Spanner's
    /// JSON: INT64 and TIMESTAMP as strings).
    pub fn query(&self, sql: &str, params: &[(&str, Param)]) -> Result<Vec<Vec<Value>>, Error> {
        let (values, types) = params_json(params);
        let v = self.post(
            "executeSql",
            json!({ "sql": sql, "params": values, "paramTypes": types }),
        )?;
        Ok(rows(&v))
    }

    /// Runs `f` in a read-write transaction and commits it; an aborted
    /// transaction (a conflict: the emulator aborts every transaction that
    /// overlaps another) is run again with backoff, for at most a minute.
    pub fn rw<T>(&self, mut f: impl FnMut(&mut Txn) -> Result<T, Error>) -> Result<T, Error> {
        let mut delay = Duration::from_millis(10);
        let started = std::time::Instant::now();
        loop {
            let mut txn = Txn {
                session: self,
                id: None,
                seqno: 0,
            };
            let result = f(&mut txn).and_then(|t| txn.commit().map(|()| t));
            match result {
                Err(e) if e.is_aborted() && started.elapsed() < Duration::from_secs(60) => {
                    txn.rollback();
                    // Jittered, so that two runners aborting each other part.
                    let jitter =
                        u64::from(std::process::id() ^ started.elapsed().subsec_nanos()) % 20;
                    std::thread::sleep(delay + Duration::from_millis(jitter));
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                Err(e) => {
                    txn.rollback();
                    return Err(e);
                }
                Ok(t) => return Ok(t),
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.client.call("DELETE", &self.name, None);
    }
}

fn rows(v: &Value) -> Vec<Vec<Value>> {
    v["rows"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|row| row.as_array().cloned().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

/// A read-write transaction (begun with its first statement).
pub struct Txn<'s> {
    session: &'s Session,
    id: Option<String>,
    seqno: u64,
}

impl Txn<'_> {
    fn selector(&self) -> Value {
        match &self.id {
            Some(id) => json!({ "id": id }),
            None => json!({ "begin": { "readWrite": {} } }),
        }
    }

    fn remember(&mut self, v: &Value) {
        if self.id.is_none() {
            self.id = v["metadata"]["transaction"]["id"]
                .as_str()
                .map(String::from);
        }
    }

    /// Runs one statement (a query or DML) in the transaction: its rows and,
    /// for DML, the rows it changed.
    pub fn execute(
        &mut self,
        sql: &str,
        params: &[(&str, Param)],
    ) -> Result<(Vec<Vec<Value>>, i64), Error> {
        self.seqno += 1;
        let (values, types) = params_json(params);
        let v = self.session.post(
            "executeSql",
            json!({ "sql": sql, "params": values, "paramTypes": types,
                    "transaction": self.selector(), "seqno": self.seqno.to_string() }),
        )?;
        self.remember(&v);
        let count = v["stats"]["rowCountExact"]
            .as_str()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Ok((rows(&v), count))
    }

    /// Runs DML statements in order (Spanner's batch DML): the rows each
    /// changed, or the first failure with the index of the statement.
    pub fn batch(&mut self, statements: &[String]) -> Result<Vec<i64>, (usize, Error)> {
        if self.id.is_none() {
            // Batch DML needs a transaction id: begin it with a no-op query.
            self.execute("SELECT 1", &[]).map_err(|e| (0, e))?;
        }
        self.seqno += 1;
        let body = json!({
            "transaction": self.selector(),
            "statements": statements.iter().map(|s| json!({ "sql": s })).collect::<Vec<_>>(),
            "seqno": self.seqno.to_string(),
        });
        let v = self
            .session
            .post("executeBatchDml", body)
            .map_err(|e| (0, e))?;
        let counts: Vec<i64> = v["resultSets"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| {
                        r["stats"]["rowCountExact"]
                            .as_str()
                            .and_then(|c| c.parse().ok())
                            .unwrap_or(0)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let status = &v["status"];
        let code = status["code"].as_i64().unwrap_or(0) as i32;
        if code != 0 {
            let message = status["message"].as_str().unwrap_or("failed").to_string();
            return Err((counts.len(), Error::Api { code, message }));
        }
        Ok(counts)
    }

    fn commit(&mut self) -> Result<(), Error> {
        let Some(id) = self.id.take() else {
            return Ok(());
        };
        self.session
            .post("commit", json!({ "transactionId": id }))
            .map(|_| ())
    }

    fn rollback(&mut self) {
        if let Some(id) = self.id.take() {
            let _ = self
                .session
                .post("rollback", json!({ "transactionId": id }));
        }
    }
}
