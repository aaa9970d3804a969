//! Invoicing: closing a billing period into invoices stored in ClickHouse.
//!
//! # Layout
//! - [`build`]: rated usage → invoices and lines, each line rounded once; content hashes.
//! - [`fees`]: the recurring fee and seats, prorated by seconds, in arrears or in advance.
//! - [`discounts`]: coupon discount lines (percentage or fixed, on one meter or the subtotal).
//! - [`credits`]: prepaid credit grants burned down after tax, balances carried across periods.
//! - [`tax`]: the tax step: the [`tax::TaxProvider`] seam and the built-in catalog engine,
//!   exemptions, reverse charge, lines split at rate changes, tax-inclusive prices, per-line or
//!   per-invoice tax rounding; [`tax::Billing`] settings.
//! - [`ids`]: deterministic invoice ids.
//! - [`writer`]: idempotent writes to `invoices` / `invoice_lines` and reading them back.
//! - [`close`]: the period close: catalog + ledger + period → rows in ClickHouse.
//! - [`rerate`]: recompute a period from the ledger and compare with what was invoiced.
//! - [`spend`]: current spend of the open period in ClickHouse `current_spend`.
//! - [`error`]: the crate's error type.

pub mod build;
pub mod close;
pub mod credits;
pub mod discounts;
pub mod error;
pub mod fees;
pub mod ids;
pub mod rerate;
pub mod spend;
pub mod tax;
pub mod writer;

pub use build::{Invoice, build_invoices, build_invoices_with_usage};
pub use close::{CloseReport, close_period};
pub use credits::CreditUsage;
pub use error::{Error, Result};
pub use tax::{Billing, TaxProvider};
