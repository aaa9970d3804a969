//! The error type of the `rater` crate.

/// Errors raised while aggregating or pricing usage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// DataFusion failed to plan or run the aggregation.
    #[error("aggregation query: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
    /// Arrow failure while reading results.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A decimal computation overflowed (28 significant digits).
    #[error("decimal overflow pricing {what}")]
    Overflow { what: String },
    /// A quantity the model cannot price.
    #[error("meter {meter}: quantity {quantity} is negative; {model} prices need a quantity of 0 or more")]
    NegativeQuantity { meter: String, model: &'static str, quantity: String },
    /// A matrix price was asked to price a single quantity.
    #[error("meter {meter}: matrix prices need per-group quantities")]
    NeedsGroups { meter: String },
    /// A percentage price was asked to price a total instead of events.
    #[error("meter {meter}: percentage prices charge each event's value, not a total")]
    NeedsEvents { meter: String },
    /// A telecom price was asked to price a total instead of call records.
    #[error("meter {meter}: telecom prices rate each call record, not a total")]
    NeedsCalls { meter: String },
    /// A call record in the ledger could not be rated (bad fields, no rate, no band).
    #[error("call record {event_id:?} of customer {customer:?} (meter {meter}): {source}")]
    Call {
        /// The CloudEvents id of the record.
        event_id: String,
        /// Its customer.
        customer: String,
        /// Its meter.
        meter: String,
        /// What went wrong (boxed: it is large and rare).
        source: Box<meterline_schemas::rate_table::TelecomError>,
    },
    /// The ledger location is not usable.
    #[error("ledger location {location:?}: {message}")]
    Ledger { location: String, message: String },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
