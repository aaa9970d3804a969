//! Invoicing: closing a billing period into invoices stored in ClickHouse.
//!
//! # Layout
//! - [`build`]: rated usage → invoices and lines (recurring fees with proration, usage lines,
//!   tax by jurisdiction), each line rounded once; deterministic ids and content hashes.
//! - [`ids`]: deterministic invoice ids.
//! - [`writer`]: idempotent writes to `invoices` / `invoice_lines` and reading them back.
//! - [`close`]: the period close: catalog + ledger + period → rows in ClickHouse.
//! - [`rerate`]: recompute a period from the ledger and compare with what was invoiced.
//! - [`spend`]: current spend of the open period in ClickHouse `current_spend`.
//! - [`error`]: the crate's error type.

pub mod build;
pub mod close;
pub mod error;
pub mod ids;
pub mod rerate;
pub mod spend;
pub mod writer;

pub use build::{Invoice, build_invoices};
pub use close::{CloseReport, close_period};
pub use error::{Error, Result};
