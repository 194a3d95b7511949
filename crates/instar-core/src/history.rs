//! The history table as an append-only event log, and the state derived from it.
//!
//! Every apply, revert, failure, baseline and repair is a row; nothing is ever
//! deleted. The one row that changes after it is written is a `start` row: a
//! migration run statement by statement (outside a transaction) counts its
//! progress there, so a crash leaves a *dirty* mark that names the statement
//! it stopped at.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a history row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A statement-by-statement run began; until `apply`/`revert` follows, the migration is dirty.
    Start,
    /// The migration was applied.
    Apply,
    /// The migration was reverted.
    Revert,
    /// A transactional run failed and was rolled back: informational only.
    Fail,
    /// Everything up to and including this version counts as applied.
    Baseline,
    /// A dirty mark was cleared by `instar repair`; the migration is pending again.
    Repair,
    /// An edited applied migration's new checksum was accepted by `instar repair`.
    Realign,
    /// A stale run lock was broken by `instar unlock` (an audit row: no migration's state changes).
    Unlock,
}

impl EventKind {
    /// The value stored in the `event` column.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Start => "start",
            EventKind::Apply => "apply",
            EventKind::Revert => "revert",
            EventKind::Fail => "fail",
            EventKind::Baseline => "baseline",
            EventKind::Repair => "repair",
            EventKind::Realign => "realign",
            EventKind::Unlock => "unlock",
        }
    }

    /// Parses the `event` column.
    pub fn parse(s: &str) -> Option<EventKind> {
        Some(match s {
            "start" => EventKind::Start,
            "apply" => EventKind::Apply,
            "revert" => EventKind::Revert,
            "fail" => EventKind::Fail,
            "baseline" => EventKind::Baseline,
            "repair" => EventKind::Repair,
            "realign" => EventKind::Realign,
            "unlock" => EventKind::Unlock,
            _ => return None,
        })
    }
}

/// The direction of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Applying forward scripts.
    Up,
    /// Applying reverse scripts.
    Down,
}

impl Direction {
    /// The value stored in the `direction` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

/// One row of `instar_history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRow {
    /// Monotonic row id; the log's order.
    pub id: i64,
    /// The migration's version text (`R__<name>` for a repeatable one).
    pub version: String,
    /// The migration's name.
    pub name: String,
    /// What happened.
    pub event: EventKind,
    /// Which script ran.
    pub direction: Direction,
    /// `schema` or `repeatable`.
    pub kind: String,
    /// `sha256:<hex>` of the forward script at the time.
    pub checksum: Option<String>,
    /// The schema's semantic version after this migration, if it declares one.
    pub schema_version: Option<String>,
    /// When it started (RFC 3339 UTC).
    pub started_at: String,
    /// When it finished (RFC 3339 UTC).
    pub finished_at: Option<String>,
    /// How long it took.
    pub duration_ms: Option<i64>,
    /// Statements that completed.
    pub statements_applied: i64,
    /// Statements in the script.
    pub statements_total: i64,
    /// Comma-separated hashes of the script's statements (statement-by-statement runs only).
    pub statement_hashes: Option<String>,
    /// Rows the statements reported as affected.
    pub rows_affected: Option<i64>,
    /// The error that stopped the run.
    pub error: Option<String>,
    /// The statement that failed, with its line.
    pub failed_statement: Option<String>,
    /// `user@host` of whoever ran it.
    pub operator: String,
    /// The run that wrote the row (none for rows written before run ids existed).
    #[serde(default)]
    pub run_id: Option<String>,
    /// On a `start` row: the 0-based statement sent to the database and not yet
    /// confirmed (one that commits by itself, such as MySQL DDL). After a crash,
    /// whether it took effect is uncertain.
    #[serde(default)]
    pub in_flight: Option<i64>,
    /// The Instar version that wrote the row.
    pub tool_version: String,
    /// A reason given to `repair` or `baseline`.
    pub note: Option<String>,
}

/// How the note of a `baseline` row written by `instar adopt` begins: such a
/// row records one migration another tool applied (`adopted from diesel
/// (__diesel_schema_migrations)`), not "everything up to this version".
pub const ADOPTED: &str = "adopted from ";

/// A migration the history says is applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppliedMigration {
    /// Version text.
    pub version: String,
    /// Name at the time.
    pub name: String,
    /// The checksum it was applied (or realigned) with.
    pub checksum: Option<String>,
    /// The schema version it declared.
    pub schema_version: Option<String>,
    /// When it was applied.
    pub applied_at: String,
    /// The history row that applied it.
    pub row_id: i64,
    /// A documents migration: the fingerprint of its lenses and modules when
    /// it was applied (or realigned), if recorded.
    pub lenses: Option<String>,
}

/// The prefix under which a documents migration's lens fingerprint is kept
/// in its row's `statement_hashes` (a documents migration has no statements).
pub const LENSES: &str = "lenses:";

/// The lens fingerprint a row records, if any.
pub fn lenses_of(r: &HistoryRow) -> Option<String> {
    r.statement_hashes
        .as_deref()
        .and_then(|s| s.strip_prefix(LENSES))
        .map(str::to_string)
}

/// A migration that stopped half way outside a transaction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DirtyMigration {
    /// Version text.
    pub version: String,
    /// Name.
    pub name: String,
    /// Direction it was running in.
    pub direction: Direction,
    /// Checksum of the forward script when it started.
    pub checksum: Option<String>,
    /// Statements that completed.
    pub statements_applied: i64,
    /// Statements in the script.
    pub statements_total: i64,
    /// Hashes of the script's statements when it started.
    pub statement_hashes: Vec<String>,
    /// The error it stopped with, if it did not simply die.
    pub error: Option<String>,
    /// The failing statement.
    pub failed_statement: Option<String>,
    /// The `start` row, which the runner updates as it resumes.
    pub row_id: i64,
    /// The statement that was sent and not confirmed when the run stopped, if any.
    pub in_flight: Option<i64>,
}

/// The current state of a database, derived from its history.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct State {
    /// Applied migrations, by [`version_key`] (use [`State::applied_of`]).
    pub applied: BTreeMap<String, AppliedMigration>,
    /// Dirty migrations, by [`version_key`] (use [`State::dirty_of`]).
    pub dirty: BTreeMap<String, DirtyMigration>,
    /// The latest baseline version, if any.
    pub baseline: Option<String>,
}

/// The key a version is recorded under: its text with the leading zeros of
/// each number dropped, so `2_b` renamed `02_b` is still the migration that
/// was applied (versions compare by their numbers everywhere).
pub fn version_key(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_number = false;
    while let Some(c) = chars.next() {
        if c == '0' && !in_number && chars.peek().is_some_and(|n| n.is_ascii_digit()) {
            continue;
        }
        in_number = c.is_ascii_digit();
        out.push(c);
    }
    out
}

impl State {
    /// The applied migration recorded for version text `version`, however its
    /// number is padded.
    pub fn applied_of(&self, version: &str) -> Option<&AppliedMigration> {
        self.applied.get(&version_key(version))
    }

    /// The dirty mark of version text `version`, however its number is padded.
    pub fn dirty_of(&self, version: &str) -> Option<&DirtyMigration> {
        self.dirty.get(&version_key(version))
    }
}

/// Replays the history rows (in id order) into the current state.
pub fn derive(rows: &[HistoryRow]) -> State {
    let mut state = State::default();
    for r in rows {
        match r.event {
            EventKind::Start => {
                state.dirty.insert(
                    version_key(&r.version),
                    DirtyMigration {
                        version: r.version.clone(),
                        name: r.name.clone(),
                        direction: r.direction,
                        checksum: r.checksum.clone(),
                        statements_applied: r.statements_applied,
                        statements_total: r.statements_total,
                        statement_hashes: r
                            .statement_hashes
                            .as_deref()
                            .filter(|s| !s.is_empty())
                            .map(|s| s.split(',').map(str::to_string).collect())
                            .unwrap_or_default(),
                        error: r.error.clone(),
                        failed_statement: r.failed_statement.clone(),
                        row_id: r.id,
                        in_flight: r.in_flight,
                    },
                );
            }
            EventKind::Baseline if !r.note.as_deref().is_some_and(|n| n.starts_with(ADOPTED)) => {
                state.baseline = Some(r.version.clone());
            }
            EventKind::Apply | EventKind::Baseline => {
                state.dirty.remove(&version_key(&r.version));
                state.applied.insert(
                    version_key(&r.version),
                    AppliedMigration {
                        version: r.version.clone(),
                        name: r.name.clone(),
                        checksum: r.checksum.clone(),
                        schema_version: r.schema_version.clone(),
                        applied_at: r
                            .finished_at
                            .clone()
                            .unwrap_or_else(|| r.started_at.clone()),
                        row_id: r.id,
                        lenses: lenses_of(r),
                    },
                );
            }
            EventKind::Revert => {
                state.dirty.remove(&version_key(&r.version));
                state.applied.remove(&version_key(&r.version));
            }
            EventKind::Repair => {
                state.dirty.remove(&version_key(&r.version));
            }
            // An audit row: no migration's state changes.
            EventKind::Unlock => {}
            EventKind::Realign => {
                if let Some(a) = state.applied.get_mut(&version_key(&r.version)) {
                    a.checksum = r.checksum.clone();
                    if let Some(l) = lenses_of(r) {
                        a.lenses = Some(l);
                    }
                }
            }
            EventKind::Fail => {}
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::version_key;

    #[test]
    fn version_keys_ignore_padding_only() {
        assert_eq!(version_key("0002"), "2");
        assert_eq!(version_key("2"), "2");
        assert_eq!(version_key("0"), "0");
        assert_eq!(version_key("000"), "0");
        assert_eq!(version_key("2018-01-14-000100"), "2018-1-14-100");
        assert_eq!(version_key("1.01"), "1.1");
        assert_eq!(version_key("R__views"), "R__views");
        assert_ne!(version_key("20"), version_key("2"));
    }
}
