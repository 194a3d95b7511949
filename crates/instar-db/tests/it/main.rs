//! Integration tests of instar-db: one conformance suite, run on every engine.
#![allow(clippy::result_large_err)]
#[macro_use]
mod harness;
mod conformance;
mod defects;
mod sqlite_owners;
mod upgrade;
