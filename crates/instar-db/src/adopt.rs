//! Adopting a database another tool has been migrating: its history table is
//! read (never written), matched to the files, and recorded in Instar's
//! history as one `baseline` row per migration, naming the tool.

use std::time::Duration;

use instar_core::foreign::{self, Entry, Foreign, Reconciled, Recorded, Says, Tool};
use instar_core::history::{derive, Direction, EventKind, ADOPTED};
use instar_core::Source;
use serde::Serialize;

use crate::conn::{query, Row};
use crate::db::control;
use crate::runner::step::new_row;
use crate::{Db, Error};

/// What `adopt` is told.
#[derive(Debug, Clone, Default)]
pub struct AdoptOptions {
    /// The tool whose history to adopt, when the database has several.
    pub from: Option<Tool>,
    /// Check the checksums the tool recorded (default true).
    pub skip_checksums: bool,
    /// Say what would be recorded, record nothing.
    pub dry_run: bool,
}

/// What `adopt` did (or, dry, would do).
#[derive(Debug, Clone, Serialize)]
pub struct Adoption {
    /// The tool and what its history means for the files.
    pub reconciled: Reconciled,
    /// Versions recorded in Instar's history now (none on a dry run).
    pub recorded: Vec<String>,
    /// Versions Instar's history already had.
    pub already: Vec<String>,
    /// Nothing was written.
    pub dry_run: bool,
}

/// Every other tool's history table in the database, as read. Reads only.
pub async fn other_histories(db: &mut Db) -> Result<Vec<Foreign>, Error> {
    let mut out = Vec::new();
    let mut schema_migrations = false;
    for tool in Tool::ALL {
        if matches!(tool, Tool::GolangMigrate | Tool::Dbmate) {
            if schema_migrations {
                continue;
            }
            schema_migrations = true;
        }
        if !db.table_exists_in(tool.table(), String::new()).await? {
            continue;
        }
        out.push(read(db, tool).await?);
    }
    Ok(out)
}

/// Other tools' histories that record migrations of these files (or a
/// problem with them): what `up` must not run past while Instar's history
/// records nothing applied. Reads only.
pub async fn unadopted(db: &mut Db, source: &Source) -> Result<Vec<Reconciled>, Error> {
    Ok(other_histories(db)
        .await?
        .iter()
        .map(|f| foreign::reconcile(f, source, true))
        .filter(Reconciled::matters)
        .collect())
}

async fn rows(db: &mut Db, tool: Tool, sql: &str) -> Result<Vec<Row>, Error> {
    query(sql)
        .fetch_all(&mut db.conn)
        .await
        .map_err(|e| Error::query(format!("reading {}'s history ({})", tool, tool.table()), e))
}

fn text(r: &Row, i: usize) -> Result<String, Error> {
    r.try_get::<Option<String>>(i)
        .map(Option::unwrap_or_default)
        .map_err(|e| Error::query("reading another tool's history", e))
}

/// An integer column, whatever its width (a `CASE … END` is 32-bit on PostgreSQL).
fn int(r: &Row, i: usize) -> Result<Option<i64>, Error> {
    r.try_get::<Option<i64>>(i)
        .or_else(|_| r.try_get::<Option<i32>>(i).map(|v| v.map(i64::from)))
        .map_err(|e| Error::query("reading another tool's history", e))
}

fn entry(version: String, says: Says) -> Entry {
    Entry {
        version,
        says,
        checksum: None,
        failed: false,
    }
}

/// Reads `tool`'s table, each tool's way.
async fn read(db: &mut Db, tool: Tool) -> Result<Foreign, Error> {
    let t = db.engine.text_type();
    let as_text = |c: &str| format!("CAST({c} AS {t})");
    let flag = |c: &str| format!("CASE WHEN {c} THEN 1 ELSE 0 END");
    let mut entries = Vec::new();
    let mut tool = tool;
    match tool {
        Tool::Diesel => {
            for r in rows(db, tool, "SELECT version FROM __diesel_schema_migrations").await? {
                entries.push(entry(text(&r, 0)?, Says::Applied));
            }
        }
        Tool::Sqlx => {
            let sql = format!(
                "SELECT {}, {}, {} FROM _sqlx_migrations ORDER BY version",
                as_text("version"),
                flag("success"),
                db.engine.hex_sql("checksum")
            );
            for r in rows(db, tool, &sql).await? {
                let mut e = entry(text(&r, 0)?, Says::Applied);
                e.failed = int(&r, 1)? == Some(0);
                e.checksum = Some(Recorded::Sha384(text(&r, 2)?));
                entries.push(e);
            }
        }
        Tool::Flyway => {
            let sql = format!(
                "SELECT {}, type, script, checksum, {} FROM flyway_schema_history ORDER BY installed_rank",
                as_text("version"),
                flag("success")
            );
            for r in rows(db, tool, &sql).await? {
                let (version, kind, script) = (text(&r, 0)?, text(&r, 1)?, text(&r, 2)?);
                let says = match kind.as_str() {
                    // A baseline row, or a baseline migration (B<version>__…) that
                    // builds the schema at that version.
                    "BASELINE" | "SQL_BASELINE" | "JDBC_BASELINE" | "SQL_STATE_SCRIPT"
                    | "JDBC_STATE_SCRIPT" => Says::UpTo,
                    // DELETE marks an entry `flyway repair` removed; undo is a paid edition's.
                    k if k == "DELETE" || k.starts_with("UNDO_") => Says::Reverted,
                    // The schema-creation marker: no migration.
                    "SCHEMA" => continue,
                    _ if version.is_empty() => Says::Repeatable,
                    _ => Says::Applied,
                };
                let mut e = entry(
                    if says == Says::Repeatable {
                        script
                    } else {
                        version
                    },
                    says,
                );
                e.failed = int(&r, 4)? == Some(0);
                e.checksum = int(&r, 3)?.map(Recorded::Crc32);
                entries.push(e);
            }
        }
        Tool::Refinery => {
            let sql = format!(
                "SELECT {}, checksum FROM refinery_schema_history ORDER BY version",
                as_text("version")
            );
            for r in rows(db, tool, &sql).await? {
                let mut e = entry(text(&r, 0)?, Says::Applied);
                e.checksum = Some(Recorded::SipHash(text(&r, 1)?));
                entries.push(e);
            }
        }
        Tool::GolangMigrate | Tool::Dbmate => {
            // Both name their table schema_migrations: golang-migrate's has `dirty`.
            let migrate = format!(
                "SELECT {}, {} FROM schema_migrations",
                as_text("version"),
                flag("dirty")
            );
            match query(&migrate).fetch_all(&mut db.conn).await {
                Ok(found) => {
                    tool = Tool::GolangMigrate;
                    for r in found {
                        let mut e = entry(text(&r, 0)?, Says::UpTo);
                        e.failed = int(&r, 1)? == Some(1);
                        entries.push(e);
                    }
                }
                Err(_) => {
                    tool = Tool::Dbmate;
                    let sql = format!("SELECT {} FROM schema_migrations", as_text("version"));
                    for r in rows(db, tool, &sql).await? {
                        entries.push(entry(text(&r, 0)?, Says::Applied));
                    }
                }
            }
        }
        Tool::Goose => {
            let sql = format!(
                "SELECT {}, {} FROM goose_db_version ORDER BY id",
                as_text("version_id"),
                flag("is_applied")
            );
            for r in rows(db, tool, &sql).await? {
                let version = text(&r, 0)?;
                // goose writes version 0 when it creates its table.
                if version == "0" {
                    continue;
                }
                let applied = int(&r, 1)? == Some(1);
                entries.push(entry(
                    version,
                    if applied {
                        Says::Applied
                    } else {
                        Says::Reverted
                    },
                ));
            }
        }
    }
    Ok(Foreign {
        tool,
        table: tool.table().to_string(),
        entries,
    })
}

/// Records the migrations another tool applied in Instar's history, under the
/// run lock, in one transaction: a `baseline` row per migration, its note
/// naming the tool. Refused (nothing written) when the tool's history has a
/// failed entry, a version without a file, or a checksum that differs.
pub async fn adopt(
    db: &mut Db,
    source: &Source,
    opts: &AdoptOptions,
    lock_timeout: Duration,
) -> Result<Adoption, Error> {
    db.lock(lock_timeout, || {}).await?;
    let r = adopt_locked(db, source, opts).await;
    let unlocked = db.unlock().await;
    let v = r?;
    unlocked?;
    Ok(v)
}

async fn adopt_locked(
    db: &mut Db,
    source: &Source,
    opts: &AdoptOptions,
) -> Result<Adoption, Error> {
    let found = other_histories(db).await?;
    let names = |list: &[&Foreign]| {
        list.iter()
            .map(|f| format!("{} ({})", f.tool, f.table))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let candidates: Vec<&Foreign> = found
        .iter()
        .filter(|f| opts.from.is_none_or(|t| t == f.tool))
        .collect();
    let f = match candidates.as_slice() {
        [one] => *one,
        [] if found.is_empty() => {
            return Err(Error::Unsupported(format!(
                "no other tool's history in this database (looked for {}); for a database migrated by hand, use `instar baseline VERSION`",
                Tool::ALL.map(|t| t.table()).join(", ")
            )))
        }
        [] => {
            return Err(Error::Unsupported(format!(
                "no {} history in this database; it has {}",
                opts.from.map_or("such", Tool::name),
                names(&found.iter().collect::<Vec<_>>())
            )))
        }
        many => {
            return Err(Error::Unsupported(format!(
                "this database has several tools' histories: {}; choose one with --from",
                names(many)
            )))
        }
    };
    let reconciled = foreign::reconcile(f, source, !opts.skip_checksums);
    if !reconciled.problems.is_empty() {
        return Err(Error::Unsupported(format!(
            "cannot adopt {}'s history ({}); nothing was recorded:\n  {}",
            f.tool,
            f.table,
            reconciled.problems.join("\n  ")
        )));
    }
    if !opts.dry_run {
        db.ensure_history().await?;
    }
    let state = derive(&db.read_history().await?);
    let (already, todo): (Vec<_>, Vec<_>) = reconciled
        .adopted
        .iter()
        .partition(|a| state.applied_of(&a.version).is_some());
    let mut out = Adoption {
        recorded: Vec::new(),
        already: already.iter().map(|a| a.version.clone()).collect(),
        dry_run: opts.dry_run,
        reconciled: reconciled.clone(),
    };
    if opts.dry_run || todo.is_empty() {
        if opts.dry_run {
            out.recorded = todo.iter().map(|a| a.version.clone()).collect();
        }
        return Ok(out);
    }
    let note = format!("{ADOPTED}{} ({})", f.tool, f.table);
    let begin = db.engine.begin();
    let (history, conn) = db.parts();
    control(conn, begin).await?;
    let written = async {
        for a in &todo {
            let m = &source.migrations[a.index];
            let mut row = new_row(m, EventKind::Baseline, Direction::Up);
            row.finished_at = Some(row.started_at.clone());
            row.note = Some(format!("{note}, recorded there as {}", a.recorded));
            history.insert(conn, &row).await?;
        }
        Ok::<(), Error>(())
    }
    .await;
    match written {
        Ok(()) => control(conn, "COMMIT").await?,
        Err(e) => {
            let _ = crate::conn::exec(conn, "ROLLBACK").await;
            return Err(e);
        }
    }
    out.recorded = todo.iter().map(|a| a.version.clone()).collect();
    Ok(out)
}
