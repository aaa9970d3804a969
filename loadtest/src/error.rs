//! The crate's error type.

/// Errors of a load-test run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad options or set-up (catalog, namespace).
    #[error("setup: {0}")]
    Setup(String),
    /// NATS or JetStream.
    #[error("nats: {0}")]
    Nats(String),
    /// Ingest failed.
    #[error(transparent)]
    Ingest(#[from] meterline_ingest::Error),
    /// ClickHouse or the spend refresh failed.
    #[error(transparent)]
    Invoicer(#[from] meterline_invoicer::Error),
    /// Schemas (ClickHouse migrations).
    #[error(transparent)]
    Schemas(#[from] meterline_schemas::Error),
    /// Files (reports, plots).
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
