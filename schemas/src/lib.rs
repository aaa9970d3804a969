//! Shared types of Meterline: what every other crate agrees on.
//!
//! # Layout
//! - [`event`]: CloudEvents 1.0 usage events, decoding (single and batch) and validation.
//! - [`failpoint`]: crash injection for tests (`METERLINE_FAILPOINT=<point>:<n>`), used by ingest and close.
//! - [`meter`]: meters (what to count and how) and value extraction from event data.
//! - [`money`]: currencies (ISO 4217 minor units), rounding modes and the one line-rounding
//!   function, exact decimal (de)serialization.
//! - [`price`]: price model definitions (per-unit, graduated, volume, package, matrix,
//!   percentage) and their modifiers.
//! - [`rate_table`]: telecom rate tables (prefixes, time bands, increments) and their validation.
//! - [`catalog`]: customers, plans with immutable versions, subscriptions, tax rates; catalog
//!   files (YAML or TOML) and their validation.
//! - [`discount`]: coupons (percentage or fixed amount, on the subtotal or one meter) and their
//!   duration in billing cycles.
//! - [`credit`]: prepaid credit grants, their validity and burn order.
//! - [`tax`]: dated tax rates by country and region, EU VAT id formats, tax rounding, dated FX
//!   rates.
//! - [`catalog_store`]: the catalog persisted in NATS JetStream key-value buckets.
//! - [`period`]: billing periods (monthly cycles with an anchor day) and proration windows.
//! - [`ledger`]: the Arrow schema of ledger segments and the dedup key of an event.
//! - [`invoice`]: invoice, invoice-line and rated-call rows as stored in ClickHouse.
//! - [`clickhouse`]: client construction, server-version detection and ordered migrations.
//! - [`error`]: the crate's error type.

pub mod catalog;
pub mod catalog_store;
pub mod clickhouse;
pub mod credit;
pub mod discount;
pub mod error;
pub mod event;
pub mod failpoint;
pub mod invoice;
mod json;
pub mod ledger;
pub mod meter;
pub mod money;
pub mod period;
pub mod price;
pub mod rate_table;
pub mod tax;
pub mod telecom;

pub use error::{Error, Result};
