//! Integration tests of instar-service: runs as handles on a multi-threaded
//! runtime, event streams, cancellation, and every migration source.
#![allow(clippy::result_large_err)]

// The database harness is shared with instar-db's suite, not copied.
#[path = "../../../instar-db/tests/it/harness.rs"]
#[allow(dead_code)]
#[macro_use]
mod harness;

mod runs;
mod sources;
mod tenants;
