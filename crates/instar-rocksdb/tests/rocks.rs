//! The conformance behaviours on real RocksDB, and what is RocksDB's own:
//! the pinned table format, paths that are not a store, the LOCK file.

use std::path::Path;
use std::sync::Arc;

use instar_kv::{KvStore, StoreErrorKind};
use instar_rocksdb::{RocksOptions, RocksStore};

fn rocks(dir: &Path) -> Arc<dyn KvStore> {
    Arc::new(RocksStore::open(dir, RocksOptions::default()).expect("opens"))
}

instar_kv::kv_conformance!(rocks);

/// The `format_version` RocksDB recorded in the store's newest OPTIONS file.
fn recorded_format_version(dir: &Path) -> String {
    let mut options: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("OPTIONS-"))
        .map(|e| e.path())
        .collect();
    options.sort();
    let text = std::fs::read_to_string(options.last().expect("an OPTIONS file")).unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("format_version="))
        .expect("format_version in OPTIONS")
        .to_string()
}

#[test]
fn tables_are_written_with_the_pinned_format_version() {
    let dir = tempfile::tempdir().unwrap();
    let s = RocksStore::open(dir.path().join("a"), RocksOptions::default()).unwrap();
    s.put(b"k", b"v").unwrap();
    assert_eq!(recorded_format_version(&dir.path().join("a")), "5");
    let s6 = RocksStore::open(
        dir.path().join("b"),
        RocksOptions {
            format_version: 6,
            ..Default::default()
        },
    )
    .unwrap();
    s6.put(b"k", b"v").unwrap();
    assert_eq!(recorded_format_version(&dir.path().join("b")), "6");
    let e = RocksStore::open(
        dir.path().join("c"),
        RocksOptions {
            format_version: 9,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("format_version 9"), "{e}");
    drop((s, s6));
}

#[test]
fn what_is_not_a_store_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("mine");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("notes.txt"), "x").unwrap();
    let e = RocksStore::open(&folder, RocksOptions::default()).unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::NotAStore, "{e}");
    assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 1);
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    assert_eq!(
        RocksStore::open(&file, RocksOptions::default())
            .unwrap_err()
            .kind,
        StoreErrorKind::NotAStore
    );
    let missing = dir.path().join("missing");
    let e = RocksStore::open(
        &missing,
        RocksOptions {
            create: false,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::NotAStore, "{e}");
    assert!(!missing.exists());
}

#[test]
fn a_second_open_is_refused_while_the_first_holds_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let first = RocksStore::open(dir.path(), RocksOptions::default()).unwrap();
    let e = RocksStore::open(dir.path(), RocksOptions::default()).unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Locked, "{e}");
    assert!(e.to_string().contains("is open in another process"), "{e}");
    drop(first);
    RocksStore::open(dir.path(), RocksOptions::default()).unwrap();
}
