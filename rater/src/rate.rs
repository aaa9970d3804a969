//! Rating a period: each active subscription's window, its meters' quantities, priced usage.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rust_decimal::Decimal;

use meterline_schemas::catalog::{Catalog, Customer, PlanVersion, Subscription};
use meterline_schemas::meter::Aggregation;
use meterline_schemas::period::{PeriodLabel, Window};
use meterline_schemas::price::PriceModel;

use crate::aggregate::{MeterAggregates, SubWindow, aggregate_by_window, aggregate_groups_by_window, for_each_row, for_each_value};
use crate::calls::{RatedCallRecord, TelecomUsage, call_from_row, sum_calls};
use crate::error::{Error, Result};
use crate::pricing::{PercentageTotals, price_line, price_percentage};
use crate::telecom::{TelecomError, rate_call};
use crate::tiers::Priced;

/// Priced usage of one meter for one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatedUsage {
    /// Meter key.
    pub meter: String,
    /// Meter aggregation.
    pub aggregation: Aggregation,
    /// Aggregated quantity.
    pub quantity: Decimal,
    /// Ledger rows behind the quantity.
    pub event_count: u64,
    /// The name of the price model applied (`per_unit`, `graduated`, …).
    pub model: &'static str,
    /// Unrounded amount and tier breakdown.
    pub priced: Priced,
    /// Segments the usage came from.
    pub segments: Vec<String>,
    /// Telecom prices: the rated calls and their lines (`priced.amount` is the lines' sum).
    pub telecom: Option<TelecomUsage>,
}

/// One subscription's rated period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatedSubscription {
    /// The subscription.
    pub subscription: Subscription,
    /// Its customer.
    pub customer: Customer,
    /// The plan version it is on (shared by every subscription on it).
    pub plan: Arc<PlanVersion>,
    /// Cycle and active part.
    pub window: Window,
    /// Usage per priced meter, in the plan's price order.
    pub usage: Vec<RatedUsage>,
    /// The period's value of the plan's `seat_meter`, when it has one.
    pub metered_seats: Option<Decimal>,
}

/// Quantity of a meter from its aggregates.
pub fn quantity(aggregation: Aggregation, a: &MeterAggregates) -> Decimal {
    match aggregation {
        Aggregation::Sum => a.sum,
        Aggregation::Count => Decimal::from(a.count),
        Aggregation::Max => a.max.unwrap_or_default(),
        Aggregation::Min => a.min.unwrap_or_default(),
        // Unrounded; the line amount is rounded once, later.
        Aggregation::Avg if a.count > 0 => a.sum / Decimal::from(a.count),
        Aggregation::Avg => Decimal::ZERO,
        Aggregation::UniqueCount => Decimal::from(a.unique),
        Aggregation::Latest => a.latest.unwrap_or_default(),
    }
}

/// Rates period `label` for every subscription with a cycle closed by `label` and active in it
/// ([`Subscription::window`]: monthly, quarterly or annual), reading the ledger at
/// `ledger_root`. Subscriptions are returned in id order.
pub async fn rate_period(ledger_root: &Path, catalog: &Catalog, label: PeriodLabel) -> Result<Vec<RatedSubscription>> {
    let mut active = Vec::new();
    for s in catalog.subscriptions.values() {
        // Only subscriptions whose cycle `label` closes: a quarterly one every third label.
        if let Some(w) = s.window(label) {
            active.push((s, w));
        }
    }
    let windows: Vec<SubWindow> = active
        .iter()
        .map(|(s, w)| SubWindow { subscription: s.id.clone(), customer: s.customer.clone(), start: w.start, end: w.end })
        .collect();
    let of_kind =
        |agg: Aggregation| -> Vec<String> { catalog.meters.values().filter(|m| m.aggregation == agg).map(|m| m.key.clone()).collect() };
    let (unique_meters, latest_meters) = (of_kind(Aggregation::UniqueCount), of_kind(Aggregation::Latest));
    // Both by window: entry i is active[i]'s.
    let aggregates = aggregate_by_window(ledger_root, &windows, &unique_meters, &latest_meters).await?;
    let mut matrix_meters: Vec<String> = active
        .iter()
        .filter_map(|(s, _)| catalog.plans.get(&(s.plan.clone(), s.plan_version)))
        .flat_map(|p| p.prices.iter())
        .filter(|p| matches!(p.model, PriceModel::Matrix { .. }))
        .map(|p| p.meter.clone())
        .collect();
    matrix_meters.sort();
    matrix_meters.dedup();
    let grouped = aggregate_groups_by_window(ledger_root, &windows, &matrix_meters, &unique_meters, &latest_meters).await?;

    // Percentage prices charge each event: stream the events of those meters once.
    let mut pct_prices: HashMap<(String, String), &PriceModel> = HashMap::new();
    for (s, _) in &active {
        if let Some(plan) = catalog.plans.get(&(s.plan.clone(), s.plan_version)) {
            for p in plan.prices.iter().filter(|p| matches!(p.model, PriceModel::Percentage { .. })) {
                pct_prices.insert((s.id.clone(), p.meter.clone()), &p.model);
            }
        }
    }
    let mut pct_meters: Vec<String> = pct_prices.keys().map(|(_, m)| m.clone()).collect();
    pct_meters.sort();
    pct_meters.dedup();
    let mut pct_totals: HashMap<(String, String), PercentageTotals> = HashMap::new();
    let pct_segments = for_each_value(ledger_root, &windows, &pct_meters, |sub, meter, value| {
        let key = (sub.to_owned(), meter.to_owned());
        match pct_prices.get(&key) {
            Some(model) => pct_totals.entry(key).or_default().add(meter, model, value),
            None => Ok(()), // this subscription's plan prices the meter another way
        }
    })
    .await?;
    let mut telecom = rate_telecom(ledger_root, catalog, &active, &windows).await?;
    let empty = MeterAggregates::default();
    let mut shared_plans: HashMap<(&str, u32), Arc<PlanVersion>> = HashMap::new();
    let mut out = Vec::with_capacity(active.len());
    for (i, (s, window)) in active.into_iter().enumerate() {
        let plan = catalog.plans.get(&(s.plan.clone(), s.plan_version)).ok_or_else(|| Error::Ledger {
            location: "catalog".into(),
            message: format!("subscription {} refers to missing plan {}@{}", s.id, s.plan, s.plan_version),
        })?;
        let customer = catalog.customers.get(&s.customer).ok_or_else(|| Error::Ledger {
            location: "catalog".into(),
            message: format!("subscription {} refers to missing customer {}", s.id, s.customer),
        })?;
        let mut usage = Vec::with_capacity(plan.prices.len());
        for p in &plan.prices {
            let meter = catalog.meters.get(&p.meter).ok_or_else(|| Error::Ledger {
                location: "catalog".into(),
                message: format!("plan {}@{} prices missing meter {}", plan.plan, plan.version, p.meter),
            })?;
            let agg = lookup(&aggregates[i], &p.meter).unwrap_or(&empty);
            let q = quantity(meter.aggregation, agg);
            let groups: Vec<(String, Decimal)> = lookup(&grouped[i], &p.meter)
                .map(|g| g.iter().map(|(k, a)| (k.clone(), quantity(meter.aggregation, a))).collect())
                .unwrap_or_default();
            let key = || (s.id.clone(), p.meter.clone());
            let mut calls = None;
            let (priced, segments) = if let PriceModel::Telecom { rate_table } = &p.model {
                let (usage, segments) = telecom
                    .remove(&key())
                    .unwrap_or_else(|| (TelecomUsage { rate_table: rate_table.clone(), ..Default::default() }, Vec::new()));
                let mut amount = Decimal::ZERO;
                for l in &usage.lines {
                    amount = amount.checked_add(l.amount).ok_or_else(|| Error::Overflow { what: p.meter.clone() })?;
                }
                calls = Some(usage);
                (Priced::new(amount, Vec::new()), segments)
            } else if matches!(p.model, PriceModel::Percentage { .. }) {
                let totals = pct_totals.remove(&key()).unwrap_or_default();
                (price_percentage(p, totals), pct_segments.get(&key()).cloned().unwrap_or_default())
            } else {
                (price_line(p, q, &groups)?, agg.segments.clone())
            };
            usage.push(RatedUsage {
                meter: p.meter.clone(),
                aggregation: meter.aggregation,
                quantity: q,
                event_count: agg.count,
                model: p.model.name(),
                priced,
                segments,
                telecom: calls,
            });
        }
        let metered_seats = match &plan.seat_meter {
            Some(m) => {
                let meter = catalog.meters.get(m).ok_or_else(|| Error::Ledger {
                    location: "catalog".into(),
                    message: format!("plan {}@{} counts seats with missing meter {m}", plan.plan, plan.version),
                })?;
                Some(quantity(meter.aggregation, lookup(&aggregates[i], m).unwrap_or(&empty)))
            }
            None => None,
        };
        out.push(RatedSubscription {
            subscription: s.clone(),
            customer: customer.clone(),
            plan: shared_plans.entry((plan.plan.as_str(), plan.version)).or_insert_with(|| Arc::new(plan.clone())).clone(),
            window,
            usage,
            metered_seats,
        });
    }
    Ok(out)
}

/// The value of `meter` among one window's (meter, value) pairs (a handful).
fn lookup<'a, T>(meters: &'a [(String, T)], meter: &str) -> Option<&'a T> {
    meters.iter().find(|(m, _)| m == meter).map(|(_, v)| v)
}

/// Rates every call record of the telecom-priced meters in the windows, per (subscription,
/// meter): the usage (rated calls and their lines) and the sorted segments they came from. A
/// record that cannot be rated fails the period with an error naming it: nothing is dropped.
async fn rate_telecom(
    ledger_root: &Path,
    catalog: &Catalog,
    active: &[(&Subscription, Window)],
    windows: &[SubWindow],
) -> Result<HashMap<(String, String), (TelecomUsage, Vec<String>)>> {
    let mut tables = HashMap::new();
    for (s, _) in active {
        if let Some(plan) = catalog.plans.get(&(s.plan.clone(), s.plan_version)) {
            for p in &plan.prices {
                if let PriceModel::Telecom { rate_table } = &p.model {
                    let table = catalog.rate_tables.get(rate_table).ok_or_else(|| Error::Ledger {
                        location: "catalog".into(),
                        message: format!(
                            "plan {}@{} prices meter {} with missing rate table {rate_table}",
                            plan.plan, plan.version, p.meter
                        ),
                    })?;
                    tables.insert((s.id.clone(), p.meter.clone()), table);
                }
            }
        }
    }
    let mut meters: Vec<String> = tables.keys().map(|(_, m)| m.clone()).collect();
    meters.sort();
    meters.dedup();
    let customers: HashMap<&str, &str> = active.iter().map(|(s, _)| (s.id.as_str(), s.customer.as_str())).collect();
    let mut out: HashMap<(String, String), (TelecomUsage, std::collections::BTreeSet<String>)> = HashMap::new();
    for_each_row(ledger_root, windows, &meters, |row| {
        let key = (row.subscription.to_owned(), row.meter.to_owned());
        let Some(table) = tables.get(&key) else { return Ok(()) }; // priced another way by this plan
        let customer = customers.get(row.subscription).copied().unwrap_or_default();
        let failed = |source: TelecomError| Error::Call {
            event_id: row.event_id.to_owned(),
            customer: customer.to_owned(),
            meter: row.meter.to_owned(),
            source: Box::new(source),
        };
        let record = call_from_row(row.event_id, row.time, row.value, row.data).map_err(failed)?;
        let call = rate_call(table, &record).map_err(failed)?;
        let entry =
            out.entry(key).or_insert_with(|| (TelecomUsage { rate_table: table.key.clone(), ..Default::default() }, Default::default()));
        entry.0.calls.push(RatedCallRecord {
            event_id: row.event_id.to_owned(),
            source: row.source.to_owned(),
            customer: customer.to_owned(),
            subscription: row.subscription.to_owned(),
            meter: row.meter.to_owned(),
            rate_table: table.key.clone(),
            event_time: row.time,
            segment: row.segment.to_owned(),
            destination: record.destination,
            answered_at: record.start,
            call,
        });
        entry.1.insert(row.segment.to_owned());
        Ok(())
    })
    .await?;
    let mut done = HashMap::with_capacity(out.len());
    for (key, (mut usage, segments)) in out {
        // Stored and shown in time order; the ledger's event-key order is only deterministic.
        usage.calls.sort_by(|a, b| (a.event_time, &a.event_id, &a.source).cmp(&(b.event_time, &b.event_id, &b.source)));
        let rated: Vec<_> = usage.calls.iter().map(|c| c.call.clone()).collect();
        usage.lines = sum_calls(&rated).map_err(|source| Error::Call {
            event_id: String::new(),
            customer: customers.get(key.0.as_str()).copied().unwrap_or_default().to_owned(),
            meter: key.1.clone(),
            source: Box::new(source),
        })?;
        done.insert(key, (usage, segments.into_iter().collect()));
    }
    Ok(done)
}
