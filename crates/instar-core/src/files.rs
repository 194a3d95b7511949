//! Where migration files are read from: the file system, or a set of files held
//! in memory (built by hand, or embedded in a binary at compile time).
//!
//! Layout detection and parsing in [`crate::source`] go through [`Files`] only,
//! so every source of migrations is read by the same code.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};

/// A tree of files that migrations are read from.
pub trait Files: Sync {
    /// The entries of folder `dir`: each one's name and whether it is a folder.
    fn list(&self, dir: &Path) -> io::Result<Vec<(String, bool)>>;
    /// The bytes of file `path`.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Whether `path` is a file.
    fn is_file(&self, path: &Path) -> bool;
}

/// The file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct Disk;

impl Files for Disk {
    fn list(&self, dir: &Path) -> io::Result<Vec<(String, bool)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            // d_type from the listing: no stat per entry on the hot path.
            let is_dir = match entry.file_type() {
                Ok(t) if t.is_symlink() => path.is_dir(),
                Ok(t) => t.is_dir(),
                Err(_) => path.is_dir(),
            };
            out.push((entry.file_name().to_string_lossy().into_owned(), is_dir));
        }
        Ok(out)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        use std::io::Read;
        // open + read, without the size stat std::fs::read makes: scripts are small.
        let mut bytes = Vec::new();
        std::fs::File::open(path)?.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    fn is_file(&self, path: &Path) -> bool {
        path.is_file()
    }
}

/// Files held in memory, by relative path (`0001_init/up.sql`); folders are
/// implied by the paths. Paths given to [`Files`] are relative to the same root.
#[derive(Debug, Clone, Default)]
pub struct MemoryFiles {
    files: BTreeMap<PathBuf, Vec<u8>>,
}

impl MemoryFiles {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the file at `path` (relative, `/`-separated).
    pub fn insert(&mut self, path: impl AsRef<Path>, bytes: impl Into<Vec<u8>>) -> &mut Self {
        self.files.insert(clean(path.as_ref()), bytes.into());
        self
    }

    /// Builder form of [`MemoryFiles::insert`].
    pub fn with(mut self, path: impl AsRef<Path>, bytes: impl Into<Vec<u8>>) -> Self {
        self.insert(path, bytes);
        self
    }
}

/// `path` without `.` parts, so `./a/b` and `a/b` are the same key.
fn clean(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

impl Files for MemoryFiles {
    fn list(&self, dir: &Path) -> io::Result<Vec<(String, bool)>> {
        let dir = clean(dir);
        let mut out: BTreeMap<String, bool> = BTreeMap::new();
        for path in self.files.keys() {
            let Ok(rest) = path.strip_prefix(&dir) else {
                continue;
            };
            let mut parts = rest.components();
            let Some(first) = parts.next() else { continue };
            let name = first.as_os_str().to_string_lossy().into_owned();
            let is_dir = parts.next().is_some();
            *out.entry(name).or_insert(false) |= is_dir;
        }
        if out.is_empty() && !dir.as_os_str().is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no such folder among the embedded files",
            ));
        }
        Ok(out.into_iter().collect())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.files.get(&clean(path)).cloned().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "no such file among the embedded files",
            )
        })
    }

    fn is_file(&self, path: &Path) -> bool {
        self.files.contains_key(&clean(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_files_imply_their_folders() {
        let f = MemoryFiles::new()
            .with("1_a/up.sql", "SELECT 1;")
            .with("1_a/down.sql", "SELECT 2;")
            .with("README", "x");
        let mut top = f.list(Path::new("")).unwrap();
        top.sort();
        assert_eq!(top, vec![("1_a".into(), true), ("README".into(), false)]);
        assert_eq!(f.list(Path::new("1_a")).unwrap().len(), 2);
        assert!(f.is_file(Path::new("./1_a/up.sql")));
        assert!(f.list(Path::new("2_b")).is_err());
    }
}
