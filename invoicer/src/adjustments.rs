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
//! inclusive price of the late usage.
//!
//! When the net of a subscription's adjustments for Q is negative (a volume tier reached by late
//! usage can lower the amount), no lines are added to P's invoice: the close issues a **credit
//! note on Q's invoice** instead ([`LateCredit`], `credit_notes::issue_late`). Its lines credit
//! the opposite of each change (a line whose usage rose is a negative credit line), taxed as Q's
//! invoice was: the provider's determination for Q's window, one tax line per rate (lines of a
//! window cut by a rate change keep the rate of their part), the configured tax rounding; on
//! tax-inclusive plans the gross change is credited and its tax extracted, so the note's total is
//! exactly the inclusive price of the usage that went away. Each credit line records the change
//! in its breakdown (`delta_quantity`, `delta_amount`), and later closes count it as billed for Q
//! like an adjustment line, so the credit is issued once.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::Duration;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use meterline_rater::RatedSubscription;
use meterline_schemas::catalog::Catalog;
use meterline_schemas::clickhouse::ClickHouse;
use meterline_schemas::invoice::{InvoiceLineRow, InvoiceRow, InvoiceStatus, LineKind};
use meterline_schemas::money::round_line;
use meterline_schemas::period::PeriodLabel;

use crate::build::{Charge, build_invoices_with_usage};
use crate::credits::CreditUsage;
use crate::error::Result;
use crate::settings::Settings;
use crate::tax::{TaxContext, TaxDetermination, TaxProvider, TaxRequest, UsageByTaxPeriod, apply_tax, usage_by_tax_period};
use crate::writer::current_headers;

/// A credit note to issue on a finalized invoice of period `period` because its late usage nets
/// negative (module doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LateCredit {
    /// Subscription.
    pub subscription_id: String,
    /// The period adjusted.
    pub period: String,
    /// Its invoice.
    pub invoice_id: Uuid,
    /// Its invoice number.
    pub invoice_number: String,
    /// The invoice's currency.
    pub currency: String,
    /// Net change in the plan's own terms (gross on tax-inclusive plans): negative.
    pub net: Decimal,
    /// The credit note's lines: one per changed line, then the tax lines.
    pub lines: Vec<LateCreditLine>,
}

/// One line of a [`LateCredit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LateCreditLine {
    /// The line of the credited invoice it refers to (0: none, e.g. a line no longer there).
    pub invoice_line_no: u32,
    /// Description.
    pub description: String,
    /// Amount credited (pre-tax for charge lines; tax lines carry the tax).
    pub amount: Decimal,
    /// What it credits (JSON object).
    pub breakdown: String,
}

impl LateCredit {
    /// The credit note's amount, tax included.
    pub fn amount(&self) -> Decimal {
        self.lines.iter().map(|l| l.amount).sum()
    }

    /// What identifies this credit (its lines), for its deterministic id.
    pub fn content(&self) -> String {
        let mut s = self.period.clone();
        for l in &self.lines {
            s.push('\u{1f}');
            s.push_str(&l.description);
            s.push('\u{1f}');
            s.push_str(&l.amount.normalize().to_string());
            s.push('\u{1f}');
            s.push_str(&l.breakdown);
        }
        s
    }
}

/// Adjustments for one close.
#[derive(Debug, Clone, Default)]
pub struct Adjustments {
    /// Adjustment lines by subscription.
    pub lines: BTreeMap<String, Vec<Charge>>,
    /// Credit notes to issue for late usage netting negative, by period then subscription.
    pub credits: Vec<LateCredit>,
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
        let mut line_nos: HashMap<(String, Key), u32> = HashMap::new();
        for l in crate::writer::list_lines(ch, &period).await?.into_iter().filter(|l| billed_kind(l.kind)) {
            if let Some(inv) = stored.values().find(|r| r.invoice_id == l.invoice_id) {
                let key = (inv.subscription_id.clone(), (l.kind, l.meter.clone(), l.description.clone()));
                line_nos.insert(key.clone(), l.line_no);
                let e = billed.entry(key).or_default();
                e.0 += l.quantity;
                e.1 += billed_amount(l.amount, &l.breakdown);
            }
        }
        // Credited: late-usage credit notes on q's invoices count like adjustment lines.
        let mut changes = earlier_adjustments(ch, &period, &label.to_string()).await?;
        changes.extend(credited(ch, &period).await?);
        for (sub, key, qty, amount) in changes {
            let e = billed.entry((sub, key)).or_default();
            e.0 += qty;
            e.1 += amount;
        }
        let rated = meterline_rater::rate_period(ledger_root, catalog, q).await?;
        let credits = CreditUsage::load_before(ch, catalog, q).await?;
        // Re-rated with the same settings and tax step as the close that billed q, so unchanged
        // usage gives unchanged (net) lines.
        let provider = settings.provider(catalog);
        let parts = usage_by_tax_period(ledger_root, &rated, settings, provider.as_ref()).await?;
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
                let Some(r) = rated.iter().find(|r| r.subscription.id == sub) else { continue };
                out.credits.push(late_credit(r, old, &period, net, charges, &line_nos, settings, provider.as_ref())?);
            } else {
                out.lines.entry(sub).or_default().extend(charges);
            }
        }
    }
    out.credits.sort_by(|a, b| (&a.period, &a.subscription_id).cmp(&(&b.period, &b.subscription_id)));
    Ok(out)
}

/// The credit note for one subscription's negative net for `period` (module doc): the opposite of
/// each change, taxed as `old` (the invoice of `period`) was.
#[allow(clippy::too_many_arguments)]
fn late_credit(
    r: &RatedSubscription,
    old: &InvoiceRow,
    period: &str,
    net: Decimal,
    charges: Vec<Charge>,
    line_nos: &HashMap<(String, Key), u32>,
    settings: &Settings,
    provider: &dyn TaxProvider,
) -> Result<LateCredit> {
    let currency = r.plan.currency;
    let sub = &r.subscription.id;
    let rows: Vec<(InvoiceLineRow, String)> = charges
        .into_iter()
        .map(|c| {
            let adjusted = adjusted_line(&c.breakdown, period).unwrap_or_default();
            let line = adjusted.1.2.clone();
            let mut b = c.breakdown;
            b["delta_quantity"] = json!(c.quantity.normalize().to_string());
            b["delta_amount"] = json!(c.unrounded.to_string());
            let row = InvoiceLineRow {
                invoice_id: old.invoice_id,
                line_no: line_nos.get(&adjusted).copied().unwrap_or(0),
                kind: LineKind::Adjustment as i8,
                customer: old.customer.clone(),
                period: period.to_owned(),
                period_start: old.period_start,
                currency: old.currency.clone(),
                description: format!("Late usage {period}: {line}"),
                meter: c.meter,
                quantity: -c.quantity,
                event_count: 0,
                price_model: "adjustment".to_owned(),
                plan: r.plan.plan.clone(),
                plan_version: r.plan.version,
                // The opposite of a difference of rounded amounts: already on the grid.
                amount: round_line(-c.unrounded, currency, settings.rounding),
                amount_unrounded: (-c.unrounded).normalize().to_string(),
                rounding_mode: settings.rounding.as_str().to_owned(),
                breakdown: b.to_string(),
                segments: Vec::new(),
                version: 1,
            };
            (row, line)
        })
        .collect();

    // Taxed as q's invoice: with several dated rates, each line keeps the rate of the part of
    // the window its (split) line was billed in.
    let det = provider.determine(&TaxRequest::of(r, settings.seller_country.as_deref()))?;
    let mut groups: Vec<(TaxDetermination, Vec<InvoiceLineRow>)> = Vec::new();
    match &det {
        TaxDetermination::Standard { periods } if periods.len() > 1 => {
            for (i, p) in periods.iter().enumerate() {
                let last_day = (p.until - Duration::seconds(1)).date_naive();
                let suffix = format!("[{} to {last_day}]", p.from.date_naive());
                let last = i + 1 == periods.len();
                let mine: Vec<InvoiceLineRow> = rows
                    .iter()
                    .filter(|(_, line)| {
                        line.ends_with(&suffix)
                            || (last && !periods.iter().any(|q| line.ends_with(&format!("[{} to", q.from.date_naive()))))
                    })
                    .map(|(row, _)| row.clone())
                    .collect();
                if !mine.is_empty() {
                    groups.push((TaxDetermination::Standard { periods: vec![p.clone()] }, mine));
                }
            }
        }
        _ => groups.push((det.clone(), rows.into_iter().map(|(row, _)| row).collect())),
    }
    let usage = UsageByTaxPeriod::default();
    let ctx = TaxContext { rated: r, currency, rounding: settings.rounding, tax_rounding: settings.tax_rounding, usage: &usage };
    let mut lines = Vec::new();
    let mut taxes = Vec::new();
    for (d, group) in groups {
        let (pre, tax) = apply_tax(group, &d, &ctx)?;
        lines.extend(pre.into_iter().map(|l| LateCreditLine {
            invoice_line_no: l.line_no,
            description: l.description,
            amount: l.amount,
            breakdown: l.breakdown,
        }));
        taxes.extend(tax.into_iter().map(|t| {
            let mut b = t.breakdown;
            b["tax"] = json!(true);
            LateCreditLine { invoice_line_no: 0, description: t.description, amount: t.amount, breakdown: b.to_string() }
        }));
    }
    lines.extend(taxes);
    Ok(LateCredit {
        subscription_id: sub.clone(),
        period: period.to_owned(),
        invoice_id: old.invoice_id,
        invoice_number: old.number.clone(),
        currency: old.currency.clone(),
        net,
        lines,
    })
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
        if let Some((sub, key)) = adjusted_line(&b, period) {
            let amount = gross_of(&b).unwrap_or_else(|| dec(&r.amount));
            out.push((sub, key, dec(&r.quantity), amount));
        }
    }
    Ok(out)
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str_exact(s).unwrap_or_default()
}

/// The subscription and line key an adjustment or late-usage credit of `period` changes.
fn adjusted_line(b: &serde_json::Value, period: &str) -> Option<(String, Key)> {
    if b["adjusts_period"].as_str() != Some(period) {
        return None;
    }
    let kind = LineKind::ALL.iter().find(|k| Some(k.name()) == b["line_kind"].as_str()).map_or(0, |k| *k as i8);
    let key = (kind, b["meter"].as_str().unwrap_or_default().to_owned(), b["line"].as_str().unwrap_or_default().to_owned());
    Some((b["subscription_id"].as_str().unwrap_or_default().to_owned(), key))
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct CreditedLine {
    breakdown: String,
}

/// Changes already credited for `period` by late-usage credit notes on its invoices:
/// (subscription, line key, quantity change, amount change in the plan's terms).
async fn credited(ch: &ClickHouse, period: &str) -> Result<Vec<(String, Key, Decimal, Decimal)>> {
    let rows: Vec<CreditedLine> = ch
        .client()
        .query(
            "SELECT breakdown FROM credit_note_lines FINAL \
             WHERE breakdown != '{}' AND credit_note_id IN (SELECT credit_note_id FROM credit_notes WHERE period = ?)",
        )
        .bind(period)
        .fetch_all()
        .await?;
    let mut out = Vec::new();
    for r in rows {
        let b: serde_json::Value = serde_json::from_str(&r.breakdown)?;
        if let (Some((sub, key)), Some(q), Some(a)) = (adjusted_line(&b, period), b["delta_quantity"].as_str(), b["delta_amount"].as_str())
        {
            out.push((sub, key, dec(q), dec(a)));
        }
    }
    Ok(out)
}
