//! Re-rating: recompute a period from the raw ledger and compare with what was invoiced, without
//! writing anything. Differences come from late usage (events that arrived after the close) or
//! from a catalog that changed since; the invoicing issue turns them into adjustment lines.

use std::collections::HashMap;
use std::path::Path;

use rust_decimal::Decimal;
use serde::Serialize;

use meterline_schemas::catalog::Catalog;
use meterline_schemas::clickhouse::ClickHouse;
use meterline_schemas::period::PeriodLabel;

use crate::credits::CreditUsage;
use crate::error::Result;
use crate::writer::{list_invoices, list_lines};

/// One line whose amount or quantity changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineDiff {
    /// Subscription.
    pub subscription_id: String,
    /// Customer.
    pub customer: String,
    /// Currency.
    pub currency: String,
    /// Line description.
    pub description: String,
    /// Meter (empty for fees and tax).
    pub meter: String,
    /// Quantity invoiced / recomputed.
    pub invoiced_quantity: Decimal,
    /// Quantity recomputed from the ledger.
    pub rerated_quantity: Decimal,
    /// Amount invoiced.
    pub invoiced_amount: Decimal,
    /// Amount recomputed.
    pub rerated_amount: Decimal,
    /// `rerated − invoiced`.
    pub delta: Decimal,
}

/// What re-rating found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RerateReport {
    /// Invoices compared and identical.
    pub unchanged: usize,
    /// Lines that differ.
    pub differences: Vec<LineDiff>,
    /// Subscriptions with usage or fees this period but no stored invoice.
    pub not_invoiced: Vec<String>,
}

/// Recomputes `label` (optionally for one customer) and compares with stored invoices.
pub async fn rerate(
    ch: &ClickHouse,
    ledger_root: &Path,
    catalog: &Catalog,
    label: PeriodLabel,
    billing: impl Into<crate::settings::Settings>,
    customer: Option<&str>,
) -> Result<RerateReport> {
    let billing = billing.into();
    let mut scoped = catalog.clone();
    if let Some(c) = customer {
        scoped.subscriptions.retain(|_, s| s.customer == c);
    }
    let rated = meterline_rater::rate_period(ledger_root, &scoped, label).await?;
    let credits = CreditUsage::load_before(ch, catalog, label).await?;
    let parts = crate::tax::usage_by_tax_period(ledger_root, &rated, &billing, billing.provider(&scoped).as_ref()).await?;
    let fresh = crate::build::build_invoices_with_usage(&rated, &scoped, label, &billing, &credits, &parts)?;
    let period = label.to_string();
    let stored: HashMap<_, _> = list_invoices(ch, &period).await?.into_iter().map(|i| (i.invoice_id, i)).collect();
    let mut stored_lines: HashMap<_, Vec<_>> = HashMap::new();
    for l in list_lines(ch, &period).await? {
        stored_lines.entry(l.invoice_id).or_default().push(l);
    }
    let mut report = RerateReport::default();
    for inv in &fresh {
        let Some(old) = stored.get(&inv.row.invoice_id) else {
            report.not_invoiced.push(inv.row.subscription_id.clone());
            continue;
        };
        if old.content_hash == inv.row.content_hash {
            report.unchanged += 1;
            continue;
        }
        let old_lines = stored_lines.remove(&inv.row.invoice_id).unwrap_or_default();
        // Lines are matched by (kind, meter, description): line numbers shift when a line
        // (a true-up, a tax line) appears or disappears.
        let key = |kind: i8, meter: &str, desc: &str| (kind, meter.to_owned(), desc.to_owned());
        let mut old_by_key: HashMap<_, _> = old_lines.iter().map(|l| (key(l.kind, &l.meter, &l.description), l)).collect();
        for l in &inv.lines {
            let old = old_by_key.remove(&key(l.kind, &l.meter, &l.description));
            let (oq, oa) = old.map_or((Decimal::ZERO, Decimal::ZERO), |o| (o.quantity, o.amount));
            if oq != l.quantity || oa != l.amount {
                report.differences.push(diff(inv, &l.description, &l.meter, (oq, oa), (l.quantity, l.amount)));
            }
        }
        for (_, o) in old_by_key {
            report.differences.push(diff(inv, &o.description, &o.meter, (o.quantity, o.amount), (Decimal::ZERO, Decimal::ZERO)));
        }
    }
    Ok(report)
}

fn diff(inv: &crate::build::Invoice, description: &str, meter: &str, old: (Decimal, Decimal), new: (Decimal, Decimal)) -> LineDiff {
    LineDiff {
        subscription_id: inv.row.subscription_id.clone(),
        customer: inv.row.customer.clone(),
        currency: inv.row.currency.clone(),
        description: description.to_owned(),
        meter: meter.to_owned(),
        invoiced_quantity: old.0,
        rerated_quantity: new.0,
        invoiced_amount: old.1,
        rerated_amount: new.1,
        delta: new.1 - old.1,
    }
}
