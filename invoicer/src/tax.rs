//! The tax step of an invoice: which rates apply ([`TaxProvider`], with the catalog-driven
//! [`CatalogTaxEngine`] built in), splitting lines where a rate changes inside the billing
//! window, tax-inclusive prices, and tax rounding per invoice or per line. docs/TAX.md explains
//! the rules with worked examples; the golden cases 120–126 pin them.
//!
//! The seam: a provider only *determines* the treatment (standard, reverse charge, exempt) and the
//! dated rates over the window; every amount is computed here, with the invoice's rounding, so an
//! external service can never break "total = sum of rounded lines".
//!
//! Order inside the step, for one invoice whose pre-tax lines are already rounded:
//! 1. the provider answers a [`TaxRequest`] with a [`TaxDetermination`];
//! 2. with several tax periods, every pre-tax line is split into one line per period
//!    ([`split_lines`]): fees, seats and the commitment true-up by time share (seconds of the
//!    window), usage by event time (the share of the meter's value, or of its events for
//!    non-SUM meters, that fell in the period), meter coupons like their meter's line, subtotal
//!    coupons in proportion to the lines before them. Parts are cumulatively rounded, so they add
//!    up to the unsplit line to the minor unit;
//! 3. per period, tax-inclusive lines are turned into net lines and the tax is extracted, or tax
//!    is added to exclusive lines; one tax line per period.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;

use meterline_rater::RatedSubscription;
use meterline_rater::aggregate::{SubWindow, aggregate};
use meterline_schemas::catalog::{Catalog, Customer};
use meterline_schemas::invoice::{InvoiceLineRow, LineKind};
use meterline_schemas::meter::Aggregation;
use meterline_schemas::money::{Currency, RoundingMode, round_line};
use meterline_schemas::tax::{EU_COUNTRIES, TaxRounding, check_vat_id, jurisdiction_candidates};

use crate::error::{Error, Result};
use crate::settings::Settings;

/// The tax provider of [`Settings`].
impl Settings {
    /// The provider in effect: the external one, else the built-in engine over `catalog`.
    pub fn provider<'a>(&'a self, catalog: &'a Catalog) -> Box<dyn TaxProvider + 'a> {
        match &self.provider {
            Some(p) => Box::new(Shared(p.clone())),
            None => Box::new(CatalogTaxEngine { catalog, seller_country: self.seller_country.clone() }),
        }
    }
}

struct Shared(Arc<dyn TaxProvider>);

impl TaxProvider for Shared {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn determine(&self, req: &TaxRequest) -> Result<TaxDetermination> {
        self.0.determine(req)
    }
}

/// What a tax provider is asked, once per invoice (JSON shape in docs/TAX.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaxRequest {
    /// Customer key.
    pub customer: String,
    /// The customer's jurisdiction key (`US-CA`, `DE`).
    pub jurisdiction: String,
    /// The customer's country (ISO alpha-2).
    pub country: String,
    /// The customer's VAT id, when it has one.
    pub vat_id: Option<String>,
    /// Whether the catalog marks the customer exempt, and why.
    pub tax_exempt: bool,
    /// The exemption reason.
    pub tax_exempt_reason: Option<String>,
    /// The seller's country, when configured.
    pub seller_country: Option<String>,
    /// Invoice currency.
    pub currency: String,
    /// Whether the plan's prices include tax.
    pub tax_inclusive: bool,
    /// Start of the billed window (the subscription's active part of the period), inclusive.
    pub start: DateTime<Utc>,
    /// End of the billed window, exclusive.
    pub end: DateTime<Utc>,
}

impl TaxRequest {
    /// The request for one rated subscription.
    pub fn of(r: &RatedSubscription, seller_country: Option<&str>) -> TaxRequest {
        let c: &Customer = &r.customer;
        TaxRequest {
            customer: c.key.clone(),
            jurisdiction: c.jurisdiction.clone(),
            country: c.country_code().to_owned(),
            vat_id: c.vat_id.clone(),
            tax_exempt: c.tax_exempt,
            tax_exempt_reason: c.tax_exempt_reason.clone(),
            seller_country: seller_country.map(str::to_owned),
            currency: r.plan.currency.code().to_owned(),
            tax_inclusive: r.plan.tax_inclusive,
            start: r.window.start,
            end: r.window.end,
        }
    }
}

/// How the invoice is taxed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "treatment", rename_all = "snake_case")]
pub enum TaxDetermination {
    /// Tax at the given rates; `periods` cover `[start, end)` of the request in time order,
    /// without gaps.
    Standard {
        /// Dated rates.
        periods: Vec<TaxPeriod>,
    },
    /// EU B2B cross-border: no tax; the customer accounts for it. `note` is printed.
    ReverseCharge {
        /// Text of the invoice's tax line.
        note: String,
    },
    /// No tax; `reason` is printed.
    Exempt {
        /// Why.
        reason: String,
    },
}

/// One rate over a part of the billed window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaxPeriod {
    /// Inclusive.
    pub from: DateTime<Utc>,
    /// Exclusive.
    pub until: DateTime<Utc>,
    /// Jurisdiction of the rate.
    pub jurisdiction: String,
    /// Name printed on the tax line.
    pub name: String,
    /// Rate as a fraction.
    pub rate: Decimal,
}

/// Decides how invoices are taxed. The built-in [`CatalogTaxEngine`] reads the catalog; an
/// external service (Avalara, Vertex, a government API) implements the same trait. It is
/// synchronous because the close is a pure computation: an implementation that calls a network
/// service should fetch its answers before the close (or block on its own runtime) and must be
/// deterministic for the same request, or repeated closes would report conflicts.
pub trait TaxProvider: Send + Sync {
    /// Short name for logs and line breakdowns.
    fn name(&self) -> &str;
    /// The treatment and rates for one invoice.
    fn determine(&self, req: &TaxRequest) -> Result<TaxDetermination>;
}

/// The built-in engine: exemptions, EU reverse charge and dated rates from the catalog.
#[derive(Debug, Clone)]
pub struct CatalogTaxEngine<'a> {
    /// Catalog with `tax_rates`.
    pub catalog: &'a Catalog,
    /// The seller's country; without it reverse charge never applies.
    pub seller_country: Option<String>,
}

/// The note on a reverse-charge invoice's tax line.
pub const REVERSE_CHARGE_NOTE: &str = "Reverse charge: VAT to be accounted for by the recipient (Art. 196 Directive 2006/112/EC)";

impl TaxProvider for CatalogTaxEngine<'_> {
    fn name(&self) -> &str {
        "catalog"
    }

    fn determine(&self, req: &TaxRequest) -> Result<TaxDetermination> {
        if req.tax_exempt {
            return Ok(TaxDetermination::Exempt { reason: req.tax_exempt_reason.clone().unwrap_or_default() });
        }
        let eu = |c: &str| EU_COUNTRIES.contains(&c);
        if let (Some(vat), Some(seller)) = (&req.vat_id, &req.seller_country)
            && let Some(Ok(vat_country)) = check_vat_id(vat)
            && vat_country == req.country
            && eu(seller)
            && eu(&req.country)
            && seller != &req.country
        {
            return Ok(TaxDetermination::ReverseCharge { note: format!("{REVERSE_CHARGE_NOTE}; customer VAT id {vat}") });
        }
        // Cut the window wherever a candidate jurisdiction's dated rate starts or ends.
        let candidates = jurisdiction_candidates(&req.jurisdiction);
        let mut cuts = vec![req.start, req.end];
        for r in self.catalog.tax_rates.values().filter(|r| candidates.contains(&r.jurisdiction)) {
            cuts.extend(r.boundaries().into_iter().filter(|t| req.start < *t && *t < req.end));
        }
        cuts.sort();
        cuts.dedup();
        let mut periods: Vec<TaxPeriod> = Vec::new();
        for w in cuts.windows(2) {
            let rate = self.catalog.tax_rate_at(&req.jurisdiction, w[0]).ok_or_else(|| {
                Error::Catalog(format!("customer {}: no tax rate for jurisdiction {:?} on {}", req.customer, req.jurisdiction, w[0]))
            })?;
            match periods.last_mut() {
                Some(p) if p.jurisdiction == rate.jurisdiction && p.name == rate.name && p.rate == rate.rate => p.until = w[1],
                _ => periods.push(TaxPeriod {
                    from: w[0],
                    until: w[1],
                    jurisdiction: rate.jurisdiction.clone(),
                    name: rate.name.clone(),
                    rate: rate.rate,
                }),
            }
        }
        Ok(TaxDetermination::Standard { periods })
    }
}

/// Per (subscription, meter): `(sum of values, ledger rows)` in each tax period, for
/// subscriptions whose window has more than one.
#[derive(Debug, Clone, Default)]
pub struct UsageByTaxPeriod(HashMap<(String, String), Vec<(Decimal, u64)>>);

/// Reads from the ledger how each subscription's usage falls into its tax periods (only for
/// windows that a rate change cuts; nothing is read otherwise). Asks the provider exactly what the
/// build will ask, so the periods line up.
pub async fn usage_by_tax_period(
    ledger_root: &Path,
    rated: &[RatedSubscription],
    billing: &Settings,
    provider: &dyn TaxProvider,
) -> Result<UsageByTaxPeriod> {
    let mut windows = Vec::new();
    for r in rated {
        let req = TaxRequest::of(r, billing.seller_country.as_deref());
        if let TaxDetermination::Standard { periods } = provider.determine(&req)?
            && periods.len() > 1
        {
            for (i, p) in periods.iter().enumerate() {
                windows.push(SubWindow {
                    subscription: format!("{}\u{1f}{i}", r.subscription.id),
                    customer: r.customer.key.clone(),
                    start: p.from,
                    end: p.until,
                });
            }
        }
    }
    let mut out: HashMap<(String, String), Vec<(Decimal, u64)>> = HashMap::new();
    if windows.is_empty() {
        return Ok(UsageByTaxPeriod(out));
    }
    let aggs = aggregate(ledger_root, &windows, &[], &[]).await?;
    let mut keyed: Vec<_> = aggs.into_iter().collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    for ((sub, meter), a) in keyed {
        let Some((id, i)) = sub.split_once('\u{1f}') else { continue };
        let i: usize = i.parse().unwrap_or_default();
        let parts = out.entry((id.to_owned(), meter)).or_default();
        if parts.len() <= i {
            parts.resize(i + 1, (Decimal::ZERO, 0));
        }
        parts[i] = (a.sum, a.count);
    }
    Ok(UsageByTaxPeriod(out))
}

/// What the tax step needs besides the lines.
pub(crate) struct TaxContext<'a> {
    pub rated: &'a RatedSubscription,
    pub currency: Currency,
    pub rounding: RoundingMode,
    pub tax_rounding: TaxRounding,
    pub usage: &'a UsageByTaxPeriod,
}

/// A tax line before numbering: its fields and its amount (per-line rounding sums rounded
/// amounts, so the amount is not always `round(unrounded)`).
pub(crate) struct TaxLine {
    pub description: String,
    pub taxable: Decimal,
    pub unrounded: Decimal,
    pub amount: Decimal,
    pub breakdown: serde_json::Value,
}

fn ratio(n: Decimal, d: Decimal) -> Decimal {
    if d.is_zero() { Decimal::ZERO } else { n.checked_div(d).unwrap_or_default() }
}

fn seconds(a: DateTime<Utc>, b: DateTime<Utc>) -> Decimal {
    Decimal::from((b - a).num_seconds().max(0))
}

/// `d` with exactly the currency's minor-unit decimals (a difference or sum of rounded amounts is
/// on the grid already, but `rust_decimal` may drop trailing zeros of a zero result).
fn on_grid(mut d: Decimal, currency: Currency) -> Decimal {
    d.rescale(currency.minor_units());
    d
}

/// `amount` split by `shares` (summing to 1) with cumulative rounding: part k is
/// `round(amount × S_k) − round(amount × S_{k−1})` with `S` the running sum of shares, so the
/// parts add up to `amount` exactly and each is within one minor unit of its exact share.
pub(crate) fn split_amount(amount: Decimal, shares: &[Decimal], currency: Currency, mode: RoundingMode) -> Vec<Decimal> {
    let mut out = Vec::with_capacity(shares.len());
    let (mut cum, mut prev) = (Decimal::ZERO, Decimal::ZERO);
    for (i, s) in shares.iter().enumerate() {
        cum += *s;
        let r = if i + 1 == shares.len() { amount } else { round_line(amount * cum, currency, mode) };
        out.push(on_grid(r - prev, currency));
        prev = r;
    }
    out
}

/// Each tax period's share of the billed window, by seconds.
fn time_shares(periods: &[TaxPeriod], ctx: &TaxContext<'_>) -> Vec<Decimal> {
    let w = &ctx.rated.window;
    let total = seconds(w.start, w.end);
    periods.iter().map(|p| ratio(seconds(p.from.max(w.start), p.until.min(w.end)), total)).collect()
}

/// Splits every pre-tax line into one line per tax period (step 2 of the module doc). Returns
/// the lines with the index of their period.
fn split_lines(lines: Vec<InvoiceLineRow>, periods: &[TaxPeriod], ctx: &TaxContext<'_>) -> Vec<(InvoiceLineRow, usize)> {
    if periods.len() <= 1 {
        return lines.into_iter().map(|l| (l, 0)).collect();
    }
    let time = time_shares(periods, ctx);
    let sub = &ctx.rated.subscription.id;
    // Split amounts of earlier lines per period, for subtotal coupons; and of usage lines per
    // meter, for meter coupons.
    let mut before = vec![Decimal::ZERO; periods.len()];
    let mut meter_parts: HashMap<String, Vec<Decimal>> = HashMap::new();
    let mut out = Vec::new();
    for l in lines {
        let kind = l.kind;
        let proportional = |v: &[Decimal]| -> Option<Vec<Decimal>> {
            let sum: Decimal = v.iter().copied().sum();
            (!sum.is_zero()).then(|| v.iter().map(|x| ratio(*x, sum)).collect())
        };
        let mut usage_parts: Option<Vec<(Decimal, u64)>> = None;
        let shares = if kind == LineKind::Usage as i8 {
            let agg = ctx.rated.usage.iter().find(|u| u.meter == l.meter).map(|u| u.aggregation);
            let mut p = ctx.usage.0.get(&(sub.clone(), l.meter.clone())).cloned().unwrap_or_default();
            p.resize(periods.len(), (Decimal::ZERO, 0));
            let values: Vec<Decimal> = p.iter().map(|x| x.0).collect();
            let counts: Vec<Decimal> = p.iter().map(|x| Decimal::from(x.1)).collect();
            usage_parts = Some(p);
            let by_value = if agg == Some(Aggregation::Sum) { proportional(&values) } else { None };
            by_value.or_else(|| proportional(&counts)).unwrap_or_else(|| time.clone())
        } else if kind == LineKind::Discount as i8 {
            let base = if l.meter.is_empty() { Some(before.clone()) } else { meter_parts.get(&l.meter).cloned() };
            base.and_then(|b| proportional(&b)).unwrap_or_else(|| time.clone())
        } else {
            time.clone()
        };
        let amounts = split_amount(l.amount, &shares, ctx.currency, ctx.rounding);
        for (i, a) in amounts.iter().enumerate() {
            before[i] += *a;
        }
        if kind == LineKind::Usage as i8 {
            meter_parts.insert(l.meter.clone(), amounts.clone());
        }
        let exact: Decimal = l.amount_unrounded.parse().unwrap_or(l.amount);
        for (i, p) in periods.iter().enumerate() {
            if shares[i].is_zero() && amounts[i].is_zero() {
                continue;
            }
            let mut part = l.clone();
            part.amount = amounts[i];
            part.amount_unrounded = (exact * shares[i]).normalize().to_string();
            let last_day = (p.until - chrono::Duration::seconds(1)).date_naive();
            part.description = format!("{} [{} to {last_day}]", l.description, p.from.date_naive());
            match &usage_parts {
                Some(up) => {
                    let agg = ctx.rated.usage.iter().find(|u| u.meter == l.meter).map(|u| u.aggregation);
                    part.quantity = match agg {
                        Some(Aggregation::Sum) => up[i].0,
                        Some(Aggregation::Count) => Decimal::from(up[i].1),
                        _ => (l.quantity * shares[i]).round_dp(9),
                    };
                    part.event_count = up[i].1;
                }
                None => part.quantity = (l.quantity * shares[i]).round_dp(9),
            }
            let mut b: serde_json::Value = serde_json::from_str(&l.breakdown).unwrap_or_else(|_| json!({}));
            b["tax_period"] = json!({
                "from": p.from.to_rfc3339(), "until": p.until.to_rfc3339(), "share": shares[i].normalize().to_string(),
                "line_amount": ctx.currency.format(l.amount),
                "split_by": if kind == LineKind::Usage as i8 { "event_time" } else if kind == LineKind::Discount as i8 { "proportional" } else { "time_share" },
            });
            part.breakdown = b.to_string();
            out.push((part, i));
        }
    }
    out
}

/// The tax step (module doc): returns the pre-tax lines (split and, for inclusive prices, net)
/// and the tax lines.
pub(crate) fn apply_tax(
    lines: Vec<InvoiceLineRow>,
    det: &TaxDetermination,
    ctx: &TaxContext<'_>,
) -> Result<(Vec<InvoiceLineRow>, Vec<TaxLine>)> {
    let (cur, mode) = (ctx.currency, ctx.rounding);
    let periods = match det {
        TaxDetermination::Standard { periods } => periods.clone(),
        TaxDetermination::ReverseCharge { note } => {
            let taxable: Decimal = lines.iter().map(|l| l.amount).sum();
            let b =
                json!({ "treatment": "reverse_charge", "rate": "0", "taxable": taxable.to_string(), "vat_id": ctx.rated.customer.vat_id });
            return Ok((
                lines,
                vec![TaxLine {
                    description: note.clone(),
                    taxable,
                    unrounded: Decimal::ZERO,
                    amount: round_line(Decimal::ZERO, cur, mode),
                    breakdown: b,
                }],
            ));
        }
        TaxDetermination::Exempt { reason } => {
            let taxable: Decimal = lines.iter().map(|l| l.amount).sum();
            let b = json!({ "treatment": "exempt", "rate": "0", "taxable": taxable.to_string(), "reason": reason });
            let description = format!("Tax exempt: {reason}");
            return Ok((
                lines,
                vec![TaxLine {
                    description,
                    taxable,
                    unrounded: Decimal::ZERO,
                    amount: round_line(Decimal::ZERO, cur, mode),
                    breakdown: b,
                }],
            ));
        }
    };
    if periods.is_empty() {
        return Err(Error::Catalog(format!("tax provider gave no tax period for customer {}", ctx.rated.customer.key)));
    }
    let mut split = split_lines(lines, &periods, ctx);
    let inclusive = ctx.rated.plan.tax_inclusive;
    let mut tax_lines = Vec::new();
    for (pi, p) in periods.iter().enumerate() {
        let bucket: Vec<usize> = (0..split.len()).filter(|i| split[*i].1 == pi).collect();
        let gross: Decimal = bucket.iter().map(|i| split[*i].0.amount).sum();
        let one_plus = Decimal::ONE + p.rate;
        let (taxable, unrounded, amount) = if p.rate.is_zero() {
            (gross, Decimal::ZERO, Decimal::ZERO)
        } else if inclusive {
            // Extract: net = gross / (1 + rate), rounded; tax = gross − net, so net + tax = gross.
            // Per invoice, the nets are cumulatively rounded: they add up to round(Σ gross / (1 + rate)).
            let (mut cum, mut prev, mut net_sum) = (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
            for i in &bucket {
                let l = &mut split[*i].0;
                let g = l.amount;
                let net = match ctx.tax_rounding {
                    TaxRounding::PerLine => round_line(g / one_plus, cur, mode),
                    TaxRounding::PerInvoice => {
                        cum += g;
                        let r = round_line(cum / one_plus, cur, mode);
                        let n = on_grid(r - prev, cur);
                        prev = r;
                        n
                    }
                };
                let mut b: serde_json::Value = serde_json::from_str(&l.breakdown).unwrap_or_else(|_| json!({}));
                b["tax_inclusive"] = json!({ "gross": cur.format(g), "rate": p.rate.to_string(), "net": cur.format(net) });
                l.breakdown = b.to_string();
                l.amount_unrounded = (g / one_plus).normalize().to_string();
                l.amount = net;
                net_sum += net;
            }
            (net_sum, gross - gross / one_plus, on_grid(gross - net_sum, cur))
        } else {
            let exact = gross * p.rate;
            let amount = match ctx.tax_rounding {
                TaxRounding::PerInvoice => round_line(exact, cur, mode),
                TaxRounding::PerLine => on_grid(bucket.iter().map(|i| round_line(split[*i].0.amount * p.rate, cur, mode)).sum(), cur),
            };
            (gross, exact, amount)
        };
        if p.rate.is_zero() {
            continue; // a zero rate writes no tax line
        }
        let mut breakdown = json!({
            "jurisdiction": p.jurisdiction, "rate": p.rate.to_string(), "taxable": taxable.to_string(),
            "rounding": ctx.tax_rounding.as_str(),
        });
        if inclusive {
            breakdown["tax_inclusive"] = json!({ "gross": cur.format(gross) });
        }
        let mut description = p.name.clone();
        if periods.len() > 1 {
            breakdown["from"] = json!(p.from.to_rfc3339());
            breakdown["until"] = json!(p.until.to_rfc3339());
            let last_day = (p.until - chrono::Duration::seconds(1)).date_naive();
            description = format!("{description} [{} to {last_day}]", p.from.date_naive());
        }
        tax_lines.push(TaxLine { description, taxable, unrounded, amount, breakdown });
    }
    Ok((split.into_iter().map(|(l, _)| l).collect(), tax_lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_split_adds_up() {
        let usd = Currency::from_code("USD").unwrap();
        let third = Decimal::ONE / Decimal::from(3);
        let parts = split_amount(Decimal::new(100, 2), &[third, third, Decimal::ONE - third - third], usd, RoundingMode::HalfEven);
        assert_eq!(parts, vec![Decimal::new(33, 2), Decimal::new(34, 2), Decimal::new(33, 2)]);
        assert_eq!(parts.iter().copied().sum::<Decimal>(), Decimal::new(100, 2));
    }
}
