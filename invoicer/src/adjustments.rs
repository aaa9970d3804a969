//! Late usage of finalized periods → dated adjustment lines on the next invoice.
//!
//! A finalized invoice never changes (invariant 5). When closing period P, every earlier period
//! Q of the last `billing.adjustment_periods` cycles of a subscription (months, quarters or
//! years: a quarterly subscription looks back 3 × 3 labels) that has finalized (or paid, or
//! uncollectible) invoices is re-rated from the ledger, exactly as `rerate` does. A subscription
//! without an invoice in P (its cycle does not end with P) gets its adjustments on its next
//! invoice, which is still inside its look-back. For each such
//! invoice, the usage and commitment lines of the recomputation are compared, per line
//! (kind, meter, description), with **everything already billed for Q**: Q's own lines plus the
//! adjustment lines for Q on invoices of the periods between Q and P (not voided). The
//! difference becomes one `adjustment` line per changed line on P's invoice of the same
//! subscription, dated by Q in its description and breakdown. Closing P again recomputes the
//! same lines (idempotent); closing P+1 finds them billed on P and adds nothing.
//!
//! Amounts are differences of rounded line amounts, so they are already on the currency's grid.
//! Adjustments are charges before tax: P's tax line taxes them at P's rate. On tax-inclusive
//! plans the compared amounts are the lines' **gross** amounts (`tax_inclusive.gross` in the
//! breakdown, what the price list says), not the net left after extracting tax: the adjustment is
//! then a gross charge whose tax P's tax step extracts once, so the customer pays exactly the
//! inclusive price of the late usage. When the net of a
//! subscription's adjustments for Q is negative (a volume tier reached by late usage can lower
//! the amount), no lines are added: the close reports it for a credit note on Q's invoice.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::json;

use meterline_schemas::catalog::Catalog;
use meterline_schemas::clickhouse::ClickHouse;
use meterline_schemas::invoice::{InvoiceLineRow, InvoiceStatus, LineKind};
use meterline_schemas::period::PeriodLabel;

use crate::build::{Charge, build_invoices_with_usage};
use crate::credits::CreditUsage;
use crate::error::Result;
use crate::settings::Settings;
use crate::tax::usage_by_tax_period;
use crate::writer::current_headers;

/// Late usage of one subscription and period whose net is negative.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NegativeAdjustment {
    /// Subscription.
    pub subscription_id: String,
    /// The period adjusted.
    pub period: String,
    /// Its invoice number.
    pub invoice_number: String,
    /// Net amount (negative).
    pub net: Decimal,
}

/// Adjustments for one close.
#[derive(Debug, Clone, Default)]
pub struct Adjustments {
    /// Adjustment lines by subscription.
    pub lines: BTreeMap<String, Vec<Charge>>,
    /// Negative nets, not billed.
    pub negative: Vec<NegativeAdjustment>,
}

type Key = (i8, String, String);

fn billed_kind(kind: i8) -> bool {
    kind == LineKind::Usage as i8 || kind == LineKind::Commitment as i8
}

/// Computes the adjustments to bill on `label`'s invoices.
pub async fn compute(
    ch: &ClickHouse,
    ledger_root: &Path,
    catalog: &Catalog,
    label: PeriodLabel,
    settings: &Settings,
) -> Result<Adjustments> {
    let mut out = Adjustments::default();
    // Each subscription looks back `adjustment_periods` of its own cycles (3 months, 3 quarters
    // or 3 years by default): a quarterly subscription's next invoice is three labels later, so a
    // look-back in months would drop its late usage.
    let months_back = |sub: &str| {
        let cycle = catalog.subscriptions.get(sub).map_or(1, |s| s.cycle.months());
        settings.adjustment_periods.saturating_mul(cycle)
    };
    let longest = catalog.subscriptions.values().map(|s| s.cycle.months()).max().unwrap_or(1);
    let mut q = label;
    for back in 1..=settings.adjustment_periods.saturating_mul(longest) {
        q = q.prev();
        let period = q.to_string();
        let stored: HashMap<String, _> = current_headers(ch, &period)
            .await?
            .into_values()
            .filter(|r| [InvoiceStatus::Finalized, InvoiceStatus::Paid, InvoiceStatus::Uncollectible].iter().any(|s| *s as i8 == r.status))
            .filter(|r| back <= months_back(&r.subscription_id))
            .map(|r| (r.subscription_id.clone(), r))
            .collect();
        if stored.is_empty() {
            continue;
        }
        // What was billed for q: its own lines, plus adjustments for q on later invoices.
        let mut billed: HashMap<(String, Key), (Decimal, Decimal)> = HashMap::new();
        for l in crate::writer::list_lines(ch, &period).await?.into_iter().filter(|l| billed_kind(l.kind)) {
            if let Some(inv) = stored.values().find(|r| r.invoice_id == l.invoice_id) {
                let e = billed.entry((inv.subscription_id.clone(), (l.kind, l.meter.clone(), l.description.clone()))).or_default();
                e.0 += l.quantity;
                e.1 += billed_amount(l.amount, &l.breakdown);
            }
        }
        for (sub, key, qty, amount) in earlier_adjustments(ch, &period, &label.to_string()).await? {
            let e = billed.entry((sub, key)).or_default();
            e.0 += qty;
            e.1 += amount;
        }
        let rated = meterline_rater::rate_period(ledger_root, catalog, q).await?;
        let credits = CreditUsage::load_before(ch, catalog, q).await?;
        // Re-rated with the same settings and tax step as the close that billed q, so unchanged
        // usage gives unchanged (net) lines.
        let parts = usage_by_tax_period(ledger_root, &rated, settings, settings.provider(catalog).as_ref()).await?;
        let fresh = build_invoices_with_usage(&rated, catalog, q, settings, &credits, &parts)?;
        for inv in &fresh {
            let Some(old) = stored.get(&inv.row.subscription_id) else { continue };
            let sub = inv.row.subscription_id.clone();
            let mut now: BTreeMap<Key, &InvoiceLineRow> = BTreeMap::new();
            for l in inv.lines.iter().filter(|l| billed_kind(l.kind)) {
                now.insert((l.kind, l.meter.clone(), l.description.clone()), l);
            }
            let mut keys: Vec<Key> = now.keys().cloned().collect();
            for (s, k) in billed.keys() {
                if *s == sub && !now.contains_key(k) {
                    keys.push(k.clone());
                }
            }
            keys.sort();
            let mut charges = Vec::new();
            for key in keys {
                let (bq, ba) = billed.get(&(sub.clone(), key.clone())).copied().unwrap_or_default();
                let (nq, na) =
                    now.get(&key).map_or((Decimal::ZERO, Decimal::ZERO), |l| (l.quantity, billed_amount(l.amount, &l.breakdown)));
                if nq == bq && na == ba {
                    continue;
                }
                let (kind, meter, line) = key;
                let delta = na - ba;
                let breakdown = json!({
                    "adjusts_period": period,
                    "adjusts_invoice": old.invoice_id.to_string(),
                    "adjusts_number": old.number,
                    "subscription_id": sub,
                    "line_kind": LineKind::name_of(kind),
                    "meter": meter,
                    "line": line,
                    "billed_quantity": bq.normalize().to_string(),
                    "rerated_quantity": nq.normalize().to_string(),
                    "billed_amount": ba.to_string(),
                    "rerated_amount": na.to_string(),
                });
                let desc = format!("Adjustment {period} ({}): {line}", old.number);
                let mut c = Charge::new(LineKind::Adjustment, desc, nq - bq, "adjustment", delta, breakdown);
                c.meter = meter;
                charges.push(c);
            }
            let net: Decimal = charges.iter().map(|c| c.unrounded).sum();
            if charges.is_empty() {
                continue;
            }
            if net < Decimal::ZERO {
                out.negative.push(NegativeAdjustment {
                    subscription_id: sub,
                    period: period.clone(),
                    invoice_number: old.number.clone(),
                    net,
                });
            } else {
                out.lines.entry(sub).or_default().extend(charges);
            }
        }
    }
    Ok(out)
}

/// The amount a line bills in the plan's own terms: the gross of a tax-inclusive line (the tax
/// step replaced its amount by the net), else its amount.
fn billed_amount(amount: Decimal, breakdown: &str) -> Decimal {
    serde_json::from_str::<serde_json::Value>(breakdown).ok().and_then(|b| gross_of(&b)).unwrap_or(amount)
}

fn gross_of(breakdown: &serde_json::Value) -> Option<Decimal> {
    breakdown["tax_inclusive"]["gross"].as_str().and_then(|g| Decimal::from_str_exact(g).ok())
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct StoredAdjustment {
    breakdown: String,
    quantity: String,
    amount: String,
}

/// Adjustment lines for `period` on current lines of invoices of later periods before `until`,
/// not voided: (subscription, line key, quantity, amount).
async fn earlier_adjustments(ch: &ClickHouse, period: &str, until: &str) -> Result<Vec<(String, Key, Decimal, Decimal)>> {
    let rows: Vec<StoredAdjustment> = ch
        .client()
        .query(
            "SELECT breakdown, toString(quantity) AS quantity, toString(amount) AS amount FROM invoice_lines FINAL \
             WHERE kind = 'adjustment' AND period > ? AND period < ? \
             AND (invoice_id, version) IN (SELECT invoice_id, lines_version FROM invoices_current WHERE status != 'void')",
        )
        .bind(period)
        .bind(until)
        .fetch_all()
        .await?;
    let mut out = Vec::new();
    for r in rows {
        let b: serde_json::Value = serde_json::from_str(&r.breakdown)?;
        if b["adjusts_period"].as_str() != Some(period) {
            continue;
        }
        let kind = LineKind::ALL.iter().find(|k| Some(k.name()) == b["line_kind"].as_str()).map_or(0, |k| *k as i8);
        let key = (kind, b["meter"].as_str().unwrap_or_default().to_owned(), b["line"].as_str().unwrap_or_default().to_owned());
        let dec = |s: &str| Decimal::from_str_exact(s).unwrap_or_default();
        let amount = gross_of(&b).unwrap_or_else(|| dec(&r.amount));
        out.push((b["subscription_id"].as_str().unwrap_or_default().to_owned(), key, dec(&r.quantity), amount));
    }
    Ok(out)
}
