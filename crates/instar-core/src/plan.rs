//! The planner: given the files and the history, what a command would do.
//!
//! Pure and synchronous: [`plan`] and [`status`] take the migrations found on
//! disk and the [`State`] derived from history and decide everything — which
//! migrations are pending, which problems block a run, where a dirty migration
//! resumes — without touching a database.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::checksum::statement_hash;
use crate::history::{Direction, State};
use crate::source::Migration;
use crate::split::{split, Dialect, Split};
use crate::version::{Layout, Version};
use crate::Error;

/// What the history and the files disagree on.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// An applied migration has no file any more (and is not newer than the files).
    Missing {
        /// Version text.
        version: String,
        /// Name recorded in history.
        name: String,
    },
    /// The database has migrations applied that are newer than every file.
    NewerThanFiles {
        /// The applied versions with no file.
        versions: Vec<String>,
        /// The newest version on disk, if any.
        newest_file: Option<String>,
    },
    /// An applied migration's file changed since it was applied.
    ChecksumMismatch {
        /// Version text.
        version: String,
        /// The file.
        path: PathBuf,
        /// Checksum in history.
        recorded: String,
        /// Checksum of the file now.
        found: String,
    },
    /// The lenses or modules a documents migration moved its documents with
    /// changed after it was applied.
    LensesChanged {
        /// Version text.
        version: String,
        /// The collection.
        collection: String,
        /// Fingerprint in history.
        recorded: String,
        /// Fingerprint of the lens files and modules now.
        found: String,
    },
    /// A pending migration sorts before the newest applied one.
    OutOfOrder {
        /// Version text.
        version: String,
        /// The file.
        path: PathBuf,
        /// Newest applied version.
        newest_applied: String,
    },
    /// The database applied some of the migrations a squash replaced, not
    /// all: the baseline cannot run on it, and its rest would not run.
    PartlySquashed {
        /// The baseline's version.
        version: String,
        /// The replaced versions applied.
        applied: Vec<String>,
        /// The replaced versions not applied.
        pending: Vec<String>,
    },
    /// A migration stopped half way and cannot be resumed as it is.
    Dirty {
        /// Version text.
        version: String,
        /// Statements applied / total.
        applied: i64,
        /// Statements in the script.
        total: i64,
        /// The direction it was running in.
        direction: Direction,
        /// The error it stopped with.
        error: Option<String>,
        /// Why it cannot simply be resumed.
        why: String,
    },
}

/// Up to ten items, then how many more: a message stays readable with 500.
fn few(items: &[String]) -> String {
    const SHOWN: usize = 10;
    if items.len() <= SHOWN {
        return items.join(", ");
    }
    format!(
        "{} … and {} more ({} in all)",
        items[..SHOWN].join(", "),
        items.len() - SHOWN,
        items.len()
    )
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing { version, name } => write!(
                f,
                "migration {version} ({name}) is applied but its file is missing; restore the file, or run with --ignore-missing"
            ),
            Problem::NewerThanFiles { versions, newest_file } => write!(
                f,
                "the database is newer than these migration files: applied {} not found (newest file: {}); use a newer release of the migrations. Nothing was changed",
                few(versions),
                newest_file.as_deref().unwrap_or("none")
            ),
            Problem::ChecksumMismatch { version, path, recorded, found } => write!(
                f,
                "migration {version} ({}) was edited after it was applied: recorded {recorded}, file now {found}; undo the edit, or accept it with `instar repair --accept-checksums`",
                path.display()
            ),
            Problem::LensesChanged { version, collection, recorded, found } => write!(
                f,
                "the lenses or WebAssembly modules of collection {collection} changed after documents migration {version} moved its documents with them: recorded {recorded}, now {found}; undo the edit, or accept it with `instar repair --accept-checksums`"
            ),
            Problem::OutOfOrder { version, path, newest_applied } => write!(
                f,
                "migration {version} ({}) is pending but older than the newest applied migration {newest_applied}; run with --allow-out-of-order to apply it anyway",
                path.display()
            ),
            Problem::PartlySquashed { version, applied, pending } => write!(
                f,
                "migrations {} were squashed into baseline {version}, and this database applied only {} of them: the baseline cannot run on it, and {} would not run. Apply them with the release before the squash (its migrations folder, or the archive: `instar up --migrations <archive folder> --to {version}`), then run this one",
                few(pending),
                few(applied),
                few(pending)
            ),
            Problem::Dirty { version, applied, total, direction, error, why } => {
                write!(
                    f,
                    "migration {version} is dirty: {applied} of {total} statements ran ({}){}; {why}",
                    direction.as_str(),
                    error.as_deref().map(|e| format!(", stopped by: {e}")).unwrap_or_default()
                )?;
                write!(f, ". Fix the database by hand and run `instar repair` (marks it not applied), or `instar repair --mark-applied {version}`")
            }
        }
    }
}

/// What a command asks the planner for.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Apply pending migrations, up to and including `to` if given.
    Up {
        /// Last version to apply.
        to: Option<String>,
    },
    /// Revert applied migrations: down to (but not including) `to`, or `steps` of them (default 1).
    Down {
        /// Version to stop at (stays applied).
        to: Option<String>,
        /// How many to revert.
        steps: Option<usize>,
    },
}

/// Options of a plan.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// What to do.
    pub target: Target,
    /// The dialect scripts are split for (to find where a dirty migration resumes).
    pub dialect: Dialect,
    /// Apply pending migrations older than the newest applied one.
    pub allow_out_of_order: bool,
    /// Do not refuse when applied migrations have no file (they are left alone).
    pub ignore_missing: bool,
}

/// One migration to run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Index into the migrations slice given to [`plan`].
    pub index: usize,
    /// Version text.
    pub version: String,
    /// Which script runs.
    pub direction: Direction,
    /// Statements to skip because a previous run applied them (resuming a dirty migration).
    pub resume_from: usize,
    /// The dirty `start` row being resumed, if any.
    pub resume_row: Option<i64>,
    /// Whether statement `resume_from` was in flight when the previous run
    /// stopped (sent, its effect not confirmed).
    pub in_flight: bool,
}

/// The ordered steps a command would take.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// Where one migration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// Applied and unchanged.
    Applied,
    /// Counted as applied by a baseline.
    Baselined,
    /// Not applied yet.
    Pending,
    /// Applied, but the file changed since.
    Diverged,
    /// Stopped half way.
    Dirty,
    /// A repeatable migration whose file changed since it last ran.
    Outdated,
}

/// One line of `instar status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusEntry {
    /// Version text.
    pub version: String,
    /// Name.
    pub name: String,
    /// Where it stands.
    pub standing: Standing,
    /// When it was applied.
    pub applied_at: Option<String>,
    /// The schema version it declares.
    pub schema_version: Option<String>,
}

/// Status of every migration on disk, plus the problems found.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// One entry per file, in run order.
    pub migrations: Vec<StatusEntry>,
    /// Problems: missing files, newer database, edits, dirty marks.
    pub problems: Vec<Problem>,
    /// The schema version the database is at (latest applied migration that declares one).
    pub schema_version: Option<String>,
}

fn find<'a>(migrations: &'a [Migration], text: &str) -> Option<(usize, &'a Migration)> {
    let layout = migrations.first().map_or(Layout::Instar, |m| m.layout);
    let parsed = Version::parse(text, layout);
    migrations
        .iter()
        .enumerate()
        .find(|(_, m)| m.version.as_str() == text || parsed.as_ref() == Some(&m.version))
}

/// Whether `checksum`, recorded for version `key`, is that of the migration
/// baseline `m` replaced under the same version, on a database that applied
/// every migration `m` replaced.
fn squashed_by(m: &Migration, key: &str, checksum: &str, state: &State) -> bool {
    let same = m.meta.squashes.iter().any(|s| {
        crate::history::version_key(&s.version) == crate::history::version_key(key)
            && s.checksum == checksum
    });
    same && squashed_state(m, state).1.is_empty()
}

/// The versions baseline `m` replaced that the database has (applied, or
/// covered by a baseline), and those it lacks.
fn squashed_state(m: &Migration, state: &State) -> (Vec<String>, Vec<String>) {
    let covered = |v: &str| {
        state.applied_of(v).is_some()
            || state.baseline.as_ref().is_some_and(|b| {
                match (Version::parse(b, m.layout), Version::parse(v, m.layout)) {
                    (Some(b), Some(v)) => v <= b,
                    _ => false,
                }
            })
    };
    m.meta
        .squashes
        .iter()
        .map(|s| s.version.clone())
        .partition(|v| covered(v))
}

/// A baseline not applied on a database that has some of what it replaces,
/// not all.
fn partly_squashed(m: &Migration, state: &State) -> Option<Problem> {
    let (applied, pending) = squashed_state(m, state);
    (!applied.is_empty() && !pending.is_empty()).then(|| Problem::PartlySquashed {
        version: m.version.as_str().to_string(),
        applied,
        pending,
    })
}

fn baselined(m: &Migration, state: &State) -> bool {
    let Some(b) = &state.baseline else {
        return false;
    };
    !m.is_repeatable() && Version::parse(b, m.layout).is_some_and(|b| m.version <= b)
}

/// Applied versions with no file: newer than every file (the database is ahead
/// of this release), or missing in between (a file was deleted).
fn missing_or_newer(migrations: &[Migration], state: &State) -> Vec<Problem> {
    let mut problems = Vec::new();
    let layout = migrations.first().map_or(Layout::Instar, |m| m.layout);
    let newest_file = migrations
        .iter()
        .filter(|m| !m.is_repeatable())
        .map(|m| &m.version)
        .max();
    let mut newer = Vec::new();
    let squashed: Vec<String> = migrations
        .iter()
        .flat_map(|m| m.meta.squashes.iter())
        .map(|s| crate::history::version_key(&s.version))
        .collect();
    for a in state.applied.values() {
        if find(migrations, &a.version).is_some()
            || a.version.starts_with("R__")
            || squashed.contains(&crate::history::version_key(&a.version))
        {
            continue;
        }
        let is_newer = match (Version::parse(&a.version, layout), newest_file) {
            (Some(v), Some(n)) => v > *n,
            (_, None) => true,
            (None, Some(_)) => false,
        };
        if is_newer {
            newer.push(a.version.clone());
        } else {
            problems.push(Problem::Missing {
                version: a.version.clone(),
                name: a.name.clone(),
            });
        }
    }
    if !newer.is_empty() {
        problems.insert(
            0,
            Problem::NewerThanFiles {
                versions: newer,
                newest_file: newest_file.map(|v| v.to_string()),
            },
        );
    }
    problems
}

/// Computes the status of every migration and the problems with the history.
pub fn status(migrations: &[Migration], state: &State, dialect: Dialect) -> Status {
    let mut problems = missing_or_newer(migrations, state);
    let mut entries = Vec::new();
    let mut schema_version = None;
    for m in migrations {
        let key = m.version.as_str();
        let applied = state.applied_of(key);
        let standing = if let Some(d) = state.dirty_of(key) {
            if let Err(why) = resume_point(m, d, dialect) {
                problems.push(dirty_problem(d, why));
            }
            Standing::Dirty
        } else if let Some(a) = applied {
            match &a.checksum {
                Some(c) if *c != m.checksum && m.is_repeatable() => Standing::Outdated,
                // A baseline on a database that applied what it replaces.
                Some(c) if squashed_by(m, key, c, state) => Standing::Applied,
                // … or applied V, but not every one before it.
                Some(c) if *c != m.checksum && partly_squashed(m, state).is_some() => {
                    problems.extend(partly_squashed(m, state));
                    Standing::Diverged
                }
                Some(c) if *c != m.checksum => {
                    problems.push(Problem::ChecksumMismatch {
                        version: key.to_string(),
                        path: m.up.path.clone(),
                        recorded: c.clone(),
                        found: m.checksum.clone(),
                    });
                    Standing::Diverged
                }
                _ => match (&a.lenses, &m.lenses, &m.meta.documents) {
                    // Compared only where both sides know it: a database applied by an
                    // older build, or a program without the collection, is not accused.
                    (Some(r), Some(f), Some(d)) if r != f => {
                        problems.push(Problem::LensesChanged {
                            version: key.to_string(),
                            collection: d.collection.clone(),
                            recorded: r.clone(),
                            found: f.clone(),
                        });
                        Standing::Diverged
                    }
                    _ => Standing::Applied,
                },
            }
        } else if baselined(m, state) {
            Standing::Baselined
        } else if let Some(p) = partly_squashed(m, state) {
            problems.push(p);
            Standing::Pending
        } else {
            Standing::Pending
        };
        if matches!(
            standing,
            Standing::Applied | Standing::Diverged | Standing::Outdated
        ) {
            if let Some(sv) = applied.and_then(|a| a.schema_version.clone()) {
                schema_version = Some(sv);
            }
        }
        entries.push(StatusEntry {
            version: key.to_string(),
            name: m.name.clone(),
            standing,
            applied_at: applied.map(|a| a.applied_at.clone()),
            schema_version: m.meta.schema_version.as_ref().map(|v| v.to_string()),
        });
    }
    // Dirty migrations whose file is gone.
    for d in state.dirty.values() {
        if find(migrations, &d.version).is_none() {
            problems.push(dirty_problem(d, "its file is missing".into()));
        }
    }
    Status {
        migrations: entries,
        problems,
        schema_version,
    }
}

fn dirty_problem(d: &crate::history::DirtyMigration, why: String) -> Problem {
    Problem::Dirty {
        version: d.version.clone(),
        applied: d.statements_applied,
        total: d.statements_total,
        direction: d.direction,
        error: d.error.clone(),
        why,
    }
}

/// The statement index a dirty migration resumes from, if its already-applied
/// statements are unchanged in the file.
pub fn resume_point(
    m: &Migration,
    d: &crate::history::DirtyMigration,
    dialect: Dialect,
) -> Result<usize, String> {
    let done = usize::try_from(d.statements_applied).unwrap_or(0);
    if done == 0 {
        return Ok(0);
    }
    // An online migration's statements are compiled from its ops and kept by
    // the engine crate, which resumes the same statements.
    if m.meta.kind == Some(crate::meta::Kind::Online) {
        return Ok(done);
    }
    let script = match d.direction {
        Direction::Up => &m.up,
        Direction::Down => m.down.as_ref().ok_or("its down script is missing")?,
    };
    let Split::Statements(stmts) = split(&script.sql, dialect) else {
        return Err("the script can no longer be split into statements".into());
    };
    if stmts.len() < done {
        return Err(format!(
            "the script now has {} statements, fewer than the {done} already applied",
            stmts.len()
        ));
    }
    if d.statement_hashes.len() < done {
        return Err(format!(
            "its history row holds {} statement hashes for the {done} statements applied (was it written by hand?), so what ran cannot be compared with the file",
            d.statement_hashes.len()
        ));
    }
    for (i, s) in stmts.iter().take(done).enumerate() {
        if statement_hash(&s.sql) != d.statement_hashes[i] {
            return Err(format!(
                "statement {} (line {}) already ran but has changed since",
                i + 1,
                s.line
            ));
        }
    }
    Ok(done)
}

/// Plans `opts.target` over `migrations` (in run order) and `state`.
///
/// Fails with [`Error::Validation`] listing every problem that blocks the run,
/// so nothing is touched when the history and the files disagree.
pub fn plan(migrations: &[Migration], state: &State, opts: &PlanOptions) -> Result<Plan, Error> {
    let st = status(migrations, state, opts.dialect);
    let blocking: Vec<Problem> = st
        .problems
        .iter()
        .filter(|p| !(opts.ignore_missing && matches!(p, Problem::Missing { .. })))
        .cloned()
        .collect();
    let mut problems = blocking;
    let direction = match opts.target {
        Target::Up { .. } => Direction::Up,
        Target::Down { .. } => Direction::Down,
    };
    for d in state.dirty.values() {
        if d.direction != direction
            && !problems
                .iter()
                .any(|p| matches!(p, Problem::Dirty { version, .. } if *version == d.version))
        {
            problems.push(dirty_problem(
                d,
                format!(
                    "it was running {}; run `instar {}` to resume it",
                    d.direction.as_str(),
                    d.direction.as_str()
                ),
            ));
        }
    }
    if !problems.is_empty() {
        return Err(Error::Validation { problems });
    }
    match &opts.target {
        Target::Up { to } => plan_up(migrations, state, opts, to.as_deref()),
        Target::Down { to, steps } => plan_down(migrations, state, opts, to.as_deref(), *steps),
    }
}

fn plan_up(
    migrations: &[Migration],
    state: &State,
    opts: &PlanOptions,
    to: Option<&str>,
) -> Result<Plan, Error> {
    let limit = to
        .map(|t| {
            find(migrations, t)
                .map(|(_, m)| m.version.clone())
                .ok_or_else(|| Error::UnknownVersion(t.into()))
        })
        .transpose()?;
    let newest_applied = migrations
        .iter()
        .filter(|m| !m.is_repeatable() && state.applied_of(m.version.as_str()).is_some())
        .map(|m| &m.version)
        .max();
    let mut steps = Vec::new();
    let mut problems = Vec::new();
    for (index, m) in migrations.iter().enumerate() {
        let key = m.version.as_str();
        if m.is_repeatable() {
            let current = state.applied_of(key).and_then(|a| a.checksum.as_deref())
                == Some(m.checksum.as_str());
            if limit.is_none() && !current {
                steps.push(step(index, m, Direction::Up, 0, None));
            }
            continue;
        }
        if limit.as_ref().is_some_and(|l| m.version > *l) {
            continue;
        }
        if let Some(d) = state.dirty_of(key) {
            let from = resume_point(m, d, opts.dialect).map_err(|why| Error::Validation {
                problems: vec![dirty_problem(d, why)],
            })?;
            let mut s = step(index, m, Direction::Up, from, Some(d.row_id));
            s.in_flight = d.in_flight == Some(from as i64);
            steps.push(s);
            continue;
        }
        if state.applied_of(key).is_some() || baselined(m, state) {
            continue;
        }
        if let Some(newest) = newest_applied {
            if m.version < *newest && !opts.allow_out_of_order {
                problems.push(Problem::OutOfOrder {
                    version: key.to_string(),
                    path: m.up.path.clone(),
                    newest_applied: newest.to_string(),
                });
                continue;
            }
        }
        steps.push(step(index, m, Direction::Up, 0, None));
    }
    if !problems.is_empty() {
        return Err(Error::Validation { problems });
    }
    Ok(Plan { steps })
}

fn plan_down(
    migrations: &[Migration],
    state: &State,
    opts: &PlanOptions,
    to: Option<&str>,
    steps_wanted: Option<usize>,
) -> Result<Plan, Error> {
    // `--to 0` (with no migration numbered 0) reverts everything, as in
    // golang-migrate and Flyway: nothing stays applied.
    let everything = |t: &str| !t.is_empty() && t.bytes().all(|b| b == b'0');
    let stop = to
        .filter(|t| !(everything(t) && find(migrations, t).is_none()))
        .map(|t| {
            find(migrations, t)
                .map(|(i, _)| i)
                .ok_or_else(|| Error::UnknownVersion(t.into()))
        })
        .transpose()?;
    let max = if to.is_some() {
        usize::MAX
    } else {
        steps_wanted.unwrap_or(1)
    };
    let mut steps = Vec::new();
    for (index, m) in migrations.iter().enumerate().rev() {
        if steps.len() >= max {
            break;
        }
        if m.is_repeatable() || stop.is_some_and(|s| index <= s) {
            continue;
        }
        let key = m.version.as_str();
        let dirty = state.dirty_of(key);
        if state.applied_of(key).is_none() && dirty.is_none() {
            continue;
        }
        // A documents migration goes back through its lenses: no script needed.
        if m.down.is_none() && m.meta.kind != Some(crate::meta::Kind::Documents) {
            return Err(Error::Irreversible {
                version: key.to_string(),
                path: m.up.path.clone(),
            });
        }
        match dirty {
            Some(d) => {
                let from = resume_point(m, d, opts.dialect).map_err(|why| Error::Validation {
                    problems: vec![dirty_problem(d, why)],
                })?;
                let mut s = step(index, m, Direction::Down, from, Some(d.row_id));
                s.in_flight = d.in_flight == Some(from as i64);
                steps.push(s);
            }
            None => steps.push(step(index, m, Direction::Down, 0, None)),
        }
    }
    Ok(Plan { steps })
}

fn step(
    index: usize,
    m: &Migration,
    direction: Direction,
    resume_from: usize,
    resume_row: Option<i64>,
) -> Step {
    Step {
        index,
        version: m.version.to_string(),
        direction,
        resume_from,
        resume_row,
        in_flight: false,
    }
}
