//! Other tools' history tables: what diesel, sqlx, Flyway, refinery,
//! golang-migrate, dbmate and goose recorded, matched to the files as each tool
//! spells its versions and checks its checksums. Reading the rows is the
//! database crate's; deciding what they mean is here.

use serde::Serialize;
use sha2::{Digest, Sha384};

use crate::version::{Layout, Version};
use crate::{Migration, Source};

/// A migration tool whose history Instar can adopt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tool {
    /// diesel: `__diesel_schema_migrations`.
    Diesel,
    /// sqlx: `_sqlx_migrations`, with SHA-384 checksums and a `success` flag.
    Sqlx,
    /// Flyway: `flyway_schema_history`, with CRC32 checksums.
    Flyway,
    /// refinery: `refinery_schema_history`, with SipHash checksums.
    Refinery,
    /// golang-migrate: `schema_migrations (version, dirty)`, one row.
    GolangMigrate,
    /// dbmate: `schema_migrations (version)`, a row per migration.
    Dbmate,
    /// goose: `goose_db_version`, a row per apply and per rollback.
    Goose,
}

impl Tool {
    /// Every tool, in the order their tables are looked for.
    pub const ALL: [Tool; 7] = [
        Tool::Diesel,
        Tool::Sqlx,
        Tool::Flyway,
        Tool::Refinery,
        Tool::GolangMigrate,
        Tool::Dbmate,
        Tool::Goose,
    ];

    /// The tool's name.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Diesel => "diesel",
            Tool::Sqlx => "sqlx",
            Tool::Flyway => "Flyway",
            Tool::Refinery => "refinery",
            Tool::GolangMigrate => "golang-migrate",
            Tool::Dbmate => "dbmate",
            Tool::Goose => "goose",
        }
    }

    /// The tool named `name` (`diesel`, `sqlx`, `flyway`, `refinery`,
    /// `golang-migrate`, `dbmate`, `goose`; any case).
    pub fn from_name(name: &str) -> Option<Tool> {
        Tool::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// Its history table's default name.
    pub fn table(self) -> &'static str {
        match self {
            Tool::Diesel => "__diesel_schema_migrations",
            Tool::Sqlx => "_sqlx_migrations",
            Tool::Flyway => "flyway_schema_history",
            Tool::Refinery => "refinery_schema_history",
            Tool::GolangMigrate | Tool::Dbmate => "schema_migrations",
            Tool::Goose => "goose_db_version",
        }
    }

    /// What fixes a failed (dirty) entry of this tool.
    fn dirty_way_out(self, version: &str) -> String {
        match self {
            Tool::GolangMigrate => format!(
                "finish or undo version {version} by hand, then `migrate force {version}` (it is done) or `migrate force <the version before>` (it is undone), and run `instar adopt` again"
            ),
            Tool::Sqlx => format!(
                "finish or undo version {version} by hand, then run `sqlx migrate run` (it retries it) or delete its failed row from _sqlx_migrations, and run `instar adopt` again"
            ),
            Tool::Flyway => format!(
                "finish or undo version {version} by hand, then `flyway repair` (it removes failed rows), and run `instar adopt` again"
            ),
            _ => format!(
                "finish or undo version {version} by hand, record it with {} as done or not, and run `instar adopt` again",
                self.name()
            ),
        }
    }
}

impl std::fmt::Display for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A checksum another tool recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// sqlx: SHA-384 of the file, as hex.
    Sha384(String),
    /// Flyway: CRC32 of the file's lines, as a signed 32-bit number.
    Crc32(i64),
    /// refinery: SipHash-1-3 of name, version and SQL, as a decimal u64.
    SipHash(String),
}

/// What a row of another tool's history says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Says {
    /// This version was applied.
    Applied,
    /// This version was reverted (goose, Flyway undo and delete).
    Reverted,
    /// Every version up to this one counts as applied (Flyway baseline,
    /// golang-migrate's current version).
    UpTo,
    /// A repeatable migration (Flyway `R__`), by its file name, was applied.
    Repeatable,
}

/// One row of another tool's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The version as the tool recorded it (the file name for a repeatable).
    pub version: String,
    /// What it says.
    pub says: Says,
    /// The checksum it recorded, if it does.
    pub checksum: Option<Recorded>,
    /// The tool marked it failed or dirty.
    pub failed: bool,
}

/// Another tool's history, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Foreign {
    /// The tool.
    pub tool: Tool,
    /// Its table.
    pub table: String,
    /// Its rows, in the order the tool wrote them.
    pub entries: Vec<Entry>,
}

/// One migration another tool applied, matched to its file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Adopted {
    /// Index into the source's migrations.
    pub index: usize,
    /// The file's version.
    pub version: String,
    /// As the tool recorded it.
    pub recorded: String,
}

/// What another tool's history means for the files.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reconciled {
    /// The tool.
    pub tool: Tool,
    /// Its table.
    pub table: String,
    /// Migrations it applied, matched to files, in the files' order.
    pub adopted: Vec<Adopted>,
    /// Why the history cannot be adopted as it is (each says what to do).
    pub problems: Vec<String>,
    /// Facts worth saying that block nothing (a repeatable changed since …).
    pub notes: Vec<String>,
}

impl Reconciled {
    /// Whether there is anything to adopt or to settle first: a table whose
    /// rows record nothing the files have (every version rolled back) is neither.
    pub fn matters(&self) -> bool {
        !self.adopted.is_empty() || !self.problems.is_empty()
    }

    /// One line: what was found, and whether it can be adopted as it is.
    pub fn summary(&self) -> String {
        let n = self.adopted.len();
        let s = if n == 1 { "" } else { "s" };
        if self.problems.is_empty() {
            format!(
                "{} history ({}): {n} applied migration{s} match the files; run `instar adopt` to record them in Instar's history",
                self.tool, self.table
            )
        } else {
            format!(
                "{} history ({}): {n} applied migration{s} match the files, and {} problem(s) stop an adoption: {}",
                self.tool,
                self.table,
                self.problems.len(),
                self.problems.join("; ")
            )
        }
    }
}

/// Matches another tool's history to the files: which migrations it applied,
/// and whatever stops an adoption (a recorded version without a file, a
/// checksum that differs unless `checksums` is false, a failed entry).
pub fn reconcile(f: &Foreign, source: &Source, checksums: bool) -> Reconciled {
    let mut out = Reconciled {
        tool: f.tool,
        table: f.table.clone(),
        adopted: Vec::new(),
        problems: Vec::new(),
        notes: Vec::new(),
    };
    let mut applied: Vec<(usize, String)> = Vec::new();
    for e in &f.entries {
        if e.failed {
            out.problems.push(format!(
                "{} recorded version {} as failed (dirty) in {}: the database may hold part of it; {}",
                f.tool,
                e.version,
                f.table,
                f.tool.dirty_way_out(&e.version)
            ));
            continue;
        }
        match e.says {
            Says::UpTo => {
                let Some(limit) = version_in(f.tool, &e.version, source) else {
                    out.problems.push(missing(f, &e.version, source));
                    continue;
                };
                for (i, m) in source.migrations.iter().enumerate() {
                    if !m.is_repeatable() && m.version <= limit {
                        applied.retain(|(j, _)| *j != i);
                        applied.push((i, e.version.clone()));
                    }
                }
            }
            Says::Applied => match find(f.tool, &e.version, source) {
                Some(i) => {
                    if let Some(p) =
                        checksum_problem(f, e, &source.migrations[i]).filter(|_| checksums)
                    {
                        out.problems.push(p);
                    }
                    applied.retain(|(j, _)| *j != i);
                    applied.push((i, e.version.clone()));
                }
                None => out.problems.push(missing(f, &e.version, source)),
            },
            Says::Reverted => {
                if let Some(i) = find(f.tool, &e.version, source) {
                    applied.retain(|(j, _)| *j != i);
                }
            }
            Says::Repeatable => {
                let found = source.migrations.iter().position(|m| {
                    m.is_repeatable()
                        && m.up.path.file_name().is_some_and(|n| {
                            e.version.rsplit('/').next() == Some(&*n.to_string_lossy())
                        })
                });
                match found {
                    Some(i) if checksum_problem(f, e, &source.migrations[i]).is_none() => {
                        applied.retain(|(j, _)| *j != i);
                        applied.push((i, e.version.clone()));
                    }
                    Some(i) => {
                        applied.retain(|(j, _)| *j != i);
                        out.notes.push(format!(
                            "{} changed since {} applied it: `instar up` applies it again, as {} would",
                            source.migrations[i].up.path.display(),
                            f.tool,
                            f.tool
                        ));
                    }
                    None => out.notes.push(format!(
                        "{} applied the repeatable migration {}, which has no file any more; nothing to adopt for it",
                        f.tool, e.version
                    )),
                }
            }
        }
    }
    applied.sort_by_key(|(i, _)| *i);
    out.adopted = applied
        .into_iter()
        .map(|(index, recorded)| Adopted {
            index,
            version: source.migrations[index].version.to_string(),
            recorded,
        })
        .collect();
    out
}

fn missing(f: &Foreign, version: &str, source: &Source) -> String {
    format!(
        "{} recorded version {version} in {} as applied, but no migration in {} has that version; restore its file (from version control) and run `instar adopt` again",
        f.tool,
        f.table,
        source.dir.display()
    )
}

/// The migration the tool means by `recorded`, as it spells versions.
fn find(tool: Tool, recorded: &str, source: &Source) -> Option<usize> {
    source
        .migrations
        .iter()
        .position(|m| !m.is_repeatable() && same(tool, recorded, m))
}

/// `recorded` as a version of the source's layout, for "up to" comparisons.
fn version_in(tool: Tool, recorded: &str, source: &Source) -> Option<Version> {
    if let Some(i) = find(tool, recorded, source) {
        return Some(source.migrations[i].version.clone());
    }
    Version::parse(recorded, source.layout.unwrap_or(Layout::Instar))
}

fn same(tool: Tool, recorded: &str, m: &Migration) -> bool {
    let file = m.version.as_str();
    match tool {
        // diesel records the folder's version with its dashes removed.
        Tool::Diesel => file.replace('-', "") == recorded.replace('-', ""),
        Tool::Flyway => match (
            Version::parse(recorded, Layout::Flyway),
            Version::parse(file, Layout::Flyway),
        ) {
            (Some(a), Some(b)) => a == b,
            _ => file == recorded,
        },
        // The others record an integer (dbmate: the file's digits as text).
        _ => {
            let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty();
            if digits(file) && digits(recorded) {
                file.trim_start_matches('0') == recorded.trim_start_matches('0')
            } else {
                file == recorded
            }
        }
    }
}

/// Whether the file still is what the tool applied, where it recorded a checksum.
fn checksum_problem(f: &Foreign, e: &Entry, m: &Migration) -> Option<String> {
    let recorded = e.checksum.as_ref()?;
    // sqlx and refinery hash the file as read (a BOM, CRLF line ends and all).
    let texts: Vec<&str> = std::iter::once(m.up.sql.as_str())
        .chain(m.up.original.as_deref())
        .collect();
    let (now, then) = match recorded {
        Recorded::Sha384(hex) => {
            let then = hex.to_ascii_lowercase();
            if texts.iter().any(|t| sqlx_checksum(t) == then) {
                return None;
            }
            (sqlx_checksum(&m.up.sql), then)
        }
        Recorded::Crc32(n) => (flyway_checksum(&m.up.sql).to_string(), n.to_string()),
        Recorded::SipHash(n) => {
            let version: i64 = m.version.as_str().parse().ok()?;
            // refinery hashes an i32 version, or an i64 with its int8-versions feature.
            let matches = texts.iter().any(|t| {
                let narrow = i32::try_from(version)
                    .ok()
                    .map(|v| refinery_checksum(&m.name, v, t).to_string());
                narrow.as_deref() == Some(n.as_str())
                    || refinery_checksum(&m.name, version, t).to_string() == *n
            });
            if matches {
                return None;
            }
            (
                refinery_checksum(&m.name, version, &m.up.sql).to_string(),
                n.clone(),
            )
        }
    };
    (now != then).then(|| {
        format!(
            "{} was edited after {} applied it (its checksum in {} differs): restore the file as it was applied (from version control), or adopt without checking checksums (`instar adopt --no-checksums`) if the edit is deliberate",
            m.up.path.display(),
            f.tool,
            f.table
        )
    })
}

/// sqlx's checksum of a migration: SHA-384 of its SQL, as lower-case hex.
pub fn sqlx_checksum(sql: &str) -> String {
    Sha384::digest(sql.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Flyway's checksum: CRC32 over the script's lines without their line
/// breaks, as a signed 32-bit number.
pub fn flyway_checksum(sql: &str) -> i32 {
    let mut h = crc32fast::Hasher::new();
    let text = sql.strip_prefix('\u{feff}').unwrap_or(sql);
    for line in text.split('\n') {
        h.update(line.trim_end_matches('\r').as_bytes());
    }
    h.finalize() as i32
}

/// refinery's checksum: SipHash-1-3 (zero keys) of the name, the version and
/// the SQL, hashed as Rust hashes a `String`, the version (an `i32`, or an
/// `i64` with refinery's `int8-versions`) and a `String`.
pub fn refinery_checksum(name: &str, version: impl std::hash::Hash, sql: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = siphasher::sip::SipHasher13::new();
    name.hash(&mut h);
    version.hash(&mut h);
    sql.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flyway_checksums_ignore_line_break_style() {
        assert_eq!(flyway_checksum("a\nb"), flyway_checksum("a\r\nb"));
        assert_ne!(flyway_checksum("a\nb"), flyway_checksum("a\nc"));
        // CRC32 of "ab" (the lines joined without breaks).
        assert_eq!(flyway_checksum("a\nb") as u32, crc32fast::hash(b"ab"));
    }

    #[test]
    fn sqlx_checksums_are_sha384_hex() {
        assert_eq!(sqlx_checksum("").len(), 96);
        assert!(sqlx_checksum("").starts_with("38b060a751ac9638"));
    }
}
