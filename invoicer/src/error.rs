//! The error type of the `invoicer` crate.

/// Errors raised while closing a period.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Rating failed.
    #[error(transparent)]
    Rate(#[from] meterline_rater::Error),
    /// Shared-type failure (catalog, ClickHouse connection, decimal range).
    #[error(transparent)]
    Schemas(#[from] meterline_schemas::Error),
    /// ClickHouse query or insert failed.
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    /// The catalog lacks something an invoice needs.
    #[error("{0}")]
    Catalog(String),
    /// A decimal computation overflowed.
    #[error("decimal overflow computing {0}")]
    Overflow(String),
    /// JSON encoding of a line breakdown failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// NATS (numbering counters, billing events) failed.
    #[error("nats: {0}")]
    Nats(String),
    /// A billing setting is invalid.
    #[error("{0}")]
    Config(String),
    /// No invoice or credit note with that id or number.
    #[error("{0}")]
    NotFound(String),
    /// A lifecycle transition that is not allowed from the invoice's current state.
    #[error("invoice {invoice} is {from}: cannot {action} ({from} → {to} is not allowed)")]
    IllegalTransition { invoice: String, from: String, to: String, action: String },
    /// `close --finalize` before the period's grace deadline.
    #[error("{0}")]
    DeadlineNotPassed(String),
    /// A credit note larger than what is left to credit, or otherwise invalid.
    #[error("{0}")]
    CreditNote(String),
    /// A document could not be rendered (template, logo, breakdown).
    #[error("render: {0}")]
    Render(String),
    /// Reading or writing rated calls in the ledger failed.
    #[error("ledger: {0}")]
    Ledger(String),
    /// PDF output needs Chromium and it is not installed.
    #[error("pdf: the Chromium binary {binary:?} was not found (set render.chromium, or install it: apt-get install chromium)")]
    PdfEngineMissing {
        /// The binary looked for.
        binary: String,
    },
    /// Chromium ran but produced no PDF.
    #[error("pdf: {binary}: {reason}")]
    Pdf {
        /// The binary run.
        binary: String,
        /// What went wrong.
        reason: String,
    },
}

impl Error {
    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::ClickHouse(_) | Error::Nats(_) => true,
            Error::Schemas(e) => e.is_transient(),
            _ => false,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
