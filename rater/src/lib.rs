//! Rating: usage aggregated over a period and priced against plans, with exact decimals.
//!
//! # Layout
//! - [`tiers`]: price model evaluation (per-unit, graduated, volume) with tier breakdowns.
//! - [`pricing`]: one usage line: free units, the model (matrix per group), the amount cap.
//! - [`aggregate`]: aggregation of ledger segments per subscription and meter: DataFusion reads
//!   the Parquet, `fold` computes every aggregate in one pass.
//! - [`rate`]: rating a period: windows per subscription, quantities per meter, priced usage.
//! - [`calls`]: call records from ledger rows, and rated calls summed into lines (exact sums).
//! - [`telecom`]: per-call rating of call detail records: longest prefix, time bands, increments.
//! - [`error`]: the crate's error type.

pub mod aggregate;
pub mod calls;
pub mod error;
mod fold;
pub mod pricing;
pub mod rate;
pub mod tiers;

pub use error::{Error, Result};
/// Telecom rating lives in `meterline_schemas::telecom` (ingest checks call records with it).
pub use meterline_schemas::telecom;
pub use rate::{PeriodUsage, RatedSubscription, RatedUsage, rate_period};
