//! Dumps of a test database, to prove a failed command wrote nothing.

use std::path::Path;

use crate::harness::{Backend, TestDb};

/// What the database holds, or `None` when its file does not exist: every
/// object's SQL and every row of every table, as text (a dump). The `fail`
/// rows a failed run appends to the history are Instar's record of the
/// failure and are left out; a file SQLite cannot read is compared byte for byte.
pub(super) fn snapshot(dir: &Path) -> Option<Vec<String>> {
    let path = dir.join("instar.db");
    let bytes = std::fs::read(&path).ok()?;
    let dump = || -> rusqlite::Result<Vec<String>> {
        let c = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        let mut out = Vec::new();
        let mut objects = c.prepare("SELECT type, name, sql FROM sqlite_master ORDER BY name")?;
        let rows: Vec<(String, String, Option<String>)> = objects
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        for (kind, name, sql) in rows {
            out.push(format!("{kind} {name}: {}", sql.unwrap_or_default()));
            if kind != "table" {
                continue;
            }
            let ours = c
                .prepare(&format!(
                    "SELECT 1 FROM pragma_table_info('{name}') WHERE name = 'event'"
                ))?
                .exists([])?;
            let filter = if name == "instar_history" && ours {
                " WHERE event <> 'fail'"
            } else {
                ""
            };
            let mut q = c.prepare(&format!("SELECT * FROM \"{name}\"{filter} ORDER BY rowid"))?;
            let width = q.column_count();
            let mut rs = q.query([])?;
            while let Some(r) = rs.next()? {
                let cells: Vec<String> = (0..width)
                    .map(|i| format!("{:?}", r.get_ref(i).map(rusqlite::types::Value::from)))
                    .collect();
                out.push(format!("{name}: {}", cells.join(" | ")));
            }
        }
        Ok(out)
    };
    Some(dump().unwrap_or_else(|_| vec![format!("{bytes:?}")]))
}

/// What a server database holds: every table's columns and rows and every
/// index, as text (a dump), the history's `fail` rows left out as above.
pub(super) async fn server_snapshot(t: &TestDb) -> Vec<String> {
    let mut c = t.raw().await;
    let pg = t.backend == Backend::Postgres;
    let (columns, indexes) = if pg {
        (
            "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns WHERE table_schema = current_schema() ORDER BY 1, ordinal_position",
            "SELECT indexdef::text FROM pg_indexes WHERE schemaname = current_schema() ORDER BY 1",
        )
    } else {
        (
            "SELECT CONVERT(table_name USING utf8mb4), CONVERT(column_name USING utf8mb4), CONVERT(column_type USING utf8mb4) FROM information_schema.columns WHERE table_schema = DATABASE() ORDER BY 1, ordinal_position",
            "SELECT CONVERT(CONCAT_WS(' ', table_name, index_name, seq_in_index, column_name) USING utf8mb4) FROM information_schema.statistics WHERE table_schema = DATABASE() ORDER BY 1",
        )
    };
    let mut out = Vec::new();
    let mut tables: Vec<(String, Vec<String>)> = Vec::new();
    for r in sqlx::query(columns).fetch_all(&mut c).await.expect(columns) {
        let (table, column, kind) = (text(&r, 0), text(&r, 1), text(&r, 2));
        out.push(format!("column {table}.{column} {kind}"));
        match tables.last_mut() {
            Some((name, cols)) if *name == table => cols.push(column),
            _ => tables.push((table, vec![column])),
        }
    }
    for r in sqlx::query(indexes).fetch_all(&mut c).await.expect(indexes) {
        out.push(format!("index {}", text(&r, 0)));
    }
    for (table, cols) in tables {
        let q = if pg { '"' } else { '`' };
        let cells: Vec<String> = cols
            .iter()
            .map(|col| {
                if pg {
                    format!("COALESCE(CAST({q}{col}{q} AS TEXT), 'NULL')")
                } else {
                    format!("COALESCE(CONVERT({q}{col}{q} USING utf8mb4), 'NULL')")
                }
            })
            .collect();
        let row = if pg {
            format!("concat_ws(' | ', {})", cells.join(", "))
        } else {
            format!(
                "CONVERT(CONCAT_WS(' | ', {}) USING utf8mb4)",
                cells.join(", ")
            )
        };
        let filter = if table == "instar_history" && cols.iter().any(|c| c == "event") {
            " WHERE event <> 'fail'"
        } else {
            ""
        };
        let sql = format!("SELECT {row} FROM {q}{table}{q}{filter} ORDER BY 1");
        for r in sqlx::query(&sql).fetch_all(&mut c).await.expect(&sql) {
            out.push(format!("{table}: {}", text(&r, 0)));
        }
    }
    let _ = sqlx::Connection::close(c).await;
    out
}

/// Column `i` as text: MySQL's long text comes to the Any driver as a BLOB.
fn text(r: &sqlx::any::AnyRow, i: usize) -> String {
    use sqlx::Row;
    r.try_get::<String, _>(i)
        .or_else(|_| {
            r.try_get::<Vec<u8>, _>(i)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        })
        .expect("a text column")
}
