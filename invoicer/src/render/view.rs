//! The view model: an invoice with every value already formatted for one locale.
//!
//! Templates only place strings; all formatting (money, numbers, dates) happens here in Rust,
//! where it is exact and tested. To show a new invoice field: add it to [`InvoiceView`] (and,
//! if it comes from storage, to [`InvoiceData`]), then use it in the template.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use meterline_schemas::invoice::{InvoiceLineRow, InvoiceRow, InvoiceStatus, LineKind};
use meterline_schemas::money::Currency;

use super::branding::Branding;
use super::locale::{Labels, Locale};
use crate::error::{Error, Result};

/// What a document is made from: the stored invoice and lines, and the customer.
#[derive(Debug, Clone)]
pub struct InvoiceData {
    /// The invoice header.
    pub invoice: InvoiceRow,
    /// Its lines, in line order.
    pub lines: Vec<InvoiceLineRow>,
    /// The customer's display name (the key when the catalog does not know it).
    pub customer_name: String,
    /// BCP 47 locale of the document.
    pub locale: String,
}

impl InvoiceData {
    /// The number printed on the document: the invoice's number (`INV-2026-000123`, assigned at
    /// finalization), or its id for a draft, which has none yet.
    pub fn number(&self) -> String {
        if self.invoice.number.is_empty() { self.invoice.invoice_id.to_string() } else { self.invoice.number.clone() }
    }
}

/// An invoice formatted for one locale: what templates see.
#[derive(Debug, Clone, Serialize)]
pub struct InvoiceView {
    /// `lang` of the HTML document (`de`, `ja`, …).
    pub lang: &'static str,
    /// The locale asked for (e.g. `de-AT`).
    pub locale: String,
    /// Labels in the document's language.
    pub labels: &'static Labels,
    /// Invoice number.
    pub number: String,
    /// Invoice id (UUID).
    pub invoice_id: String,
    /// Period label `YYYY-MM`.
    pub period_label: String,
    /// Status badge text for drafts; none for finalized invoices.
    pub status: Option<&'static str>,
    /// Issue date.
    pub issue_date: String,
    /// Due date: the invoice's stored `due_at` (payment terms, migration 0010); none when it
    /// has none (0). A draft's is provisional: finalization dates it again.
    pub due_date: Option<String>,
    /// Billing period, first to last day.
    pub period: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Plan and version.
    pub plan: String,
    /// Who is billed.
    pub customer: Party,
    /// Who bills.
    pub issuer: Issuer,
    /// Charge lines (fees, usage, seats, commitment, discounts).
    pub lines: Vec<LineView>,
    /// Subtotal before tax.
    pub subtotal: String,
    /// Tax lines, each with its own label (e.g. `USt 19%`).
    pub taxes: Vec<Total>,
    /// Prepaid credits applied (negative amounts).
    pub credits: Vec<Total>,
    /// Amount due.
    pub total: String,
}

/// The customer.
#[derive(Debug, Clone, Serialize)]
pub struct Party {
    /// Display name.
    pub name: String,
    /// Customer key.
    pub key: String,
}

/// The issuer and the look of the document, from `[branding]`.
#[derive(Debug, Clone, Serialize)]
pub struct Issuer {
    /// Legal name.
    pub name: String,
    /// Address lines.
    pub address: Vec<String>,
    /// Tax id, empty for none.
    pub tax_id: String,
    /// Logo as a `data:` URI.
    pub logo: Option<String>,
    /// Primary colour (validated hex).
    pub primary_color: String,
    /// Accent colour (validated hex).
    pub accent_color: String,
    /// Footer lines.
    pub footer: Vec<String>,
}

/// One charge line.
#[derive(Debug, Clone, Serialize)]
pub struct LineView {
    /// Kind name (`usage`, `recurring`, …), for styling.
    pub kind: &'static str,
    /// Description as stored.
    pub description: String,
    /// Quantity, empty where it means nothing to a reader (discounts).
    pub quantity: String,
    /// Unit price, empty for tiered lines (their tiers follow) and discounts.
    pub unit_price: String,
    /// Rounded amount.
    pub amount: String,
    /// Tier rows of graduated, volume, package and matrix prices.
    pub tiers: Vec<TierView>,
}

/// One tier (or matrix group) of a usage line; amounts are exact, before the line's rounding.
#[derive(Debug, Clone, Serialize)]
pub struct TierView {
    /// `Tier 2: 1,001 – 10,000` or the matrix group.
    pub description: String,
    /// Units in the tier.
    pub quantity: String,
    /// The tier's unit price.
    pub unit_price: String,
    /// The tier's exact amount.
    pub amount: String,
}

/// A labelled amount of the totals block.
#[derive(Debug, Clone, Serialize)]
pub struct Total {
    /// Label.
    pub label: String,
    /// Amount.
    pub amount: String,
}

fn day(secs: u32) -> NaiveDate {
    DateTime::<Utc>::from_timestamp(i64::from(secs), 0).unwrap_or_default().date_naive()
}

impl InvoiceView {
    /// Formats `data` in `locale`.
    pub fn build(data: &InvoiceData, locale: &Locale, branding: &Branding) -> Result<InvoiceView> {
        let inv = &data.invoice;
        let currency = Currency::from_code(&inv.currency)?;
        let labels = locale.labels();
        let issued = day(inv.issued_at);
        // The period end is exclusive: the last day billed is the day before.
        let last_day = day(inv.period_end.saturating_sub(1));
        let due_date = (inv.due_at > 0).then(|| locale.date(day(inv.due_at)));
        let money = |d: Decimal| locale.money(d, currency);

        let mut lines = Vec::new();
        let mut taxes = Vec::new();
        let mut credits = Vec::new();
        for l in &data.lines {
            let kind = LineKind::ALL.into_iter().find(|k| *k as i8 == l.kind);
            match kind {
                Some(LineKind::Tax) => taxes.push(Total { label: l.description.clone(), amount: money(l.amount) }),
                Some(LineKind::Credit) => credits.push(Total { label: l.description.clone(), amount: money(l.amount) }),
                _ => lines.push(line_view(l, kind, locale, currency)?),
            }
        }
        Ok(InvoiceView {
            lang: locale.lang.code(),
            locale: locale.requested.clone(),
            labels,
            number: data.number(),
            invoice_id: inv.invoice_id.to_string(),
            period_label: inv.period.clone(),
            status: (inv.status == InvoiceStatus::Draft as i8).then_some(labels.draft),
            issue_date: locale.date(issued),
            due_date,
            period: locale.date_range(day(inv.period_start), last_day),
            currency: inv.currency.clone(),
            plan: format!("{} v{}", inv.plan, inv.plan_version),
            customer: Party { name: data.customer_name.clone(), key: inv.customer.clone() },
            issuer: Issuer {
                name: branding.issuer_name.clone(),
                address: branding.issuer_address.clone(),
                tax_id: branding.issuer_tax_id.clone(),
                logo: branding.logo_data_uri()?,
                primary_color: branding.primary_color.clone(),
                accent_color: branding.accent_color.clone(),
                footer: branding.footer.lines().map(str::to_owned).collect(),
            },
            lines,
            subtotal: money(inv.subtotal),
            taxes,
            credits,
            total: money(inv.total),
        })
    }
}

/// A decimal field of a line breakdown (written as a string by the invoicer).
fn dec(v: &serde_json::Value, key: &str) -> Option<Decimal> {
    v.get(key).and_then(|x| x.as_str()).and_then(meterline_schemas::money::parse_decimal)
}

fn line_view(l: &InvoiceLineRow, kind: Option<LineKind>, locale: &Locale, currency: Currency) -> Result<LineView> {
    let breakdown: serde_json::Value = if l.breakdown.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&l.breakdown).map_err(|e| Error::Render(format!("line {} of {}: breakdown: {e}", l.line_no, l.invoice_id)))?
    };
    let mut view = LineView {
        kind: kind.map_or("unknown", LineKind::name),
        description: l.description.clone(),
        quantity: locale.quantity(l.quantity),
        unit_price: String::new(),
        amount: locale.money(l.amount, currency),
        tiers: Vec::new(),
    };
    match kind {
        Some(LineKind::Recurring) => view.unit_price = dec(&breakdown, "fee").map(|p| locale.unit_price(p, currency)).unwrap_or_default(),
        Some(LineKind::Seats) => {
            view.unit_price = dec(&breakdown, "seat_price").map(|p| locale.unit_price(p, currency)).unwrap_or_default();
        }
        Some(LineKind::Discount) => view.quantity.clear(),
        Some(LineKind::Usage) => {
            let tiers = breakdown.get("tiers").and_then(|t| t.as_array()).cloned().unwrap_or_default();
            let simple = tiers.len() == 1
                && dec(&tiers[0], "flat_fee").is_none_or(|f| f.is_zero())
                && tiers[0].get("packages").is_none()
                && tiers[0].get("group").is_none();
            if simple {
                view.unit_price = dec(&tiers[0], "unit_price").map(|p| locale.unit_price(p, currency)).unwrap_or_default();
            } else {
                view.tiers = tiers.iter().filter_map(|t| tier_view(t, locale, currency)).collect();
            }
        }
        _ => {}
    }
    Ok(view)
}

fn tier_view(t: &serde_json::Value, locale: &Locale, currency: Currency) -> Option<TierView> {
    let quantity = dec(t, "quantity")?;
    if quantity.is_zero() && dec(t, "amount").is_none_or(|a| a.is_zero()) {
        return None;
    }
    let label = locale.labels().tier;
    let description = if let Some(group) = t.get("group").and_then(|g| g.as_str()) {
        group.to_owned()
    } else {
        let n = t.get("tier").and_then(|n| n.as_u64()).unwrap_or(0);
        let from = dec(t, "from").unwrap_or_default();
        match dec(t, "up_to") {
            Some(up) => format!("{label} {n}: {} – {}", locale.quantity(from), locale.quantity(up)),
            None => format!("{label} {n}: > {}", locale.quantity(from)),
        }
    };
    let mut unit_price = dec(t, "unit_price").map(|p| locale.unit_price(p, currency)).unwrap_or_default();
    if let Some(fee) = dec(t, "flat_fee").filter(|f| !f.is_zero()) {
        unit_price = format!("{unit_price} + {}", locale.unit_price(fee, currency));
    }
    // Package prices: the quantity column counts packages; the units they cover follow the label.
    let (description, quantity) = match dec(t, "packages") {
        Some(p) => (format!("{description} ({})", locale.quantity(quantity)), locale.quantity(p)),
        None => (description, locale.quantity(quantity)),
    };
    let amount = dec(t, "amount").map(|a| locale.unit_price(a, currency)).unwrap_or_default();
    Some(TierView { description, quantity, unit_price, amount })
}
