//! Where a project's migrations come from: a folder, a set of files in memory,
//! or files embedded in the application binary at compile time. All three are
//! read by the same code (`instar_core::source::read_tree`).

use std::path::{Path, PathBuf};

use instar_core::files::{Disk, MemoryFiles};
use instar_core::files_cache::CachedDisk;
use instar_core::{Layout, Source};

use crate::Error;

/// Reads a project's migrations. Called at the start of every operation, so a
/// folder's edits are seen by the next one.
pub trait MigrationSource: Send + Sync {
    /// The migrations, in run order.
    fn load(&self) -> Result<Source, Error>;
    /// Where they come from, for messages.
    fn describe(&self) -> String;
}

/// A migrations folder on disk.
#[derive(Debug, Clone)]
pub struct FolderSource {
    /// The folder.
    pub dir: PathBuf,
    /// A layout to use instead of detecting it.
    pub layout: Option<Layout>,
    /// The file-name pattern of a declared layout (`[migrations] pattern`).
    pub pattern: Option<instar_core::layouts::Pattern>,
    /// A folder where what was read is kept (see [`CachedDisk`]), so that an
    /// unchanged folder costs a `stat` per entry; `None` reads every file.
    pub cache: Option<PathBuf>,
}

impl MigrationSource for FolderSource {
    fn load(&self) -> Result<Source, Error> {
        if !self.dir.is_dir() {
            return Err(Error::Config(if self.dir.exists() {
                format!(
                    "{} is a file, not a migrations folder; point --migrations (or [migrations] dir) at the folder",
                    self.dir.display()
                )
            } else {
                format!(
                    "migrations folder {} not found; create it with `instar init`, or point --migrations at yours",
                    self.dir.display()
                )
            }));
        }
        let reading = instar_core::source::Reading {
            layout: self.layout,
            pattern: self.pattern.clone(),
        };
        let Some(cache) = &self.cache else {
            return Ok(instar_core::source::read_tree_with(
                &Disk, &self.dir, &reading,
            )?);
        };
        let files = CachedDisk::for_folder(cache, &self.dir);
        let source = instar_core::source::read_tree_with(&files, &self.dir, &reading)?;
        files.save();
        Ok(source)
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

/// Migrations held in memory (tests, generated migrations, an HTTP upload).
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    files: MemoryFiles,
    layout: Option<Layout>,
}

impl MemorySource {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file, by its path inside the migrations folder (`0001_init/up.sql`).
    pub fn with(mut self, path: impl AsRef<Path>, text: impl Into<Vec<u8>>) -> Self {
        self.files.insert(path, text);
        self
    }

    /// Uses `layout` instead of detecting it.
    pub fn with_layout(mut self, layout: Layout) -> Self {
        self.layout = Some(layout);
        self
    }
}

impl MigrationSource for MemorySource {
    fn load(&self) -> Result<Source, Error> {
        Ok(instar_core::source::read_tree(
            &self.files,
            Path::new(""),
            self.layout,
        )?)
    }

    fn describe(&self) -> String {
        "migrations in memory".into()
    }
}

/// Migrations embedded in the binary by [`crate::embed_migrations!`].
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedMigrations {
    folder: &'static str,
    files: &'static [(&'static str, &'static [u8])],
}

impl EmbeddedMigrations {
    /// What `embed_migrations!` expands to: the folder's name and its files.
    pub const fn new(
        folder: &'static str,
        files: &'static [(&'static str, &'static [u8])],
    ) -> Self {
        EmbeddedMigrations { folder, files }
    }

    /// The embedded files, by path inside the folder.
    pub fn files(&self) -> &'static [(&'static str, &'static [u8])] {
        self.files
    }
}

impl MigrationSource for EmbeddedMigrations {
    fn load(&self) -> Result<Source, Error> {
        let mut files = MemoryFiles::new();
        for (path, bytes) in self.files {
            files.insert(path, *bytes);
        }
        Ok(instar_core::source::read_tree(&files, Path::new(""), None)?)
    }

    fn describe(&self) -> String {
        format!("{} (embedded)", self.folder)
    }
}

/// Migrations read once and kept: every tenant of a fleet operation runs
/// the same files (an edit during a rollout cannot split it between two
/// releases), and the folder is read once for all of them.
pub(crate) struct Pinned {
    pub(crate) source: Source,
    pub(crate) from: String,
}

impl MigrationSource for Pinned {
    fn load(&self) -> Result<Source, Error> {
        Ok(self.source.clone())
    }

    fn describe(&self) -> String {
        self.from.clone()
    }
}
