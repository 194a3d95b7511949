//! What a connection runs to read and write at a version while an online
//! migration is in flight (`instar connect-sql --at V`).

use instar_core::history::derive;

use crate::{Db, Error};

/// What a connection runs to read and write at `version`: on PostgreSQL its
/// `search_path`; on SQLite, for the new version of the migration in flight,
/// TEMP views and triggers (nothing for the version the base tables have).
pub async fn connect_sql(db: &mut Db, version: &str) -> Result<Vec<String>, Error> {
    let pg = db.dialect() == instar_core::Dialect::Postgres;
    if db.dialect() == instar_core::Dialect::MySql {
        return mysql_connect_sql(db, version).await;
    }
    let search_path = |v: &str| {
        vec![format!(
            "SET search_path = {}, public",
            db.engine.quote(&super::expand::postgres::schema_of(v))
        )]
    };
    if let Some(f) = db.in_flight().await? {
        return if version == f.version {
            Ok(if pg {
                search_path(version)
            } else {
                f.connect_new
            })
        } else if version == f.old_version {
            Ok(if pg { search_path(version) } else { Vec::new() })
        } else {
            Err(Error::Unsupported(format!(
                "version {version} is not served now: {} (in flight) and {} are",
                f.version, f.old_version
            )))
        };
    }
    let state = derive(&db.read_history().await?);
    let last = state
        .applied
        .iter()
        .max_by(|a, b| a.1.applied_at.cmp(&b.1.applied_at))
        .map(|(k, _)| k.clone());
    let same = |a: &str, b: &str| a.trim_start_matches('0') == b.trim_start_matches('0');
    if !last.as_deref().is_some_and(|l| same(l, version)) {
        return Err(Error::Unsupported(format!(
            "version {version} is not served now: the database is at {}",
            last.as_deref().unwrap_or("no version")
        )));
    }
    // The views of a completed online migration stay for its clients.
    let schema = super::expand::postgres::schema_of(version);
    let kept = pg
        && !db
            .texts(
                "SELECT nspname::text FROM pg_namespace WHERE nspname = $1",
                &schema,
            )
            .await?
            .is_empty();
    Ok(if kept {
        search_path(version)
    } else {
        Vec::new()
    })
}

/// MariaDB: the version's database of views and the session variable the
/// triggers read (the base tables' database and no variable: the old version).
async fn mysql_connect_sql(db: &mut Db, version: &str) -> Result<Vec<String>, Error> {
    let Some(f) = db.in_flight().await? else {
        return Ok(Vec::new());
    };
    if version == f.version {
        Ok(f.connect_new)
    } else if version == f.old_version {
        Ok(Vec::new())
    } else {
        Err(Error::Unsupported(format!(
            "version {version} is not served now: {} (in flight) and {} are",
            f.version, f.old_version
        )))
    }
}

/// Whether connections made with `url` keep their session between
/// transactions. Behind a transaction pooler (PgBouncer or Odyssey in
/// transaction mode, ProxySQL multiplexing) each transaction may run in
/// another server session: a version chosen with a session setting
/// (`SET search_path`, `SET @instar_version`) is silently lost, and so is
/// Instar's own run lock. `Some(what was seen)` when the session was not kept.
///
/// Two connections, queries in the simple protocol only (a pooler in
/// transaction mode breaks named prepared statements): the first sets a
/// marker and reads its server session; while the second holds a
/// transaction open (a pooler hands it the server session just released),
/// the first reads again.
pub async fn session_dropped(url: &str) -> Result<Option<String>, Error> {
    use sqlx::Connection;
    let u = crate::url::DbUrl::parse(url)?;
    let Some((set, read)) = crate::engine::engine(u.dialect).online().session_probe() else {
        return Ok(None);
    };
    sqlx::any::install_default_drivers();
    let connect = || async {
        sqlx::AnyConnection::connect(&u.driver_url)
            .await
            .map_err(|e| Error::Connect {
                url: crate::url::redact(url),
                message: crate::error::db_message(&e),
            })
    };
    let mut a = connect().await?;
    let mut b = connect().await?;
    let probe = async {
        let read_one =
            async |c: &mut sqlx::AnyConnection| -> Result<(String, String), sqlx::Error> {
                use sqlx::Row;
                let row = sqlx::raw_sql(read).fetch_one(&mut *c).await?;
                // MySQL reports a user variable's type as a blob.
                let text = |i: usize| -> Result<String, sqlx::Error> {
                    match row.try_get::<Option<String>, _>(i) {
                        Ok(v) => Ok(v.unwrap_or_default()),
                        Err(_) => Ok(row
                            .try_get::<Option<Vec<u8>>, _>(i)?
                            .map(|b| String::from_utf8_lossy(&b).into_owned())
                            .unwrap_or_default()),
                    }
                };
                Ok((text(0)?, text(1)?))
            };
        sqlx::raw_sql(set).execute(&mut a).await?;
        let (first, pid1) = read_one(&mut a).await?;
        sqlx::raw_sql("BEGIN").execute(&mut b).await?;
        sqlx::raw_sql("SELECT 1").execute(&mut b).await?;
        let (second, pid2) = read_one(&mut a).await?;
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut b).await;
        Ok::<_, sqlx::Error>((first, pid1, second, pid2))
    }
    .await;
    let _ = a.close().await;
    let _ = b.close().await;
    let (first, pid1, second, pid2) =
        probe.map_err(|e| Error::query("checking whether connections keep their session", e))?;
    let kept = |v: &str| v == PROBE_MARK;
    Ok(if !kept(&first) || !kept(&second) || pid1 != pid2 {
        Some(format!(
            "two statements of one connection ran in server sessions {pid1} and {pid2}, and a session setting made before them was {} (a transaction pooler, such as PgBouncer with pool_mode = transaction?)",
            if kept(&first) && kept(&second) { "kept only because both sessions had it" } else { "gone" }
        ))
    } else {
        None
    })
}

/// The value [`session_dropped`] sets and looks for.
pub(crate) const PROBE_MARK: &str = "instar-session-probe";
