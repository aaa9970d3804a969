//! Current spend: the open period rated as if it closed now, written to ClickHouse
//! `current_spend` so dashboards and alerts see what each subscription has run up so far.
//!
//! A refresh uses exactly the close's code (rate, build, round), then keeps the pre-tax parts.
//! Every refresh inserts a new version of each row; nothing is updated in place.
//!
//! Refreshes are incremental ([`Refresher`]): each reads only the ledger segments written since
//! the previous one, so a refresh costs the new usage, not the whole period so far.
//!
//! "The open period" is per subscription: the cycle containing now ([`compute_open`]), labelled
//! like its close, so a quarterly subscription shows the quarter so far under the quarter's label
//! while a monthly one shows this month's cycle. [`compute`] rates one given label instead.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use meterline_rater::{PeriodUsage, RatedSubscription};
use meterline_schemas::catalog::Catalog;
use meterline_schemas::clickhouse::ClickHouse;
use meterline_schemas::invoice::{LineKind, SpendRow};
use meterline_schemas::money::RoundingMode;
use meterline_schemas::period::PeriodLabel;

use crate::build::build_invoices;
use crate::credits::CreditUsage;
use crate::error::Result;
use crate::writer::insert_all;

/// Current spend kept up to date incrementally: per period label, the usage read so far
/// ([`PeriodUsage`]: the close's fold, percentage totals and rated calls, all additive) and the
/// rows last computed. Each refresh lists the ledger, reads only the segments it has not read
/// yet, and prices again, with the close's code, only the subscriptions those segments have
/// usage of ([`PeriodUsage::rate_touched`]); the others' rows stand. A refresh therefore costs
/// the new segments and the subscriptions they touch, not the whole period so far nor every
/// subscription. The usage of a label is rebuilt from the whole ledger (and every subscription
/// priced) when the catalog scoped to it changes (new subscriptions, plan changes) or a segment
/// it read is gone.
#[derive(Debug, Default)]
pub struct Refresher {
    periods: BTreeMap<PeriodLabel, Kept>,
    /// Segments read by the last refresh (all labels).
    pub last_read: usize,
    /// Rows computed anew by the last refresh (all labels): the subscriptions it priced.
    pub last_changed: usize,
}

/// What a [`Refresher`] keeps of one label.
#[derive(Debug)]
struct Kept {
    catalog: Catalog,
    usage: PeriodUsage,
    rows: BTreeMap<String, SpendRow>,
}

impl Refresher {
    /// One row per active subscription: of `label`'s cycles when given, else of each
    /// subscription's open cycle at `now` (the one containing it) under that cycle's own label.
    /// Rows in subscription id order. A row keeps the `as_of` and `version` of the refresh that
    /// last changed it.
    pub async fn compute(
        &mut self,
        ledger_root: &Path,
        catalog: &Catalog,
        label: Option<PeriodLabel>,
        now: DateTime<Utc>,
        rounding: RoundingMode,
    ) -> Result<Vec<SpendRow>> {
        self.update(ledger_root, catalog, label, now, rounding).await?;
        let mut rows: Vec<SpendRow> = self.periods.values().flat_map(|k| k.rows.values().cloned()).collect();
        rows.sort_by(|a, b| a.subscription_id.cmp(&b.subscription_id));
        Ok(rows)
    }

    /// Brings the kept rows up to date; returns the rows that changed (in subscription id
    /// order within a label).
    async fn update(
        &mut self,
        ledger_root: &Path,
        catalog: &Catalog,
        label: Option<PeriodLabel>,
        now: DateTime<Utc>,
        rounding: RoundingMode,
    ) -> Result<Vec<SpendRow>> {
        let mut by_label: BTreeMap<PeriodLabel, Option<Catalog>> = BTreeMap::new();
        match label {
            // Compared with the kept catalog as it is; cloned only to start over.
            Some(label) => {
                by_label.insert(label, None);
            }
            None => {
                for s in catalog.subscriptions.values().filter(|s| s.start <= now && s.end.is_none_or(|e| now < e)) {
                    let label = s.cycle_containing(now).label;
                    let scoped =
                        by_label.entry(label).or_insert_with(|| Some(Catalog { subscriptions: BTreeMap::new(), ..catalog.clone() }));
                    if let Some(scoped) = scoped {
                        scoped.subscriptions.insert(s.id.clone(), s.clone());
                    }
                }
            }
        }
        self.periods.retain(|l, _| by_label.contains_key(l));
        self.last_read = 0;
        let mut changed = Vec::new();
        for (label, scoped) in by_label {
            let wanted = scoped.as_ref().unwrap_or(catalog);
            let mut kept = match self.periods.remove(&label) {
                Some(k) if k.catalog == *wanted => k,
                _ => {
                    let usage = PeriodUsage::new(wanted, label, false)?;
                    Kept { catalog: scoped.unwrap_or_else(|| catalog.clone()), usage, rows: BTreeMap::new() }
                }
            };
            let files = kept.usage.files(ledger_root)?;
            if !kept.usage.still_matches(&files) {
                tracing::warn!(period = %label, "a ledger segment read earlier is gone: current spend re-reads the period");
                kept.usage = PeriodUsage::new(&kept.catalog, label, false)?;
                kept.rows.clear();
            }
            self.last_read += kept.usage.add(&files).await?;
            // Fresh usage: every subscription; otherwise those the new segments touched.
            let rated = if kept.rows.is_empty() { kept.usage.rate(&kept.catalog)? } else { kept.usage.rate_touched(&kept.catalog)? };
            for row in rows_of(&rated, &kept.catalog, label, rounding, now)? {
                kept.rows.insert(row.subscription_id.clone(), row.clone());
                changed.push(row);
            }
            self.periods.insert(label, kept);
        }
        self.last_changed = changed.len();
        Ok(changed)
    }

    /// Brings current spend up to date as of now ([`Refresher::compute`]) and writes the rows
    /// that changed to ClickHouse `current_spend`; returns those rows (every active
    /// subscription's on the first refresh, afterwards only those with new usage).
    pub async fn refresh(
        &mut self,
        ch: &ClickHouse,
        ledger_root: &Path,
        catalog: &Catalog,
        label: Option<PeriodLabel>,
        rounding: RoundingMode,
    ) -> Result<Vec<SpendRow>> {
        let rows = self.update(ledger_root, catalog, label, Utc::now(), rounding).await?;
        if !rows.is_empty() {
            insert_all(ch.client(), "current_spend", &rows.iter().collect::<Vec<_>>()).await?;
        }
        Ok(rows)
    }
}

/// The spend rows of a rated period: the close's invoices, before tax and credits.
fn rows_of(
    rated: &[RatedSubscription],
    catalog: &Catalog,
    label: PeriodLabel,
    rounding: RoundingMode,
    now: DateTime<Utc>,
) -> Result<Vec<SpendRow>> {
    // Spend is before tax and credits, so earlier periods' credit use does not matter here.
    let invoices = build_invoices(rated, catalog, label, rounding, &CreditUsage::none())?;
    let version = u64::try_from(now.timestamp_micros()).unwrap_or_default();
    Ok(invoices
        .iter()
        .map(|inv| {
            let sum = |kinds: &[LineKind]| -> Decimal {
                inv.lines.iter().filter(|l| kinds.iter().any(|k| *k as i8 == l.kind)).map(|l| l.amount).sum()
            };
            let usage_amount = sum(&[LineKind::Usage, LineKind::Commitment]);
            let fees = sum(&[LineKind::Recurring, LineKind::Seats]);
            let discounts = sum(&[LineKind::Discount]);
            SpendRow {
                subscription_id: inv.row.subscription_id.clone(),
                customer: inv.row.customer.clone(),
                period: inv.row.period.clone(),
                currency: inv.row.currency.clone(),
                usage_amount,
                fees,
                subtotal: usage_amount + fees + discounts,
                ledger_rows: inv.lines.iter().map(|l| l.event_count).sum(),
                as_of: u32::try_from(now.timestamp()).unwrap_or(u32::MAX),
                version,
            }
        })
        .collect())
}

/// Rates `label` as of now from the whole ledger and returns one row per active subscription.
pub async fn compute(ledger_root: &Path, catalog: &Catalog, label: PeriodLabel, rounding: RoundingMode) -> Result<Vec<SpendRow>> {
    Refresher::default().compute(ledger_root, catalog, Some(label), Utc::now(), rounding).await
}

/// Rates each subscription's open cycle (the one containing `now`) from the whole ledger:
/// subscriptions are grouped by the label that closes their open cycle and each group is rated
/// like [`compute`]. Subscriptions not active at `now` have no row. Rows in subscription id order.
pub async fn compute_open(ledger_root: &Path, catalog: &Catalog, now: DateTime<Utc>, rounding: RoundingMode) -> Result<Vec<SpendRow>> {
    Refresher::default().compute(ledger_root, catalog, None, now, rounding).await
}

/// Computes and writes one refresh of every subscription's open cycle ([`compute_open`]);
/// returns the rows written.
pub async fn refresh_open(ch: &ClickHouse, ledger_root: &Path, catalog: &Catalog, rounding: RoundingMode) -> Result<Vec<SpendRow>> {
    Refresher::default().refresh(ch, ledger_root, catalog, None, rounding).await
}

/// Computes and writes one refresh of `label`; returns the rows written.
pub async fn refresh(
    ch: &ClickHouse,
    ledger_root: &Path,
    catalog: &Catalog,
    label: PeriodLabel,
    rounding: RoundingMode,
) -> Result<Vec<SpendRow>> {
    Refresher::default().refresh(ch, ledger_root, catalog, Some(label), rounding).await
}

/// The latest spend rows of a period.
pub async fn read(ch: &ClickHouse, period: &str) -> Result<Vec<SpendRow>> {
    Ok(ch
        .client()
        .query("SELECT ?fields FROM current_spend FINAL WHERE period = ? ORDER BY subscription_id")
        .bind(period)
        .fetch_all::<SpendRow>()
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meterline_schemas::catalog::CatalogFile;

    #[tokio::test]
    async fn open_cycles_are_each_subscriptions_own() {
        let catalog = CatalogFile::parse(
            r#"
tax_rates: [ { jurisdiction: NONE, name: no tax, rate: "0" } ]
plans:
  - { key: m, versions: [ { version: 1, currency: USD, recurring_fee: "30" } ] }
  - { key: q, versions: [ { version: 1, currency: USD, recurring_fee: "90" } ] }
  - { key: y, versions: [ { version: 1, currency: USD, recurring_fee: "1200" } ] }
customers: [ { key: a, name: A, currency: USD, jurisdiction: NONE } ]
subscriptions:
  - { id: s-month, customer: a, plan: m, plan_version: 1, start: "2026-01-15T00:00:00Z" }
  - { id: s-quarter, customer: a, plan: q, plan_version: 1, start: "2026-11-01T00:00:00Z", cycle: quarterly, alignment: calendar }
  - { id: s-year, customer: a, plan: y, plan_version: 1, start: "2026-03-15T00:00:00Z", cycle: annual }
  - { id: s-ended, customer: a, plan: m, plan_version: 1, start: "2026-01-01T00:00:00Z", end: "2026-11-01T00:00:00Z" }
  - { id: s-later, customer: a, plan: m, plan_version: 1, start: "2026-12-01T00:00:00Z" }
"#,
            "yaml",
        )
        .unwrap()
        .validate(&Catalog::default())
        .unwrap();
        let ledger = tempfile::tempdir().unwrap();
        let now = DateTime::parse_from_rfc3339("2026-11-26T00:00:00Z").unwrap().to_utc();
        let rows = compute_open(ledger.path(), &catalog, now, RoundingMode::HalfEven).await.unwrap();
        let got: Vec<(&str, &str, String)> =
            rows.iter().map(|r| (r.subscription_id.as_str(), r.period.as_str(), r.fees.to_string())).collect();
        // s-month (anchor 15): [15 Nov, 15 Dec), label 2026-11, fee 30.00.
        // s-quarter: calendar Q4 [1 Oct, 1 Jan), label 2026-12, active from 1 Nov: 61 of 92 days,
        //   90 x 61 / 92 = 5490 / 92 = 59.673... -> 59.67.
        // s-year: [15 Mar 2026, 15 Mar 2027), label 2027-02, 1200.00.
        // s-ended and s-later are not active now: no row.
        assert_eq!(
            got,
            vec![
                ("s-month", "2026-11", "30.00".to_owned()),
                ("s-quarter", "2026-12", "59.67".to_owned()),
                ("s-year", "2027-02", "1200.00".to_owned()),
            ]
        );
    }
}
