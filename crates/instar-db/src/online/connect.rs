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
