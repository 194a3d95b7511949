//! The pure core of Instar, a schema-migration engine.
//!
//! Nothing here talks to a database, spawns a thread or needs an async runtime.
//! How the pieces fit:
//!
//! - [`source::read_dir`] reads a migrations folder (Instar, diesel, sqlx or
//!   Flyway layout) into [`Migration`]s in run order, with their [`checksum`]s
//!   and [`meta`]data; [`version::Version`] orders them as their layout does.
//! - [`history`] models the `instar_history` event log and derives the
//!   database's [`history::State`] from it.
//! - [`plan`] decides, from migrations and state, what `up`/`down` would do and
//!   which [`plan::Problem`]s (edited, missing, dirty, newer database) block it.
//! - [`split`] cuts a script into statements per [`split::Dialect`], so runs can
//!   record progress per statement and errors can name a line.
//! - [`event`] is the typed stream of what a run does, for any front door to render.
#![deny(missing_docs)]

pub mod checksum;
pub mod duration;
pub mod effect;
mod error;
pub mod event;
pub mod files;
pub mod files_cache;
pub mod foreign;
pub mod history;
pub mod layouts;
pub mod lint;
pub mod meta;
pub mod objects;
pub mod online;
pub mod outside;
pub mod plan;
pub mod source;
mod source_popx;
pub mod split;
pub mod time;
pub mod version;

pub use error::Error;
pub use source::{Migration, Script, Source};
pub use split::Dialect;
pub use version::{Layout, Version};
