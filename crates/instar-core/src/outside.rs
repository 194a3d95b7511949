//! Statements an engine refuses inside a transaction block (PostgreSQL's
//! `CREATE INDEX CONCURRENTLY`, `VACUUM` …), and how each layout says that a
//! file runs outside one. Instar never changes how a file runs by itself: it
//! says so before the run (`plan`) and after the refusal.

use crate::split::Dialect;
use crate::version::Layout;

/// The kind of statement `stmt` is when `dialect` refuses it inside a
/// transaction (e.g. `CREATE INDEX CONCURRENTLY`); `None` otherwise.
pub fn needs_no_transaction(stmt: &str, dialect: Dialect) -> Option<&'static str> {
    if dialect != Dialect::Postgres {
        return None;
    }
    let words: Vec<String> = stmt
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("--"))
        .flat_map(str::split_whitespace)
        .take(12)
        .map(|w| w.trim_end_matches(';').to_ascii_uppercase())
        .collect();
    let w = |i: usize| words.get(i).map_or("", String::as_str);
    let has = |word: &str| words.iter().any(|x| x == word);
    Some(match (w(0), w(1), w(2)) {
        ("CREATE", "INDEX", "CONCURRENTLY") | ("CREATE", "UNIQUE", "INDEX")
            if has("CONCURRENTLY") =>
        {
            "CREATE INDEX CONCURRENTLY"
        }
        ("DROP", "INDEX", "CONCURRENTLY") => "DROP INDEX CONCURRENTLY",
        ("REINDEX", ..) if has("CONCURRENTLY") => "REINDEX … CONCURRENTLY",
        ("ALTER", "TABLE", _) if has("DETACH") && has("CONCURRENTLY") => {
            "ALTER TABLE … DETACH PARTITION … CONCURRENTLY"
        }
        ("VACUUM", ..) => "VACUUM",
        ("ALTER", "SYSTEM", _) => "ALTER SYSTEM",
        ("CREATE" | "DROP", "DATABASE", _) => "CREATE/DROP DATABASE",
        ("CREATE" | "DROP", "TABLESPACE", _) => "CREATE/DROP TABLESPACE",
        ("ALTER", "TYPE", _) if has("ADD") && has("VALUE") => {
            "ALTER TYPE … ADD VALUE (before PostgreSQL 12)"
        }
        _ => return None,
    })
}

/// How a file of `layout` says it runs outside a transaction.
pub fn no_transaction_advice(layout: Layout) -> &'static str {
    match layout {
        Layout::Instar => "put `-- instar:no-transaction` on its first line, or `transaction = false` in its migration.toml",
        Layout::Diesel => "put `-- instar:no-transaction` on its first line, or `run_in_transaction = false` in its metadata.toml",
        Layout::Sqlx => "put `-- no-transaction` on its first line (sqlx's own directive)",
        Layout::Popx => "name the file `<version>_<name>.postgres.autocommit.up.sql` (popx's own way)",
        Layout::Goose => "add `-- +goose NO TRANSACTION` (goose's own annotation)",
        Layout::Dbmate => "write `-- migrate:up transaction:false` (dbmate's own option)",
        _ => "put `-- instar:no-transaction` on its first line",
    }
}

/// The whole sentence: what cannot run in a transaction, and the two ways out.
pub fn no_transaction_hint(what: &str, layout: Layout) -> String {
    format!(
        "{what} cannot run inside a transaction on PostgreSQL, and this migration runs in one. To run the file outside a transaction, {}; it then runs statement by statement and a failure leaves it dirty, so keep such a statement in a migration of its own",
        no_transaction_advice(layout)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_statements_that_refuse_a_transaction_are_named() {
        let pg = |s| needs_no_transaction(s, Dialect::Postgres);
        assert_eq!(
            pg("CREATE INDEX CONCURRENTLY i ON t (x)"),
            Some("CREATE INDEX CONCURRENTLY")
        );
        assert_eq!(
            pg("create unique index concurrently i on t (x)"),
            Some("CREATE INDEX CONCURRENTLY")
        );
        assert_eq!(
            pg("-- note\nDROP INDEX CONCURRENTLY i"),
            Some("DROP INDEX CONCURRENTLY")
        );
        assert_eq!(
            pg("REINDEX INDEX CONCURRENTLY i"),
            Some("REINDEX … CONCURRENTLY")
        );
        assert_eq!(pg("VACUUM ANALYZE t"), Some("VACUUM"));
        assert!(pg("ALTER TYPE mood ADD VALUE 'meh'").is_some());
        assert_eq!(pg("CREATE INDEX i ON t (x)"), None);
        assert_eq!(pg("CREATE UNIQUE INDEX i ON t (x)"), None);
        assert_eq!(needs_no_transaction("VACUUM", Dialect::Sqlite), None);
    }
}
