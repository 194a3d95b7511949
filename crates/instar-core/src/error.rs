//! The core error type.

use std::path::PathBuf;

/// Everything that can go wrong while reading migrations or planning a run.
///
/// Each variant names the file or version it is about, so a message can say
/// what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or folder could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A script is not valid UTF-8.
    #[error("{path}:{line}: not valid UTF-8 (first bad byte at offset {offset}); save the file as UTF-8")]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// The 1-based line holding the first invalid sequence.
        line: usize,
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// A file looks like a migration but its name cannot be parsed.
    #[error("{path}: malformed migration name: {reason}")]
    MalformedName {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `migration.toml` (or diesel's `metadata.toml`) is invalid.
    #[error("{path}: {message}")]
    BadMetadata {
        /// The metadata file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A data migration is not well formed (no `[data]`, no `{batch}`, several statements …).
    #[error("{path}: data migration: {reason}")]
    BadDataMigration {
        /// The script or metadata file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A string, quoted identifier, comment or dollar quote in a script is never closed.
    #[error("{}:{line}: unterminated {what} (it starts on line {line} and is never closed); close it, or nothing after it would run", path.display())]
    Unterminated {
        /// The script.
        path: PathBuf,
        /// The line it starts on.
        line: usize,
        /// What is open.
        what: String,
    },
    /// A script holds a NUL byte (no SQL does; a binary or corrupted file).
    #[error("{}:{line}: the file holds a NUL byte (is it a binary or corrupted file?); remove it", path.display())]
    NulByte {
        /// The script.
        path: PathBuf,
        /// The line it is on.
        line: usize,
    },
    /// Two migrations share a version.
    #[error("duplicate version {version}: {first} and {second}")]
    DuplicateVersion {
        /// The version.
        version: String,
        /// The first file with it.
        first: PathBuf,
        /// The second file with it.
        second: PathBuf,
    },
    /// A folder mixes migration layouts whose orders disagree.
    #[error("{dir}: mixes {a} and {b} migrations; keep one layout per folder")]
    MixedLayouts {
        /// The migrations folder.
        dir: PathBuf,
        /// One layout found.
        a: String,
        /// Another layout found.
        b: String,
    },
    /// `depends_on` names a version that has no file.
    #[error("migration {version} depends on {missing}, which has no migration file")]
    MissingDependency {
        /// The migration that declares the dependency.
        version: String,
        /// The version it depends on.
        missing: String,
    },
    /// `depends_on` forms a cycle.
    #[error("dependency cycle among migrations: {}", cycle.join(" -> "))]
    DependencyCycle {
        /// The versions on the cycle.
        cycle: Vec<String>,
    },
    /// A reversal was asked for a migration without a reverse script.
    #[error("migration {version} ({path}) has no down script; it cannot be reverted")]
    Irreversible {
        /// The version.
        version: String,
        /// Its forward script.
        path: PathBuf,
    },
    /// A version given on the command line matches no migration.
    #[error("no migration has version {0}")]
    UnknownVersion(String),
    /// The history disagrees with the files; see [`crate::plan::Problem`].
    #[error("{}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Validation {
        /// Every problem found.
        problems: Vec<crate::plan::Problem>,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
