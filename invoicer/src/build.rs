//! Rated usage → invoices. Every line is rounded exactly once, by
//! [`meterline_schemas::money::round_line`]; subtotal, tax and total are sums of rounded lines.
//!
//! Line order:
//! 1. fixed charges: the recurring fee, then seats (`fees.rs`: arrears or advance);
//! 2. usage lines in the plan's price order;
//! 3. the minimum-commitment true-up when usage (before discounts) falls short;
//! 4. coupon discounts, meter coupons first (`discounts.rs`);
//! 5. tax (`tax.rs`): the provider's treatment and rates; where a rate changes inside the window
//!    every earlier line is split per rate period; inclusive prices become net lines; one tax
//!    line per rate period (or one zero line with the reverse-charge or exemption note), rounded
//!    per invoice or per line;
//! 6. prepaid credits applied to the amount due after tax (`credits.rs`).
//!
//! Header: `subtotal` = lines 1–4, `tax` = line 5, `total` = the amount due = every line; the
//! `*_base` columns convert them into the reporting currency at the catalog's FX rate of the
//! issue day (dashboards only, left out of the content hash).

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde_json::json;

use meterline_rater::RatedSubscription;
use meterline_schemas::catalog::Catalog;
use meterline_schemas::invoice::{InvoiceLineRow, InvoiceRow, InvoiceStatus, LineKind};
use meterline_schemas::money::{COLUMN_SCALE, Currency, RoundingMode, round_line};
use meterline_schemas::period::PeriodLabel;

use crate::credits::{CreditUsage, apply_credits};
use crate::discounts::discounts;
use crate::error::{Error, Result};
use crate::fees::fixed_charges;
use crate::ids::invoice_id;
use crate::settings::Settings;
use crate::tax::{TaxContext, TaxRequest, UsageByTaxPeriod, apply_tax};
use crate::terms;

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

/// A line before it is rounded and numbered.
#[derive(Debug, Clone)]
pub struct Charge {
    pub kind: LineKind,
    pub description: String,
    pub meter: String,
    pub quantity: Decimal,
    pub event_count: u64,
    pub model: String,
    /// The exact amount; the line's `amount` is `round_line` of it.
    pub unrounded: Decimal,
    pub breakdown: serde_json::Value,
    pub segments: Vec<String>,
}

impl Charge {
    pub(crate) fn new(
        kind: LineKind,
        description: String,
        quantity: Decimal,
        model: &str,
        unrounded: Decimal,
        breakdown: serde_json::Value,
    ) -> Self {
        Charge {
            kind,
            description,
            meter: String::new(),
            quantity,
            event_count: 0,
            model: model.to_owned(),
            unrounded,
            breakdown,
            segments: Vec::new(),
        }
    }
}

/// Builds the invoices of `label` from rated subscriptions. `credits` holds what earlier
/// periods' invoices used of each credit grant ([`CreditUsage::load_before`]). `billing` is a
/// [`Settings`] or just a rounding mode (the defaults otherwise). Without the ledger at hand, usage
/// lines cut by a tax rate change are split by time share; the close uses
/// [`build_invoices_with_usage`] to split them by event time.
pub fn build_invoices(
    rated: &[RatedSubscription],
    catalog: &Catalog,
    label: PeriodLabel,
    billing: impl Into<Settings>,
    credits: &CreditUsage,
) -> Result<Vec<Invoice>> {
    build_invoices_with(rated, catalog, label, &billing.into(), credits, &UsageByTaxPeriod::default(), &BTreeMap::new())
}

/// [`build_invoices`] with the usage of each tax period read from the ledger
/// ([`crate::tax::usage_by_tax_period`]).
pub fn build_invoices_with_usage(
    rated: &[RatedSubscription],
    catalog: &Catalog,
    label: PeriodLabel,
    billing: &Settings,
    credits: &CreditUsage,
    usage_parts: &UsageByTaxPeriod,
) -> Result<Vec<Invoice>> {
    build_invoices_with(rated, catalog, label, billing, credits, usage_parts, &BTreeMap::new())
}

/// [`build_invoices_with_usage`] with adjustment lines for late usage of earlier periods, by
/// subscription (`adjustments.rs`); they are charges before tax, placed after the discounts.
pub fn build_invoices_with(
    rated: &[RatedSubscription],
    catalog: &Catalog,
    label: PeriodLabel,
    billing: &Settings,
    credits: &CreditUsage,
    usage_parts: &UsageByTaxPeriod,
    adjustments: &BTreeMap<String, Vec<Charge>>,
) -> Result<Vec<Invoice>> {
    let provider = billing.provider(catalog);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_BUILD_THREADS);
    // Invoices of one customer stay on one thread, in subscription order: prepaid credits burn
    // down across them. Each thread builds its customers' invoices in order and stops at its
    // first error; the error of the lowest subscription index is the one a sequential build
    // would have returned.
    let shards = if rated.len() < PARALLEL_MIN { 1 } else { threads };
    let shard_of = |r: &RatedSubscription| (xxhash_rust::xxh3::xxh3_64(r.customer.key.as_bytes()) % shards as u64) as usize;
    let build_shard = |shard: usize| -> std::result::Result<Vec<(usize, Invoice)>, (usize, Error)> {
        let mut usage = credits.clone();
        let mut out = Vec::new();
        for (i, r) in rated.iter().enumerate().filter(|(_, r)| shards == 1 || shard_of(r) == shard) {
            let tax = TaxInputs { provider: provider.as_ref(), usage_parts };
            let inv = build_one(r, catalog, label, billing, tax, &mut usage, adjustments.get(&r.subscription.id)).map_err(|e| (i, e))?;
            out.push((i, inv));
        }
        Ok(out)
    };
    let parts: Vec<_> = if shards == 1 {
        vec![build_shard(0)]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..shards).map(|t| s.spawn(move || build_shard(t))).collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
        })
    };
    let mut slots: Vec<Option<Invoice>> = (0..rated.len()).map(|_| None).collect();
    let mut first_error: Option<(usize, Error)> = None;
    for part in parts {
        match part {
            Ok(built) => built.into_iter().for_each(|(i, inv)| slots[i] = Some(inv)),
            Err((i, e)) if first_error.as_ref().is_none_or(|(j, _)| i < *j) => first_error = Some((i, e)),
            Err(_) => {}
        }
    }
    if let Some((_, e)) = first_error {
        return Err(e);
    }
    Ok(slots.into_iter().flatten().collect())
}

/// Threads building invoices at most (the close's build stage is CPU-bound).
const MAX_BUILD_THREADS: usize = 8;
/// Below this many subscriptions the build runs on the calling thread.
const PARALLEL_MIN: usize = 1_000;

/// What the tax step of one invoice needs besides the settings.
struct TaxInputs<'a> {
    provider: &'a dyn crate::tax::TaxProvider,
    usage_parts: &'a UsageByTaxPeriod,
}

fn build_one(
    r: &RatedSubscription,
    catalog: &Catalog,
    label: PeriodLabel,
    billing: &Settings,
    tax_in: TaxInputs<'_>,
    credits: &mut CreditUsage,
    adjustments: Option<&Vec<Charge>>,
) -> Result<Invoice> {
    let rounding: RoundingMode = billing.rounding;
    let period = label.to_string();
    let currency: Currency = r.plan.currency;
    let id = invoice_id(&r.subscription.id, &period, FIRST_REVISION);
    let period_start = secs(r.window.period_start);
    let mut lines = Vec::new();
    // The one place a line's amount is rounded.
    let line = |c: Charge| InvoiceLineRow {
        invoice_id: id,
        line_no: 0,
        kind: c.kind as i8,
        customer: r.customer.key.clone(),
        period: period.clone(),
        period_start,
        currency: currency.code().to_owned(),
        description: c.description,
        meter: c.meter,
        quantity: column_quantity(c.quantity),
        event_count: c.event_count,
        price_model: c.model,
        plan: r.plan.plan.clone(),
        plan_version: r.plan.version,
        amount: round_line(c.unrounded, currency, rounding),
        amount_unrounded: c.unrounded.normalize().to_string(),
        rounding_mode: rounding.as_str().to_owned(),
        breakdown: c.breakdown.to_string(),
        segments: c.segments,
        version: 1,
    };

    lines.extend(fixed_charges(r, label)?.into_iter().map(&line));

    for u in &r.usage {
        if let Some(t) = &u.telecom {
            lines.extend(telecom_lines(u, t, catalog).into_iter().map(&line));
            continue;
        }
        let mut breakdown = json!({
            "aggregation": u.aggregation.to_string(),
            "quantity": u.quantity.to_string(),
            "model": u.model,
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
        let mut c = Charge::new(LineKind::Usage, meter_name, u.quantity, u.model, u.priced.amount, breakdown);
        c.meter = u.meter.clone();
        c.event_count = u.event_count;
        c.segments = u.segments.clone();
        lines.push(line(c));
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
            let desc = "Minimum commitment true-up".to_owned();
            lines.push(line(Charge::new(LineKind::Commitment, desc, Decimal::ONE, "minimum_commitment", shortfall, breakdown)));
        }
    }

    let discount_lines = discounts(r, catalog, label, &lines, currency, rounding)?;
    lines.extend(discount_lines.into_iter().map(&line));
    lines.extend(adjustments.into_iter().flatten().cloned().map(&line));

    let determination = tax_in.provider.determine(&TaxRequest::of(r, billing.seller_country.as_deref()))?;
    let ctx = TaxContext { rated: r, currency, rounding, tax_rounding: billing.tax_rounding, usage: tax_in.usage_parts };
    let (pre_tax, tax_lines) = apply_tax(lines, &determination, &ctx)?;
    lines = pre_tax;
    let subtotal: Decimal = lines.iter().map(|l| l.amount).sum();
    let mut tax = Decimal::ZERO;
    for t in tax_lines {
        let mut l = line(Charge::new(LineKind::Tax, t.description, t.taxable, "tax", t.unrounded, t.breakdown));
        l.amount = t.amount; // per-line rounding: a sum of rounded amounts (equal to round(unrounded) per invoice)
        tax += t.amount;
        lines.push(l);
    }

    let credit_lines = apply_credits(r, catalog, subtotal + tax, currency, credits);
    lines.extend(credit_lines.into_iter().map(&line));
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
        total: lines.iter().map(|l| l.amount).sum(),
        line_count: u32::try_from(lines.len()).unwrap_or(u32::MAX),
        status: InvoiceStatus::Draft as i8,
        number: String::new(),
        status_at: secs(r.window.period_end),
        lines_version: 1,
        revision: FIRST_REVISION,
        content_hash: 0,
        issued_at: secs(r.window.period_end),
        // Provisional while a draft (issued at the cycle end); fixed at finalization (close.rs).
        due_at: terms::due_at(secs(r.window.period_end), terms::terms_days(billing, Some(&r.customer))),
        version: 1,
        reporting_currency: String::new(),
        subtotal_base: Decimal::ZERO,
        tax_base: Decimal::ZERO,
        total_base: Decimal::ZERO,
        fx_rate: Decimal::ZERO,
        fx_date: 0,
    };
    if let Some(reporting) = billing.reporting_currency {
        to_reporting_currency(&mut row, catalog, reporting, rounding, r.window.period_end);
    }
    row.content_hash = content_hash(&row, &mut lines)?;
    Ok(Invoice { row, lines })
}

/// A telecom price's lines, one per (matched prefix, band, price per minute), in that order.
/// Each line's exact amount is `Σ connect fees + (Σ billed seconds) × price ÷ 60` (seconds summed
/// before the one division, `meterline_rater::calls`), rounded once like every line. The quantity
/// is the billed seconds (exact; minutes would not terminate); the breakdown has the parts. A
/// period without calls gets no line.
fn telecom_lines(u: &meterline_rater::RatedUsage, t: &meterline_rater::calls::TelecomUsage, catalog: &Catalog) -> Vec<Charge> {
    let meter_name = catalog.meters.get(&u.meter).and_then(|m| m.name.clone()).unwrap_or_else(|| u.meter.clone());
    t.lines
        .iter()
        .map(|l| {
            let prefix = if l.matched_prefix.is_empty() { "*".to_owned() } else { format!("+{}", l.matched_prefix) };
            // Unique per line (rerate matches lines by kind, meter and description).
            let description = format!("{meter_name}: {} ({prefix}), {} at {}/min", l.description, l.band, l.price_per_minute);
            let breakdown = json!({
                "rate_table": t.rate_table,
                "matched_prefix": l.matched_prefix,
                "description": l.description,
                "band": l.band,
                "price_per_minute": l.price_per_minute.to_string(),
                "calls": l.calls,
                "answered": l.answered,
                "duration_secs": l.duration_secs,
                "billed_secs": l.billed_secs,
                "connect_fees": l.connect_fees.to_string(),
                "usage_amount": l.usage_amount.to_string(),
            });
            let mut c = Charge::new(LineKind::Usage, description, Decimal::from(l.billed_secs), "telecom", l.amount, breakdown);
            c.meter = u.meter.clone();
            c.event_count = l.calls;
            let mut segments: Vec<String> = t
                .calls
                .iter()
                .filter(|r| {
                    r.call.matched_prefix == l.matched_prefix
                        && r.call.band == l.band
                        && r.call.price_per_minute.normalize() == l.price_per_minute
                })
                .map(|r| r.segment.clone())
                .collect();
            segments.sort();
            segments.dedup();
            c.segments = segments;
            c
        })
        .collect()
}

/// Fills the reporting-currency columns: the FX rate of the pair in effect on the issue day (the
/// latest catalog entry dated on or before it; 1 for the same currency), each amount converted
/// and rounded on its own to the reporting currency's minor unit with the line rounding mode.
/// No rate: `fx_rate` 0 and zero amounts (dashboards filter `fx_rate > 0`); the close does not
/// fail, since these columns are never what the customer owes.
fn to_reporting_currency(
    row: &mut InvoiceRow,
    catalog: &Catalog,
    reporting: Currency,
    rounding: RoundingMode,
    issued: chrono::DateTime<chrono::Utc>,
) {
    let day = issued.date_naive();
    let epoch_days = |d: chrono::NaiveDate| u16::try_from((d - chrono::NaiveDate::default()).num_days()).unwrap_or(0);
    row.reporting_currency = reporting.code().to_owned();
    let (rate, date) = if row.currency == reporting.code() {
        (Decimal::ONE, epoch_days(day))
    } else {
        match catalog.fx_rate_on(&row.currency, reporting.code(), day) {
            Some(fx) => (fx.rate, epoch_days(fx.date)),
            None => {
                tracing::warn!(invoice = %row.invoice_id, from = %row.currency, to = %reporting, %day, "no fx rate; *_base left at 0");
                return;
            }
        }
    };
    row.fx_rate = rate;
    row.fx_date = date;
    row.subtotal_base = round_line(row.subtotal * rate, reporting, rounding);
    row.tax_base = round_line(row.tax * rate, reporting, rounding);
    row.total_base = round_line(row.total * rate, reporting, rounding);
}

/// xxh3-64 of the canonical JSON of the header and its lines, without the lifecycle fields
/// (`content_hash`, `status`, `number`, `status_at`, `due_at`, `lines_version`, the versions)
/// and without the reporting-currency columns (`reporting_currency`, `*_base`, `fx_rate`,
/// `fx_date`): the same content hashes the same whether draft, finalized or paid, and neither an
/// FX table corrected later nor changed payment terms ever turn a stored invoice into a conflict
/// (those columns are not what the customer owes).
///
/// The lines' `version` is hashed as 0: it is set to 0 while hashing and restored after, so no
/// line is copied; the JSON is streamed into the hasher through a 4 KiB stack buffer (the
/// serializer's many small writes each cost the streaming hasher a call otherwise; the bytes
/// hashed, so the hash, are the same).
pub fn content_hash(row: &InvoiceRow, lines: &mut [InvoiceLineRow]) -> Result<u64> {
    let r = InvoiceRow {
        content_hash: 0,
        status: 0,
        number: String::new(),
        status_at: 0,
        due_at: 0,
        lines_version: 0,
        version: 0,
        reporting_currency: String::new(),
        subtotal_base: Decimal::ZERO,
        tax_base: Decimal::ZERO,
        total_base: Decimal::ZERO,
        fx_rate: Decimal::ZERO,
        fx_date: 0,
        ..row.clone()
    };
    let versions: Vec<u64> = lines.iter_mut().map(|l| std::mem::take(&mut l.version)).collect();
    let mut hasher = HashWriter { hash: xxhash_rust::xxh3::Xxh3::new(), buf: [0; HASH_BUFFER], len: 0 };
    let written = serde_json::to_writer(&mut hasher, &(r, &*lines));
    for (l, v) in lines.iter_mut().zip(versions) {
        l.version = v;
    }
    written?;
    Ok(hasher.digest())
}

const HASH_BUFFER: usize = 4096;

/// An `io::Write` feeding a streaming xxh3 in chunks of up to [`HASH_BUFFER`] bytes.
struct HashWriter {
    hash: xxhash_rust::xxh3::Xxh3,
    buf: [u8; HASH_BUFFER],
    len: usize,
}

impl HashWriter {
    fn digest(mut self) -> u64 {
        self.hash.update(&self.buf[..self.len]);
        self.hash.digest()
    }
}

impl std::io::Write for HashWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.len + data.len() > HASH_BUFFER {
            self.hash.update(&self.buf[..self.len]);
            self.len = 0;
            if data.len() > HASH_BUFFER {
                self.hash.update(data);
                return Ok(data.len());
            }
        }
        self.buf[self.len..self.len + data.len()].copy_from_slice(data);
        self.len += data.len();
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffered_hashing_equals_one_shot_hashing() {
        use std::io::Write as _;
        let mut rng = fastrand::Rng::with_seed(3);
        let data: Vec<u8> = (0..20_000).map(|_| rng.u8(..)).collect();
        let mut w = HashWriter { hash: xxhash_rust::xxh3::Xxh3::new(), buf: [0; HASH_BUFFER], len: 0 };
        let mut at = 0;
        // Writes of 0 to 6,000 bytes: below, across and above the buffer's size.
        while at < data.len() {
            let n = rng.usize(0..6_000).min(data.len() - at);
            w.write_all(&data[at..at + n]).unwrap();
            at += n;
        }
        assert_eq!(w.digest(), xxhash_rust::xxh3::xxh3_64(&data));
    }
}
