//! Invoicing: closing a billing period into invoices stored in ClickHouse.
//!
//! # Layout
//! - [`build`]: rated usage → invoices and lines, each line rounded once; content hashes.
//! - [`fees`]: the recurring fee and seats, prorated by seconds, in arrears or in advance.
//! - [`discounts`]: coupon discount lines (percentage or fixed, on one meter or the subtotal).
//! - [`credits`]: prepaid credit grants burned down after tax, balances carried across periods.
//! - [`ids`]: deterministic invoice ids.
//! - [`writer`]: idempotent writes to `invoices` / `invoice_lines` and reading them back.
//! - [`rated_calls`]: rated call records of telecom prices → `rated_calls`, idempotently.
//! - [`close`]: the period close: catalog + ledger + period → rows in ClickHouse.
//! - [`rerate`]: recompute a period from the ledger and compare with what was invoiced.
//! - [`spend`]: current spend of the open period in ClickHouse `current_spend`.
//! - [`render`]: invoice documents (HTML, PDF through Chromium) and CSV exports.
//! - [`error`]: the crate's error type.

pub mod build;
pub mod close;
pub mod credits;
pub mod discounts;
pub mod error;
pub mod fees;
pub mod ids;
pub mod rated_calls;
pub mod render;
pub mod rerate;
pub mod spend;
pub mod writer;

pub use build::{Invoice, build_invoices};
pub use close::{CloseReport, close_period};
pub use credits::CreditUsage;
pub use error::{Error, Result};
