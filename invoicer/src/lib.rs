//! Invoicing: closing a billing period into invoices stored in ClickHouse.
//!
//! # Layout
//! - [`build`]: rated usage → invoices and lines, each line rounded once; content hashes.
//! - [`fees`]: the recurring fee and seats, prorated by seconds, in arrears or in advance.
//! - [`discounts`]: coupon discount lines (percentage or fixed, on one meter or the subtotal).
//! - [`credits`]: prepaid credit grants burned down after tax, balances carried across periods.
//! - [`settings`]: every `[billing]` setting in one struct (rounding, tax, lifecycle, terms).
//! - [`terms`]: payment terms (net-N days) and the due date stored on each invoice.
//! - [`tax`]: the tax step: the [`tax::TaxProvider`] seam and the built-in catalog engine,
//!   exemptions, reverse charge, lines split at rate changes, tax-inclusive prices, per-line or
//!   per-invoice tax rounding.
//! - [`ids`]: deterministic invoice, transition and credit-note ids.
//! - [`writer`]: idempotent draft writes to `invoices` / `invoice_lines` and reading them back.
//! - [`ledger_calls`]: rated call records of telecom prices → the ledger (Parquet), create-only.
//! - [`rated_calls`]: rated call records of telecom prices → `rated_calls`, idempotently.
//! - [`lifecycle`]: draft → finalized → paid / void / uncollectible; transitions and their checks.
//! - [`numbering`]: gapless invoice and credit-note numbers from a compare-and-set counter in NATS KV.
//! - [`adjustments`]: late usage of finalized periods → dated adjustment lines on the next invoice.
//! - [`credit_notes`]: full or partial credit notes, never above the uncredited remainder.
//! - [`events`]: billing events on NATS (`invoice.finalized`, `.paid`, `.voided`, `credit_note.issued`).
//! - [`close`]: the period close: catalog + ledger + period → rated calls and drafts, then finalized invoices.
//! - [`rerate`]: recompute a period from the ledger and compare with what was invoiced.
//! - [`spend`]: current spend of the open period in ClickHouse `current_spend`.
//! - [`render`]: invoice documents (HTML, PDF through Chromium) and CSV exports.
//! - [`error`]: the crate's error type.

pub mod adjustments;
pub mod build;
pub mod close;
pub mod credit_notes;
pub mod credits;
pub mod discounts;
pub mod error;
pub mod events;
pub mod fees;
pub mod ids;
pub mod ledger_calls;
pub mod lifecycle;
pub mod numbering;
pub mod rated_calls;
pub mod render;
pub mod rerate;
pub mod settings;
pub mod spend;
pub mod tax;
pub mod terms;
pub mod writer;

pub use build::{Invoice, build_invoices, build_invoices_with_usage};
pub use close::{CloseOptions, CloseReport, close_period};
pub use credits::CreditUsage;
pub use error::{Error, Result};
pub use lifecycle::Billing;
pub use settings::Settings;
pub use tax::TaxProvider;
