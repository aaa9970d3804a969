//! Invoices and invoice lines as stored in ClickHouse (`invoices`, `invoice_lines`).
//!
//! Money columns are `Decimal(38, 9)` holding amounts already rounded to the currency's minor
//! unit; times are `DateTime` (UTC seconds). Ids are deterministic (see `meterline-invoicer`).

use clickhouse::Row;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::money::ch_decimal;

/// Invoice status (`Enum8` in ClickHouse). The lifecycle is
/// `draft → finalized → paid | void | uncollectible`, and `uncollectible → paid | void`; see
/// `meterline-invoicer` `lifecycle.rs` for the transitions and their checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    /// Open for late usage within the grace window: refreshed by every close, has no number.
    Draft = 1,
    /// Final: numbered, its lines never change again.
    Finalized = 2,
    /// Paid in full.
    Paid = 3,
    /// Cancelled after finalization; keeps its number (numbering stays gapless).
    Void = 4,
    /// Written off as not collectible (may still be paid or voided later).
    Uncollectible = 5,
}

impl InvoiceStatus {
    /// Every status, in `Enum8` order.
    pub const ALL: [InvoiceStatus; 5] =
        [InvoiceStatus::Draft, InvoiceStatus::Finalized, InvoiceStatus::Paid, InvoiceStatus::Void, InvoiceStatus::Uncollectible];

    /// The `Enum8` name, as in ClickHouse.
    pub fn name(self) -> &'static str {
        match self {
            InvoiceStatus::Draft => "draft",
            InvoiceStatus::Finalized => "finalized",
            InvoiceStatus::Paid => "paid",
            InvoiceStatus::Void => "void",
            InvoiceStatus::Uncollectible => "uncollectible",
        }
    }

    /// The status of a stored value, `None` for a value this build does not know.
    pub fn from_i8(v: i8) -> Option<InvoiceStatus> {
        Self::ALL.iter().copied().find(|s| *s as i8 == v)
    }
}

impl std::fmt::Display for InvoiceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Kind of invoice line (`Enum8` in ClickHouse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    /// Recurring plan fee.
    Recurring = 1,
    /// Metered usage.
    Usage = 2,
    /// Tax on the subtotal.
    Tax = 3,
    /// True-up to a plan's minimum usage commitment.
    Commitment = 4,
    /// Seats: per-seat price × seat count, prorated by seconds (and seat-change true-ups).
    Seats = 5,
    /// A coupon's discount (zero or negative).
    Discount = 6,
    /// A prepaid credit grant applied to the amount due (negative).
    Credit = 7,
    /// Late usage of an earlier, finalized period, billed on a later invoice (dated by the
    /// period it adjusts in its description and breakdown).
    Adjustment = 8,
}

impl LineKind {
    /// Every kind, in `Enum8` order.
    pub const ALL: [LineKind; 8] = [
        LineKind::Recurring,
        LineKind::Usage,
        LineKind::Tax,
        LineKind::Commitment,
        LineKind::Seats,
        LineKind::Discount,
        LineKind::Credit,
        LineKind::Adjustment,
    ];

    /// The `Enum8` name, as in ClickHouse.
    pub fn name(self) -> &'static str {
        match self {
            LineKind::Recurring => "recurring",
            LineKind::Usage => "usage",
            LineKind::Tax => "tax",
            LineKind::Commitment => "commitment",
            LineKind::Seats => "seats",
            LineKind::Discount => "discount",
            LineKind::Credit => "credit",
            LineKind::Adjustment => "adjustment",
        }
    }

    /// The name of a stored `kind` value; `"unknown"` for a value this build does not know.
    pub fn name_of(kind: i8) -> &'static str {
        Self::ALL.iter().find(|k| **k as i8 == kind).map_or("unknown", |k| k.name())
    }
}

/// One row of `invoices`.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct InvoiceRow {
    /// Deterministic id.
    #[serde(with = "clickhouse::serde::uuid")]
    pub invoice_id: uuid::Uuid,
    /// Subscription billed.
    pub subscription_id: String,
    /// Customer key.
    pub customer: String,
    /// Period label `YYYY-MM`.
    pub period: String,
    /// Cycle start, UTC seconds.
    pub period_start: u32,
    /// Cycle end (exclusive), UTC seconds.
    pub period_end: u32,
    /// ISO 4217 code.
    pub currency: String,
    /// Plan key.
    pub plan: String,
    /// Plan version.
    pub plan_version: u32,
    /// Sum of the lines before tax: charges and discounts (not credits).
    #[serde(with = "ch_decimal")]
    pub subtotal: Decimal,
    /// Sum of tax lines.
    #[serde(with = "ch_decimal")]
    pub tax: Decimal,
    /// The amount due: `subtotal + tax` minus prepaid credits applied, i.e. the sum of all lines.
    #[serde(with = "ch_decimal")]
    pub total: Decimal,
    /// Number of lines.
    pub line_count: u32,
    /// Status (`Enum8`, [`InvoiceStatus`]).
    pub status: i8,
    /// Invoice number (`INV-2026-000123`), assigned at finalization; empty for drafts.
    pub number: String,
    /// When the invoice entered its current status, UTC seconds (drafts: the end of the cycle;
    /// later states: the transition's time).
    pub status_at: u32,
    /// The `version` of this invoice's current lines in `invoice_lines` (a draft refreshed with
    /// different content gets new lines under a new lines version).
    pub lines_version: u64,
    /// Revision of this invoice (0 for the first close).
    pub revision: u32,
    /// xxh3-64 of the invoice's canonical content, for idempotent close.
    pub content_hash: u64,
    /// Issue date: the end of the cycle, UTC seconds (deterministic, unlike the wall clock).
    pub issued_at: u32,
    /// Due date (migration 0010): 00:00 UTC of the day payment is due, i.e. the UTC day of
    /// `status_at` plus the payment terms in days (`meterline-invoicer` `terms.rs`). Set when the
    /// row enters `draft` (provisional, from the cycle end) and fixed when it enters `finalized`
    /// (from the finalization time); later transitions keep it. Rows written before 0010 read
    /// `issued_at` (the column's DEFAULT): due on issue, as the ageing view assumed until then.
    /// Left out of `content_hash`, like the other lifecycle fields.
    pub due_at: u32,
    /// ReplacingMergeTree version: 1 for the first draft, +1 for every refresh or transition.
    pub version: u64,
    /// Reporting currency of the `*_base` columns (`[billing] reporting_currency`; migration
    /// 0007). Empty when no reporting currency is configured. The `*_base` columns are for
    /// dashboards only, never what the customer owes, and are left out of `content_hash`.
    pub reporting_currency: String,
    /// `subtotal × fx_rate`, rounded to the reporting currency's minor unit.
    #[serde(with = "ch_decimal")]
    pub subtotal_base: Decimal,
    /// `tax × fx_rate`, rounded likewise.
    #[serde(with = "ch_decimal")]
    pub tax_base: Decimal,
    /// `total × fx_rate`, rounded likewise (not necessarily `subtotal_base + tax_base`).
    #[serde(with = "ch_decimal")]
    pub total_base: Decimal,
    /// Units of the reporting currency per unit of `currency`: 1 for the same currency, 0 when the
    /// catalog has no rate for the pair on or before `fx_date` (the `*_base` columns are then 0).
    #[serde(with = "ch_decimal")]
    pub fx_rate: Decimal,
    /// Date of the rate used (ClickHouse `Date`: days since 1970-01-01); the issue day when the
    /// currencies are equal, 0 when no rate was found.
    pub fx_date: u16,
}

/// One row of `invoice_lines`.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct InvoiceLineRow {
    /// Invoice id.
    #[serde(with = "clickhouse::serde::uuid")]
    pub invoice_id: uuid::Uuid,
    /// 1-based position on the invoice.
    pub line_no: u32,
    /// Kind (`Enum8`).
    pub kind: i8,
    /// Customer key.
    pub customer: String,
    /// Period label.
    pub period: String,
    /// Cycle start, UTC seconds.
    pub period_start: u32,
    /// ISO 4217 code.
    pub currency: String,
    /// Human-readable description.
    pub description: String,
    /// Meter key (usage lines), empty otherwise.
    pub meter: String,
    /// Quantity (usage: aggregated meter value; recurring: active fraction of the period).
    #[serde(with = "ch_decimal")]
    pub quantity: Decimal,
    /// Number of ledger events behind a usage line.
    pub event_count: u64,
    /// Price model name, `recurring`, or `tax`.
    pub price_model: String,
    /// Plan key.
    pub plan: String,
    /// Plan version.
    pub plan_version: u32,
    /// Line amount, rounded once to the currency's minor unit.
    #[serde(with = "ch_decimal")]
    pub amount: Decimal,
    /// The exact amount before rounding, as decimal text.
    pub amount_unrounded: String,
    /// Rounding mode applied to this line.
    pub rounding_mode: String,
    /// JSON explanation: tiers with their quantities and amounts, proration basis, tax rate.
    pub breakdown: String,
    /// Ledger segments the usage came from.
    pub segments: Vec<String>,
    /// ReplacingMergeTree version.
    pub version: u64,
}

/// One row of `current_spend`: a subscription's spend so far in the open period, before tax.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct SpendRow {
    /// Subscription.
    pub subscription_id: String,
    /// Customer key.
    pub customer: String,
    /// Period label.
    pub period: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Rounded usage lines (including a commitment true-up).
    #[serde(with = "ch_decimal")]
    pub usage_amount: Decimal,
    /// Rounded recurring fees and seats (including fees billed in advance).
    #[serde(with = "ch_decimal")]
    pub fees: Decimal,
    /// `usage_amount + fees` plus coupon discounts (negative): the invoice subtotal so far.
    #[serde(with = "ch_decimal")]
    pub subtotal: Decimal,
    /// Ledger rows behind the usage.
    pub ledger_rows: u64,
    /// When this was computed, UTC seconds.
    pub as_of: u32,
    /// ReplacingMergeTree version (microseconds since the epoch at refresh).
    pub version: u64,
}

/// One row of `invoice_events`: one lifecycle transition of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct InvoiceEventRow {
    /// Deterministic id (invoice, new header version, target status): also the billing event's
    /// `Nats-Msg-Id`.
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: uuid::Uuid,
    /// The invoice.
    #[serde(with = "clickhouse::serde::uuid")]
    pub invoice_id: uuid::Uuid,
    /// The invoice number after the transition (empty while draft).
    pub number: String,
    /// Status before (`0` = none: the invoice was created).
    pub from_status: i8,
    /// Status after.
    pub to_status: i8,
    /// When, UTC seconds.
    pub at: u32,
    /// Who: `close` or `cli`.
    pub actor: String,
    /// Why (free text; `created`, `refreshed`, `grace deadline passed`, or the operator's reason).
    pub reason: String,
    /// The invoice header version written by this transition.
    pub version: u64,
}

/// One row of `credit_notes`.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct CreditNoteRow {
    /// Deterministic id (invoice, ordinal of the credit note on it).
    #[serde(with = "clickhouse::serde::uuid")]
    pub credit_note_id: uuid::Uuid,
    /// Credit note number (`CN-2026-000001`).
    pub number: String,
    /// The invoice credited.
    #[serde(with = "clickhouse::serde::uuid")]
    pub invoice_id: uuid::Uuid,
    /// Its number.
    pub invoice_number: String,
    /// Customer key.
    pub customer: String,
    /// Subscription.
    pub subscription_id: String,
    /// Period of the invoice.
    pub period: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Amount credited (positive, tax included), on the currency's minor-unit grid.
    #[serde(with = "ch_decimal")]
    pub amount: Decimal,
    /// Why.
    pub reason: String,
    /// Issue time, UTC seconds.
    pub issued_at: u32,
    /// ReplacingMergeTree version.
    pub version: u64,
}

/// One row of `credit_note_lines`.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct CreditNoteLineRow {
    /// The credit note.
    #[serde(with = "clickhouse::serde::uuid")]
    pub credit_note_id: uuid::Uuid,
    /// 1-based position.
    pub line_no: u32,
    /// The invoice line credited (0: an amount of the invoice total).
    pub invoice_line_no: u32,
    /// Description.
    pub description: String,
    /// Amount credited (positive; a line of a late-usage credit whose usage rose is negative).
    #[serde(with = "ch_decimal")]
    pub amount: Decimal,
    /// What the line credits, as JSON (`{}` for manual credit notes; late-usage credits: the
    /// adjusted period and line, billed and re-rated amounts, tax; migration 0011).
    pub breakdown: String,
    /// ReplacingMergeTree version.
    pub version: u64,
}

/// One row of `rated_calls`: a call record of a telecom price as the period close rated it.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct RatedCallRow {
    /// Period label.
    pub period: String,
    /// Cycle start, UTC seconds.
    pub period_start: u32,
    /// Subscription that billed the call.
    pub subscription_id: String,
    /// Customer key.
    pub customer: String,
    /// Meter key.
    pub meter: String,
    /// Rate table key.
    pub rate_table: String,
    /// CloudEvents id of the record.
    pub event_id: String,
    /// CloudEvents source.
    pub source: String,
    /// Event time, UTC seconds (decides the period).
    pub event_time: u32,
    /// Answer time, UTC seconds (decides the band).
    pub answered_at: u32,
    /// Called number as written in the record.
    pub destination: String,
    /// Prefix of the rate that priced it (`""` = catch-all).
    pub matched_prefix: String,
    /// Description of that rate.
    pub description: String,
    /// Band name.
    pub band: String,
    /// Duration of the call.
    pub duration_secs: u64,
    /// Seconds charged after the minimum and the increments.
    pub billed_secs: u64,
    /// The band's price per minute.
    #[serde(with = "ch_decimal")]
    pub price_per_minute: Decimal,
    /// Connect fee charged (0 for an unanswered attempt).
    #[serde(with = "ch_decimal")]
    pub connect_fee: Decimal,
    /// The call's exact amount as decimal text (explanation only; lines are computed from sums).
    pub amount: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Ledger segment of the record.
    pub segment: String,
    /// ReplacingMergeTree version.
    pub version: u64,
}
