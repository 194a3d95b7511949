//! The store's own bookkeeping lives under one reserved prefix, so a store
//! carries its history, checkpoints and schema version with it:
//!
//! | key | value (JSON) |
//! |---|---|
//! | `\0instar/version` | the store's schema version `{"version", "at"}` |
//! | `\0instar/history/<20-digit seq>` | one [`crate::HistoryEntry`] |
//! | `\0instar/run` | the run in progress `{"pid", "host", "started"}` |
//! | `\0instar/checkpoint/<step>` | where a step's walk is `{"after", "done", "total"}` |
//! | `\0instar/complements/<collection>/<key>` | what a lens could not keep in a record |
//! | `\0instar/skipped/<step>/<key>` | a record left as it was (`on_error = "skip"`) and why |
//!
//! Application keys never start with a NUL byte in practice; a collection
//! whose prefix is empty still never sees these keys.

/// The prefix of every key Instar writes for itself.
pub const RESERVED: &[u8] = b"\x00instar/";

fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = RESERVED.to_vec();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(b'/');
        }
        k.extend_from_slice(p);
    }
    k
}

/// The store's schema version.
pub fn version() -> Vec<u8> {
    key(&[b"version"])
}

/// The prefix of history entries.
pub fn history_prefix() -> Vec<u8> {
    key(&[b"history/"])
}

/// History entry number `seq`.
pub fn history(seq: u64) -> Vec<u8> {
    key(&[format!("history/{seq:020}").as_bytes()])
}

/// The run marker (the lock's record).
pub fn run() -> Vec<u8> {
    key(&[b"run"])
}

/// The prefix of checkpoints.
pub fn checkpoint_prefix() -> Vec<u8> {
    key(&[b"checkpoint/"])
}

/// A step's checkpoint.
pub fn checkpoint(step: &str) -> Vec<u8> {
    key(&[b"checkpoint", step.as_bytes()])
}

/// The complements of a record.
pub fn complements(collection: &str, record: &[u8]) -> Vec<u8> {
    key(&[b"complements", collection.as_bytes(), record])
}

/// The prefix of a step's skipped records.
pub fn skipped_prefix(step: &str) -> Vec<u8> {
    let mut k = key(&[b"skipped", step.as_bytes()]);
    k.push(b'/');
    k
}

/// A record a step skipped.
pub fn skipped(step: &str, record: &[u8]) -> Vec<u8> {
    key(&[b"skipped", step.as_bytes(), record])
}

/// A key for messages: its text where it is UTF-8, escapes elsewhere.
pub fn show(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}
