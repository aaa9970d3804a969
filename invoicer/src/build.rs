//! Rated usage → invoices. Every line is rounded exactly once, by
//! [`meterline_schemas::money::round_line`]; subtotal, tax and total are sums of rounded lines.
//!
//! Line order: the recurring fee, usage lines in the plan's price order, the minimum-commitment
//! true-up when usage falls short, then tax.
//! Tax: one line per invoice at the customer's jurisdiction rate, computed on the rounded
//! subtotal and rounded once (per-invoice tax rounding).

use rust_decimal::Decimal;
use serde_json::json;

use meterline_rater::RatedSubscription;
use meterline_schemas::catalog::Catalog;
use meterline_schemas::invoice::{InvoiceLineRow, InvoiceRow, InvoiceStatus, LineKind};
use meterline_schemas::money::{COLUMN_SCALE, Currency, RoundingMode, round_line};
use meterline_schemas::period::PeriodLabel;

use crate::error::{Error, Result};
use crate::ids::invoice_id;

/// An invoice with its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    /// The header row.
    pub row: InvoiceRow,
    /// Lines, `line_no` 1..=n.
    pub lines: Vec<InvoiceLineRow>,
}

/// Revision of invoices produced by a first close.
pub const FIRST_REVISION: u32 = 0;

fn secs(t: chrono::DateTime<chrono::Utc>) -> u32 {
    u32::try_from(t.timestamp()).unwrap_or(u32::MAX)
}

/// A quantity fit for the `Decimal(38, 9)` column: exact when it has at most 9 decimals (all
/// ledger-derived sums do); AVG quantities with longer expansions are shown to 9 decimals, while
/// the amount is computed from the exact value (kept in `breakdown`).
fn column_quantity(q: Decimal) -> Decimal {
    q.round_dp(COLUMN_SCALE)
}

/// Builds the invoices of `label` from rated subscriptions.
pub fn build_invoices(rated: &[RatedSubscription], catalog: &Catalog, label: PeriodLabel, rounding: RoundingMode) -> Result<Vec<Invoice>> {
    rated.iter().map(|r| build_one(r, catalog, label, rounding)).collect()
}

fn build_one(r: &RatedSubscription, catalog: &Catalog, label: PeriodLabel, rounding: RoundingMode) -> Result<Invoice> {
    let period = label.to_string();
    let currency: Currency = r.plan.currency;
    let id = invoice_id(&r.subscription.id, &period, FIRST_REVISION);
    let period_start = secs(r.window.period_start);
    let mut lines = Vec::new();
    let line = |kind: LineKind,
                description: String,
                meter: &str,
                quantity: Decimal,
                event_count: u64,
                model: &str,
                unrounded: Decimal,
                breakdown: serde_json::Value,
                segments: Vec<String>| {
        InvoiceLineRow {
            invoice_id: id,
            line_no: 0,
            kind: kind as i8,
            customer: r.customer.key.clone(),
            period: period.clone(),
            period_start,
            currency: currency.code().to_owned(),
            description,
            meter: meter.to_owned(),
            quantity: column_quantity(quantity),
            event_count,
            price_model: model.to_owned(),
            plan: r.plan.plan.clone(),
            plan_version: r.plan.version,
            amount: round_line(unrounded, currency, rounding),
            amount_unrounded: unrounded.normalize().to_string(),
            rounding_mode: rounding.as_str().to_owned(),
            breakdown: breakdown.to_string(),
            segments,
            version: 1,
        }
    };

    if let Some(fee) = r.plan.recurring_fee.filter(|f| !f.is_zero()) {
        let (active, total) = r.window.seconds();
        let unrounded = if r.window.is_full() {
            fee
        } else {
            fee.checked_mul(Decimal::from(active))
                .and_then(|x| x.checked_div(Decimal::from(total)))
                .ok_or_else(|| Error::Overflow(format!("proration of {fee}")))?
        };
        let breakdown = json!({
            "fee": fee.to_string(),
            "proration": { "basis": "seconds", "active_seconds": active, "period_seconds": total,
                           "active_from": r.window.start.to_rfc3339(), "active_until": r.window.end.to_rfc3339() },
        });
        let desc = if r.window.is_full() { format!("{} plan fee", r.plan.name) } else { format!("{} plan fee (prorated)", r.plan.name) };
        lines.push(line(LineKind::Recurring, desc, "", Decimal::ONE, 0, "recurring", unrounded, breakdown, Vec::new()));
    }

    for u in &r.usage {
        let mut breakdown = json!({
            "aggregation": u.aggregation.to_string(),
            "quantity": u.quantity.to_string(),
            "model": u.model.name(),
            "tiers": u.priced.tiers,
        });
        if !u.priced.free_units.is_zero() {
            breakdown["free_units"] = json!(u.priced.free_units.to_string());
        }
        if let Some(pct) = &u.priced.percentage {
            breakdown["percentage"] = serde_json::to_value(pct)?;
        }
        if let Some(c) = u.priced.capped_from {
            breakdown["capped_from"] = json!(c.to_string());
        }
        let meter_name = catalog.meters.get(&u.meter).and_then(|m| m.name.clone()).unwrap_or_else(|| u.meter.clone());
        lines.push(line(
            LineKind::Usage,
            meter_name,
            &u.meter,
            u.quantity,
            u.event_count,
            u.model.name(),
            u.priced.amount,
            breakdown,
            u.segments.clone(),
        ));
    }

    if let Some(commitment) = r.plan.minimum_commitment {
        // Usage lines are already rounded; the commitment has at most the currency's minor
        // units (validated), so the shortfall is exact and needs no rounding of its own.
        let usage: Decimal = lines.iter().filter(|l| l.kind == LineKind::Usage as i8).map(|l| l.amount).sum();
        if usage < commitment {
            let shortfall = commitment - usage;
            let breakdown = json!({
                "minimum_commitment": currency.format(commitment),
                "usage": currency.format(usage),
                "shortfall": currency.format(shortfall),
            });
            lines.push(line(
                LineKind::Commitment,
                "Minimum commitment true-up".to_owned(),
                "",
                Decimal::ONE,
                0,
                "minimum_commitment",
                shortfall,
                breakdown,
                Vec::new(),
            ));
        }
    }

    let subtotal: Decimal = lines.iter().map(|l| l.amount).sum();
    let tax_rate = catalog.tax_rates.get(&r.customer.jurisdiction).ok_or_else(|| {
        Error::Catalog(format!("customer {} has jurisdiction {:?} without a tax rate", r.customer.key, r.customer.jurisdiction))
    })?;
    let mut tax = Decimal::ZERO;
    if !tax_rate.rate.is_zero() {
        let unrounded = subtotal.checked_mul(tax_rate.rate).ok_or_else(|| Error::Overflow(format!("tax on {subtotal}")))?;
        let breakdown = json!({ "jurisdiction": tax_rate.jurisdiction, "rate": tax_rate.rate.to_string(), "taxable": subtotal.to_string(), "rounding": "per_invoice" });
        let l = line(LineKind::Tax, tax_rate.name.clone(), "", subtotal, 0, "tax", unrounded, breakdown, Vec::new());
        tax = l.amount;
        lines.push(l);
    }
    for (i, l) in lines.iter_mut().enumerate() {
        l.line_no = u32::try_from(i + 1).unwrap_or(u32::MAX);
    }

    let mut row = InvoiceRow {
        invoice_id: id,
        subscription_id: r.subscription.id.clone(),
        customer: r.customer.key.clone(),
        period: period.clone(),
        period_start,
        period_end: secs(r.window.period_end),
        currency: currency.code().to_owned(),
        plan: r.plan.plan.clone(),
        plan_version: r.plan.version,
        subtotal,
        tax,
        total: subtotal + tax,
        line_count: u32::try_from(lines.len()).unwrap_or(u32::MAX),
        status: InvoiceStatus::Finalized as i8,
        revision: FIRST_REVISION,
        content_hash: 0,
        issued_at: secs(r.window.period_end),
        version: 1,
    };
    row.content_hash = content_hash(&row, &lines)?;
    Ok(Invoice { row, lines })
}

/// xxh3-64 of the canonical JSON of the header (with `content_hash` = 0) and its lines.
pub fn content_hash(row: &InvoiceRow, lines: &[InvoiceLineRow]) -> Result<u64> {
    let mut r = row.clone();
    r.content_hash = 0;
    let bytes = serde_json::to_vec(&(r, lines))?;
    Ok(xxhash_rust::xxh3::xxh3_64(&bytes))
}
