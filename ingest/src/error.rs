//! The error type of the `ingest` crate.

/// Errors raised by ingest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// NATS or JetStream failure.
    #[error("nats: {0}")]
    Nats(String),
    /// The ledger store failed (write, fsync, list).
    #[error("ledger: {0}")]
    Ledger(String),
    /// A ledger segment could not be read back.
    #[error("ledger segment {path}: {message}")]
    Segment { path: String, message: String },
    /// Arrow or Parquet encoding failure.
    #[error("encoding: {0}")]
    Encoding(String),
    /// Shared-type failure.
    #[error(transparent)]
    Schemas(#[from] meterline_schemas::Error),
    /// A setting or option is invalid.
    #[error("{0}")]
    Config(String),
    /// Reading an input file failed.
    #[error("{path}: {message}")]
    Input { path: String, message: String },
}

impl Error {
    /// Whether retrying later may succeed. Decides between retrying a batch (transient: nothing
    /// is acked, messages stay pending) and stopping (permanent).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Nats(_) | Error::Ledger(_) => true,
            Error::Schemas(e) => e.is_transient(),
            Error::Segment { .. } | Error::Encoding(_) | Error::Input { .. } | Error::Config(_) => false,
        }
    }

    pub(crate) fn nats<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> Error + '_ {
        move |e| Error::Nats(format!("{what}: {e}"))
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
