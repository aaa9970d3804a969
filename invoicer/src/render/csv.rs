//! CSV export of invoices and lines (RFC 4180).
//!
//! Comma-separated, CRLF line ends, a header row; a field is quoted when it holds a comma, a
//! double quote, CR or LF, and quotes inside are doubled. Money is the exact decimal with the
//! currency's minor-unit digits (`1234.50`, JPY `1235`, KWD `1.250`), `.` as the decimal point
//! and no grouping: CSV is for programs, documents are for people. Times are RFC 3339 UTC.

use std::fmt::Write as _;

use chrono::DateTime;
use rust_decimal::Decimal;

use meterline_schemas::invoice::{InvoiceLineRow, InvoiceRow, InvoiceStatus, LineKind};
use meterline_schemas::money::Currency;

/// Columns of [`invoices_csv`].
pub const INVOICE_COLUMNS: &[&str] = &[
    "invoice_id",
    "number",
    "customer",
    "subscription_id",
    "period",
    "period_start",
    "period_end",
    "issued_at",
    "status",
    "revision",
    "currency",
    "plan",
    "plan_version",
    "subtotal",
    "tax",
    "total",
    "line_count",
    "due_at",
];

/// Columns of [`lines_csv`].
pub const LINE_COLUMNS: &[&str] = &[
    "invoice_id",
    "line_no",
    "kind",
    "customer",
    "period",
    "currency",
    "description",
    "meter",
    "quantity",
    "event_count",
    "price_model",
    "plan",
    "plan_version",
    "amount",
    "amount_unrounded",
    "rounding_mode",
    "breakdown",
    "segments",
];

/// Quotes one field when RFC 4180 requires it.
pub fn field(value: &str) -> String {
    if value.contains([',', '"', '\r', '\n']) { format!("\"{}\"", value.replace('"', "\"\"")) } else { value.to_owned() }
}

fn record(out: &mut String, fields: &[String]) {
    let line: Vec<String> = fields.iter().map(|f| field(f)).collect();
    let _ = write!(out, "{}\r\n", line.join(","));
}

fn header(out: &mut String, columns: &[&str]) {
    record(out, &columns.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>());
}

fn money(amount: Decimal, currency: &str) -> String {
    // No "-0.00" from a rounded negative zero.
    let amount = if amount.is_zero() { amount.abs() } else { amount };
    Currency::from_code(currency).map_or_else(|_| amount.normalize().to_string(), |c| c.format(amount))
}

fn ts(secs: u32) -> String {
    DateTime::from_timestamp(i64::from(secs), 0).map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default()
}

/// Invoices as CSV, one row each.
pub fn invoices_csv(invoices: &[InvoiceRow]) -> String {
    let mut out = String::new();
    header(&mut out, INVOICE_COLUMNS);
    for i in invoices {
        let status = InvoiceStatus::from_i8(i.status).map_or("unknown", |s| s.name());
        record(
            &mut out,
            &[
                i.invoice_id.to_string(),
                // Empty while draft: numbers are assigned at finalization.
                i.number.clone(),
                i.customer.clone(),
                i.subscription_id.clone(),
                i.period.clone(),
                ts(i.period_start),
                ts(i.period_end),
                ts(i.issued_at),
                status.to_owned(),
                i.revision.to_string(),
                i.currency.clone(),
                i.plan.clone(),
                i.plan_version.to_string(),
                money(i.subtotal, &i.currency),
                money(i.tax, &i.currency),
                money(i.total, &i.currency),
                i.line_count.to_string(),
                if i.due_at == 0 { String::new() } else { ts(i.due_at) },
            ],
        );
    }
    out
}

/// Invoice lines as CSV, one row each; `segments` are separated by spaces.
pub fn lines_csv(lines: &[InvoiceLineRow]) -> String {
    let mut out = String::new();
    header(&mut out, LINE_COLUMNS);
    for l in lines {
        record(
            &mut out,
            &[
                l.invoice_id.to_string(),
                l.line_no.to_string(),
                LineKind::name_of(l.kind).to_owned(),
                l.customer.clone(),
                l.period.clone(),
                l.currency.clone(),
                l.description.clone(),
                l.meter.clone(),
                l.quantity.normalize().to_string(),
                l.event_count.to_string(),
                l.price_model.clone(),
                l.plan.clone(),
                l.plan_version.to_string(),
                money(l.amount, &l.currency),
                l.amount_unrounded.clone(),
                l.rounding_mode.clone(),
                l.breakdown.clone(),
                l.segments.join(" "),
            ],
        );
    }
    out
}
