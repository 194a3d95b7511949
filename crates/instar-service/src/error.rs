//! The service's error type.

/// Everything an operation of the service can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database, the migrations or the plan (see [`instar_db::Error`]).
    #[error(transparent)]
    Db(#[from] instar_db::Error),
    /// Settings or the migrations folder cannot be used.
    #[error("{0}")]
    Config(String),
    /// A key-value store or its records (see [`instar_kv::Error`]).
    #[error(transparent)]
    Kv(instar_kv::Error),
    /// A Cloud Spanner database (see [`instar_spanner::Error`]).
    #[error(transparent)]
    Spanner(instar_spanner::Error),
}

impl From<instar_core::Error> for Error {
    fn from(e: instar_core::Error) -> Self {
        Error::Db(instar_db::Error::Core(e))
    }
}

impl Error {
    /// The database error behind this one, if it is one.
    pub fn as_db(&self) -> Option<&instar_db::Error> {
        match self {
            Error::Db(e) => Some(e),
            Error::Config(_) | Error::Kv(_) | Error::Spanner(_) => None,
        }
    }
}
