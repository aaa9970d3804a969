//! The error type of the `schemas` crate.

/// Errors raised while decoding, validating or persisting shared types.
///
/// Messages are short, lower-case and name the offending entry, field and value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A catalog file or entry is invalid; `path` names the entry and field.
    #[error("{path}: {message}")]
    Catalog { path: String, message: String },
    /// A catalog file could not be read or parsed.
    #[error("catalog file {file}: {message}")]
    CatalogFile { file: String, message: String },
    /// An immutable plan version was changed.
    #[error("plan {plan} version {version} is immutable and already stored with different content; publish a new version instead")]
    ImmutablePlanVersion { plan: String, version: u32 },
    /// An unknown ISO 4217 currency code.
    #[error("unknown currency {0:?}: not an active ISO 4217 code")]
    UnknownCurrency(String),
    /// A period label that is not `YYYY-MM`.
    #[error("invalid period {0:?}: expected YYYY-MM")]
    InvalidPeriod(String),
    /// A decimal that does not fit the ledger or ClickHouse column scale.
    #[error("decimal {value} does not fit {what}")]
    DecimalRange { value: String, what: &'static str },
    /// NATS or JetStream key-value failure.
    #[error("nats: {0}")]
    Nats(String),
    /// ClickHouse failure.
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] ::clickhouse::error::Error),
    /// A migration failed.
    #[error("migration {version} ({name}): {source}")]
    Migration { version: u32, name: String, source: ::clickhouse::error::Error },
    /// JSON (de)serialization of a stored entity failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// A catalog validation error at `path` (entry and field).
    pub fn catalog(path: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Catalog { path: path.into(), message: message.into() }
    }

    /// Whether retrying the same operation later may succeed (network, server unavailable).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Nats(_) | Error::ClickHouse(_))
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
