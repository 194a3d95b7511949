//! Integration tests of instar-db: one conformance suite, run on every engine.
mod conformance;
mod harness;
