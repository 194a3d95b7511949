//! The source cache (`.instar/cache`): an unchanged folder is not read again,
//! and no edit, however soon after a read, is ever missed.

use std::path::Path;
use std::time::Duration;

use crate::instar_in as instar;

fn cache_files(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir.join(".instar/cache"))
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// A project with two applied migrations whose files settled more than the
/// cache's margin ago, and a cache written after that.
fn settled_project() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    instar(d.path())
        .args(["init", ".", "--example", "--up"])
        .assert()
        .success();
    std::thread::sleep(instar_core::files_cache::RACY + Duration::from_millis(100));
    instar(d.path()).args(["validate"]).assert().code(0);
    d
}

#[test]
fn an_unchanged_folder_is_served_from_the_cache_without_rewriting_it() {
    let d = settled_project();
    let files = cache_files(d.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let written = std::fs::metadata(&files[0]).unwrap().modified().unwrap();
    for _ in 0..3 {
        instar(d.path()).args(["up"]).assert().success();
    }
    let now = std::fs::metadata(&files[0]).unwrap().modified().unwrap();
    assert_eq!(
        written, now,
        "a folder read wholly from the cache rewrites nothing"
    );
    let ignore = std::fs::read_to_string(d.path().join(".instar/.gitignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "*"), "{ignore}");
}

#[test]
fn every_same_size_edit_is_seen_however_soon_it_follows_a_read() {
    let d = settled_project();
    let up = d.path().join("migrations/0001_create_users/up.sql");
    let original = std::fs::read_to_string(&up).unwrap();
    // One character changed: the size stays, only the times and content differ.
    let edited = original.replacen("users", "usern", 1);
    assert_ne!(original, edited);
    assert_eq!(original.len(), edited.len());
    let trials: u64 = std::env::var("INSTAR_CACHE_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    for trial in 0..trials {
        // Read (and cache), edit at once or a moment later, read again.
        instar(d.path()).args(["validate"]).assert().code(0);
        std::thread::sleep(Duration::from_millis(trial * 7 % 40));
        std::fs::write(&up, &edited).unwrap();
        let out = instar(d.path()).args(["validate"]).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "trial {trial}: the edit was missed"
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("was edited after it was applied"));
        std::fs::write(&up, &original).unwrap();
        let out = instar(d.path()).args(["validate"]).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "trial {trial}: the file restored is seen as it is: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn new_folders_and_new_files_are_seen() {
    let d = settled_project();
    let m = d.path().join("migrations");
    std::fs::create_dir(m.join("0003_more")).unwrap();
    std::fs::write(m.join("0003_more/up.sql"), "CREATE TABLE more (id INT);\n").unwrap();
    let out = instar(d.path()).args(["plan"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0003"),
        "{out:?}"
    );
    instar(d.path()).args(["up"]).assert().success();
    // A down.sql added to an applied folder is read on the next command.
    std::fs::write(m.join("0003_more/down.sql"), "DROP TABLE more;\n").unwrap();
    let out = instar(d.path()).args(["plan", "--down"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("DROP TABLE more"), "{text}");
}

#[test]
fn a_damaged_or_unwritable_cache_changes_nothing_but_speed() {
    let d = settled_project();
    for f in cache_files(d.path()) {
        std::fs::write(&f, b"INSTARC1 not a cache").unwrap();
    }
    instar(d.path()).args(["validate"]).assert().code(0);
    // Config can turn it off: nothing is written then.
    std::fs::remove_dir_all(d.path().join(".instar/cache")).unwrap();
    let cfg = d.path().join("instar.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("cache = true", "cache = false")).unwrap();
    instar(d.path()).args(["validate"]).assert().code(0);
    assert!(cache_files(d.path()).is_empty());
}
