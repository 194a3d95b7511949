//! CLI tests: the built `instar` binary in temp dirs, against every engine.
#![allow(clippy::result_large_err)]

// The database harness is shared with instar-db's suite, not copied.
#[path = "../../../instar-db/tests/it/harness.rs"]
#[allow(dead_code)]
#[macro_use]
mod harness;

mod basics;
mod doors;
mod faults;
mod kills;
mod secrets;
