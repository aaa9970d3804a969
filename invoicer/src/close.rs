//! The period close: catalog + ledger + period → invoices in ClickHouse.

use std::path::Path;
use std::time::{Duration, Instant};

use meterline_schemas::catalog::Catalog;
use meterline_schemas::clickhouse::ClickHouse;
use meterline_schemas::period::PeriodLabel;

use crate::build::{Invoice, build_invoices_with_usage};
use crate::credits::CreditUsage;
use crate::error::Result;
use crate::tax::{Billing, usage_by_tax_period};
use crate::writer::{WriteSummary, write_invoices};

/// What a close did and how long it took.
#[derive(Debug, Clone)]
pub struct CloseReport {
    /// The invoices computed (whether or not newly written).
    pub invoices: Vec<Invoice>,
    /// Ledger rows (one per event and meter) aggregated into usage lines.
    pub rows_rated: u64,
    /// Time spent aggregating and pricing.
    pub rate_time: Duration,
    /// Time spent writing to ClickHouse.
    pub write_time: Duration,
    /// What the write did.
    pub write: WriteSummary,
}

/// Closes `label`: rates every active subscription from the ledger at `ledger_root`, builds the
/// invoices and writes what is not stored yet. `billing` is a [`Billing`] or just a rounding mode.
pub async fn close_period(
    ch: &ClickHouse,
    ledger_root: &Path,
    catalog: &Catalog,
    label: PeriodLabel,
    billing: impl Into<Billing>,
) -> Result<CloseReport> {
    let billing = billing.into();
    let t0 = Instant::now();
    let rated = meterline_rater::rate_period(ledger_root, catalog, label).await?;
    let rows_rated = rated.iter().flat_map(|r| r.usage.iter()).map(|u| u.event_count).sum();
    let credits = CreditUsage::load_before(ch, catalog, label).await?;
    let parts = usage_by_tax_period(ledger_root, &rated, &billing, billing.provider(catalog).as_ref()).await?;
    let invoices = build_invoices_with_usage(&rated, catalog, label, &billing, &credits, &parts)?;
    let rate_time = t0.elapsed();
    let t1 = Instant::now();
    let write = write_invoices(ch, &label.to_string(), &invoices).await?;
    let write_time = t1.elapsed();
    tracing::info!(period = %label, invoices = invoices.len(), inserted = write.inserted, unchanged = write.unchanged,
        conflicts = write.conflicts.len(), "period closed");
    Ok(CloseReport { invoices, rows_rated, rate_time, write_time, write })
}
