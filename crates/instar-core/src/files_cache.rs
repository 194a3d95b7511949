//! [`CachedDisk`]: the file system, with what the last read found kept in one
//! cache file, so that reading an unchanged migrations folder costs one `stat`
//! per folder and per file instead of a listing and a read of each.
//!
//! A cached listing or file is used only when its `stat` key (device, inode,
//! size, modification and change times) is exactly as recorded, and when it
//! last changed at least [`RACY`] before the read that recorded it began: a
//! file written in the same clock tick as it was read could change again
//! without its key changing (git's "racy clean" problem). Anything else is read
//! from disk. The change time cannot be set by a program (`touch` sets the
//! modification time, and changes the change time), so an edit is always seen.
//!
//! The cache is an optimisation only: a cache that cannot be read, is from
//! another version, or fails its checksum is ignored, and one that cannot be
//! written is not written.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::files::{Disk, Files};

/// How long before a read began a file must have last changed to be trusted from the cache.
pub const RACY: Duration = Duration::from_secs(1);

const MAGIC: &[u8; 8] = b"INSTARC1";

/// Files larger than this are read from disk every time, not kept in the cache:
/// reading one costs little next to running it, and a dump-sized script would
/// otherwise be copied into memory and into the cache file on every run.
const LARGEST: usize = 256 * 1024;

/// What identifies a file's content without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Key {
    #[cfg(unix)]
    fn of(path: &Path) -> Option<Key> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(Key {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }

    #[cfg(not(unix))]
    fn of(_path: &Path) -> Option<Key> {
        None
    }

    /// Whether the file last changed at least [`RACY`] before `started` (ns since the epoch).
    fn settled(&self, started: i128) -> bool {
        let ns = |(s, n): (i64, i64)| i128::from(s) * 1_000_000_000 + i128::from(n);
        ns(self.mtime).max(ns(self.ctime)) + RACY.as_nanos() as i128 <= started
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Payload {
    List(Vec<(String, bool)>),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Entry {
    key: Key,
    payload: Payload,
}

/// The file system through a cache file: see the module documentation.
pub struct CachedDisk {
    file: PathBuf,
    /// When the read that wrote the loaded cache began, in ns since the epoch.
    old_started: i128,
    old: HashMap<Vec<u8>, Entry>,
    started: i128,
    /// What this read found: a new entry, or `None` where the old one held.
    new: Mutex<HashMap<Vec<u8>, Option<Entry>>>,
    missed: AtomicBool,
}

/// A path as the cache's map key: its bytes (hashing a `Path` walks its components).
fn key_of(path: &Path) -> &[u8] {
    path.as_os_str().as_encoded_bytes()
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

impl CachedDisk {
    /// Reads through the cache kept in `file` (which need not exist yet).
    pub fn open(file: impl Into<PathBuf>) -> CachedDisk {
        let file = file.into();
        let (old_started, old) = std::fs::read(&file)
            .ok()
            .and_then(|bytes| decode(&bytes))
            .unwrap_or_default();
        CachedDisk {
            file,
            old_started,
            old,
            started: now_ns(),
            new: Mutex::new(HashMap::new()),
            missed: AtomicBool::new(false),
        }
    }

    /// Reads folder `dir` through its cache file in `cache_dir`: one file per
    /// folder, named by a digest of the folder's absolute path.
    pub fn for_folder(cache_dir: &Path, dir: &Path) -> CachedDisk {
        let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let sum = Sha256::digest(abs.to_string_lossy().as_bytes());
        let hex: String = sum[..8].iter().map(|b| format!("{b:02x}")).collect();
        CachedDisk::open(cache_dir.join(format!("source-{hex}")))
    }

    /// The cached payload for `path`, when its key is unchanged and settled.
    fn hit(&self, path: &Path, key: Option<Key>) -> Option<Payload> {
        let key = key?;
        let e = self.old.get(key_of(path))?;
        (e.key == key && key.settled(self.old_started)).then(|| e.payload.clone())
    }

    /// Records that the old entry for `path` held.
    fn held(&self, path: &Path) {
        if let Ok(mut new) = self.new.lock() {
            new.insert(key_of(path).to_vec(), None);
        }
    }

    /// Records what was read from disk for `path`.
    fn found(&self, path: &Path, key: Option<Key>, payload: Payload) {
        self.missed.store(true, Ordering::Relaxed);
        if let (Some(key), Ok(mut new)) = (key, self.new.lock()) {
            new.insert(key_of(path).to_vec(), Some(Entry { key, payload }));
        }
    }

    /// Writes the cache when this read found anything the old cache did not
    /// hold (beside it, then renamed over it, so a reader never sees half a file).
    /// Returns whether it wrote.
    pub fn save(&self) -> bool {
        let Ok(new) = self.new.lock() else {
            return false;
        };
        let same_set = new.len() == self.old.len() && new.keys().all(|k| self.old.contains_key(k));
        if !self.missed.load(Ordering::Relaxed) && same_set {
            return false;
        }
        let entries = new
            .iter()
            .filter_map(|(path, e)| Some((path, e.as_ref().or_else(|| self.old.get(path))?)));
        let bytes = encode(self.started, entries);
        write_beside(&self.file, &bytes).is_ok()
    }
}

impl CachedDisk {
    /// The payload for `path` from the cache when it holds, else from `read_disk`.
    /// The key is taken before reading: a change during the read changes it.
    fn through(
        &self,
        path: &Path,
        read_disk: impl FnOnce() -> io::Result<Payload>,
    ) -> io::Result<Payload> {
        let key = Key::of(path);
        if let Some(p) = self.hit(path, key) {
            self.held(path);
            return Ok(p);
        }
        let p = read_disk()?;
        if !matches!(&p, Payload::Bytes(b) if b.len() > LARGEST) {
            self.found(path, key, p.clone());
        }
        Ok(p)
    }
}

impl Files for CachedDisk {
    fn list(&self, dir: &Path) -> io::Result<Vec<(String, bool)>> {
        match self.through(dir, || Disk.list(dir).map(Payload::List))? {
            Payload::List(l) => Ok(l),
            Payload::Bytes(_) => Disk.list(dir),
        }
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        match self.through(path, || Disk.read(path).map(Payload::Bytes))? {
            Payload::Bytes(b) => Ok(b),
            Payload::List(_) => Disk.read(path),
        }
    }

    fn is_file(&self, path: &Path) -> bool {
        Disk.is_file(path)
    }
}

fn write_beside(file: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    // The folder holding the cache keeps itself out of version control.
    if let Some(state) = dir.parent() {
        let ignore = state.join(".gitignore");
        if state.file_name().is_some_and(|n| n == ".instar") && !ignore.exists() {
            let _ = std::fs::write(&ignore, "# Instar's state: backups and caches\n*\n");
        }
    }
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, file).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

// The format: MAGIC, started (i128 LE), entry count (u64), entries, then the
// SHA-256 of everything before it. An entry: path, key, payload tag and payload.

fn put_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u64(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn encode<'a>(started: i128, entries: impl Iterator<Item = (&'a Vec<u8>, &'a Entry)>) -> Vec<u8> {
    let entries: Vec<_> = entries.collect();
    let mut out = Vec::with_capacity(64 * 1024);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&started.to_le_bytes());
    put_u64(&mut out, entries.len() as u64);
    for (path, e) in entries {
        put_bytes(&mut out, path);
        let k = &e.key;
        for n in [k.dev, k.ino, k.size] {
            put_u64(&mut out, n);
        }
        for n in [k.mtime.0, k.mtime.1, k.ctime.0, k.ctime.1] {
            put_u64(&mut out, n as u64);
        }
        match &e.payload {
            Payload::Bytes(b) => {
                out.push(0);
                put_bytes(&mut out, b);
            }
            Payload::List(l) => {
                out.push(1);
                put_u64(&mut out, l.len() as u64);
                for (name, is_dir) in l {
                    put_bytes(&mut out, name.as_bytes());
                    out.push(u8::from(*is_dir));
                }
            }
        }
    }
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u64()?).ok()?;
        self.take(n)
    }
    fn text(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
}

fn decode(all: &[u8]) -> Option<(i128, HashMap<Vec<u8>, Entry>)> {
    let body_len = all.len().checked_sub(32)?;
    let (body, sum) = all.split_at(body_len);
    if Sha256::digest(body).as_slice() != sum || !body.starts_with(MAGIC) {
        return None;
    }
    let mut r = Reader(&body[MAGIC.len()..]);
    let started = i128::from_le_bytes(r.take(16)?.try_into().ok()?);
    let count = r.u64()?;
    let mut entries = HashMap::with_capacity(usize::try_from(count).ok()?.min(1 << 20));
    for _ in 0..count {
        let path = r.bytes()?.to_vec();
        let (dev, ino, size) = (r.u64()?, r.u64()?, r.u64()?);
        let mut t = [0i64; 4];
        for v in &mut t {
            *v = r.u64()? as i64;
        }
        let key = Key {
            dev,
            ino,
            size,
            mtime: (t[0], t[1]),
            ctime: (t[2], t[3]),
        };
        let payload = match r.u8()? {
            0 => Payload::Bytes(r.bytes()?.to_vec()),
            1 => {
                let n = r.u64()?;
                let mut l = Vec::new();
                for _ in 0..n {
                    let name = r.text()?;
                    l.push((name, r.u8()? == 1));
                }
                Payload::List(l)
            }
            _ => return None,
        };
        entries.insert(path, Entry { key, payload });
    }
    r.0.is_empty().then_some((started, entries))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn tree(dir: &Path) {
        std::fs::create_dir_all(dir.join("1_a")).unwrap();
        std::fs::write(dir.join("1_a/up.sql"), "SELECT 1;").unwrap();
    }

    /// Sets a file's times far in the past, as if written long before the read.
    fn age(path: &Path) {
        let old = SystemTime::now() - Duration::from_secs(3600);
        let f = std::fs::File::options().write(true).open(path);
        if let Ok(f) = f {
            f.set_modified(old).unwrap();
        }
    }

    #[test]
    fn a_fresh_file_is_read_again_and_a_settled_one_comes_from_the_cache() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("m");
        tree(&root);
        let cache = t.path().join(".instar/cache/s");
        let up = root.join("1_a/up.sql");
        let c = CachedDisk::open(&cache);
        assert_eq!(c.read(&up).unwrap(), b"SELECT 1;");
        assert!(c.save());
        assert!(t.path().join(".instar/.gitignore").is_file());
        // Written just now: its change time is too recent to trust.
        let c = CachedDisk::open(&cache);
        assert!(c.hit(&up, Key::of(&up)).is_none());
        // A cache whose read began well after the last change is trusted.
        let mut c = CachedDisk::open(&cache);
        c.old_started += 5_000_000_000;
        assert!(c.hit(&up, Key::of(&up)).is_some());
        // Rewriting the file (same size) changes its key: read from disk.
        std::fs::write(&up, "SELECT 2;").unwrap();
        age(&up);
        assert!(c.hit(&up, Key::of(&up)).is_none());
        assert_eq!(c.read(&up).unwrap(), b"SELECT 2;");
    }

    /// A migrations tree in a temp dir and a cache of its listing, saved.
    fn listed(t: &tempfile::TempDir) -> (PathBuf, PathBuf, CachedDisk) {
        let root = t.path().join("m");
        tree(&root);
        let cache = t.path().join("c");
        let c = CachedDisk::open(&cache);
        c.list(&root).unwrap();
        (root, cache, c)
    }

    #[test]
    fn a_damaged_cache_is_ignored() {
        let t = tempfile::tempdir().unwrap();
        let (root, cache, c) = listed(&t);
        c.read(&root.join("1_a/up.sql")).unwrap();
        assert!(c.save());
        let mut bytes = std::fs::read(&cache).unwrap();
        assert_eq!(CachedDisk::open(&cache).old.len(), 2);
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&cache, &bytes).unwrap();
        assert!(CachedDisk::open(&cache).old.is_empty());
        std::fs::write(&cache, b"short").unwrap();
        assert!(CachedDisk::open(&cache).old.is_empty());
    }

    #[test]
    fn nothing_new_writes_nothing() {
        let t = tempfile::tempdir().unwrap();
        let (root, cache, c) = listed(&t);
        assert!(c.save());
        let mut c = CachedDisk::open(&cache);
        c.old_started += 5_000_000_000;
        c.list(&root).unwrap();
        assert!(!c.save(), "an unchanged folder rewrites nothing");
    }
}
