//! Rating a period: each active subscription's window, its meters' quantities, priced usage.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rust_decimal::Decimal;

use meterline_schemas::catalog::{Catalog, Customer, PlanVersion, Subscription};
use meterline_schemas::meter::Aggregation;
use meterline_schemas::period::{PeriodLabel, Window};
use meterline_schemas::price::PriceModel;

use crate::aggregate::{
    MeterAggregates, SubWindow, by_meter, by_meter_groups, fold_files, for_each_row_in, for_each_value_in, window_files,
};
use crate::calls::{CallLines, RatedCallRecord, TelecomUsage, call_from_row};
use crate::error::{Error, Result};
use crate::fold::{FoldState, Wanted};
use crate::pricing::{PercentageTotals, price_line, price_percentage};
use crate::telecom::{RateIndex, TelecomError};
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
    let mut usage = PeriodUsage::new(catalog, label, true)?;
    usage.add(&usage.files(ledger_root)?).await?;
    usage.rate(catalog)
}

/// Per (subscription, meter) key of the maps below.
type Key = (String, String);

/// The calls of one telecom price so far.
#[derive(Debug, Default)]
struct Calls {
    lines: CallLines,
    /// Every rated call (the close stores them); empty when not kept.
    records: Vec<RatedCallRecord>,
    segments: BTreeSet<String>,
}

/// What rating a period reads from the ledger, for each active subscription's window: every
/// meter's aggregates (and per group key for matrix-priced meters), the totals of percentage
/// prices and the rated calls of telecom prices. All of it is additive over ledger rows, so
/// segments can be added at any time ([`PeriodUsage::add`]) and the period priced again
/// ([`PeriodUsage::rate`]) with exactly the close's code, without reading earlier segments again:
/// current spend adds each new segment once. Files are immutable once in the ledger, and each is
/// read once however often it is offered.
pub struct PeriodUsage {
    active: Vec<(Subscription, Window)>,
    windows: Vec<SubWindow>,
    all: FoldState,
    /// Matrix-priced meters, folded per group key.
    matrix_meters: Vec<String>,
    grouped: FoldState,
    pct_prices: HashMap<Key, PriceModel>,
    pct_meters: Vec<String>,
    pct_totals: HashMap<Key, PercentageTotals>,
    pct_segments: HashMap<Key, BTreeSet<String>>,
    /// The rate table (indexed, shared between subscriptions) of each telecom price.
    tables: HashMap<Key, Arc<RateIndex>>,
    telecom_meters: Vec<String>,
    calls: HashMap<Key, Calls>,
    keep_calls: bool,
    added: BTreeSet<PathBuf>,
}

impl std::fmt::Debug for PeriodUsage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeriodUsage").field("subscriptions", &self.active.len()).field("files", &self.added.len()).finish_non_exhaustive()
    }
}

impl PeriodUsage {
    /// The usage of `label` under `catalog`, with nothing added yet. `keep_calls` keeps every
    /// rated call record (the close writes them); without it only their lines' sums are kept.
    pub fn new(catalog: &Catalog, label: PeriodLabel, keep_calls: bool) -> Result<PeriodUsage> {
        let mut active = Vec::new();
        for s in catalog.subscriptions.values() {
            // Only subscriptions whose cycle `label` closes: a quarterly one every third label.
            if let Some(w) = s.window(label) {
                active.push((s.clone(), w));
            }
        }
        let windows: Vec<SubWindow> = active
            .iter()
            .map(|(s, w)| SubWindow { subscription: s.id.clone(), customer: s.customer.clone(), start: w.start, end: w.end })
            .collect();
        let of_kind =
            |agg: Aggregation| -> Vec<String> { catalog.meters.values().filter(|m| m.aggregation == agg).map(|m| m.key.clone()).collect() };
        let (unique_meters, latest_meters) = (of_kind(Aggregation::UniqueCount), of_kind(Aggregation::Latest));
        let prices = || {
            active
                .iter()
                .filter_map(|(s, _)| catalog.plans.get(&(s.plan.clone(), s.plan_version)).map(|p| (s, p)))
                .flat_map(|(s, p)| p.prices.iter().map(move |price| (s, p, price)))
        };
        let mut matrix_meters: Vec<String> =
            prices().filter(|(_, _, p)| matches!(p.model, PriceModel::Matrix { .. })).map(|(_, _, p)| p.meter.clone()).collect();
        matrix_meters.sort();
        matrix_meters.dedup();
        // Percentage prices charge each event: their events are streamed.
        let pct_prices: HashMap<Key, PriceModel> = prices()
            .filter(|(_, _, p)| matches!(p.model, PriceModel::Percentage { .. }))
            .map(|(s, _, p)| ((s.id.clone(), p.meter.clone()), p.model.clone()))
            .collect();
        let mut tables = HashMap::new();
        let mut indexes: HashMap<&str, Arc<RateIndex>> = HashMap::new();
        for (s, plan, p) in prices() {
            if let PriceModel::Telecom { rate_table } = &p.model {
                let table = catalog.rate_tables.get(rate_table).ok_or_else(|| Error::Ledger {
                    location: "catalog".into(),
                    message: format!("plan {}@{} prices meter {} with missing rate table {rate_table}", plan.plan, plan.version, p.meter),
                })?;
                let index = indexes.entry(rate_table.as_str()).or_insert_with(|| Arc::new(RateIndex::new(table.clone())));
                tables.insert((s.id.clone(), p.meter.clone()), index.clone());
            }
        }
        let distinct = |keys: Vec<String>| {
            let mut v = keys;
            v.sort();
            v.dedup();
            v
        };
        let pct_meters = distinct(pct_prices.keys().map(|(_, m)| m.clone()).collect());
        let telecom_meters = distinct(tables.keys().map(|(_, m)| m.clone()).collect());
        let only = |list: &[String]| list.iter().filter(|m| matrix_meters.contains(m)).cloned().collect::<Vec<_>>();
        let all =
            FoldState::new(&windows, Wanted { grouped: false, unique_meters: unique_meters.clone(), latest_meters: latest_meters.clone() });
        let grouped =
            FoldState::new(&windows, Wanted { grouped: true, unique_meters: only(&unique_meters), latest_meters: only(&latest_meters) });
        Ok(PeriodUsage {
            active,
            windows,
            all,
            matrix_meters,
            grouped,
            pct_prices,
            pct_meters,
            pct_totals: HashMap::new(),
            pct_segments: HashMap::new(),
            tables,
            telecom_meters,
            calls: HashMap::new(),
            keep_calls,
            added: BTreeSet::new(),
        })
    }

    /// The ledger files under `ledger_root` this period reads (those of the months its windows
    /// overlap), sorted, whether added already or not.
    pub fn files(&self, ledger_root: &Path) -> Result<Vec<PathBuf>> {
        window_files(ledger_root, &self.windows)
    }

    /// Whether every file added so far is still among `files` (the ledger is append-only; a file
    /// that went away means this usage no longer matches the ledger and must be rebuilt).
    pub fn still_matches(&self, files: &[PathBuf]) -> bool {
        let now: BTreeSet<&PathBuf> = files.iter().collect();
        self.added.iter().all(|f| now.contains(f))
    }

    /// Number of files added so far.
    pub fn added(&self) -> usize {
        self.added.len()
    }

    /// Reads those of `files` (complete ledger segments) not added before into the usage;
    /// returns how many were new.
    pub async fn add(&mut self, files: &[PathBuf]) -> Result<usize> {
        let new: Vec<PathBuf> = files.iter().filter(|f| !self.added.contains(*f)).cloned().collect();
        if !new.is_empty() && !self.windows.is_empty() {
            self.read(&new).await?;
        }
        self.added.extend(new.iter().cloned());
        Ok(new.len())
    }

    async fn read(&mut self, files: &[PathBuf]) -> Result<()> {
        fold_files(&mut self.all, files, &self.windows, None).await?;
        if !self.matrix_meters.is_empty() {
            fold_files(&mut self.grouped, files, &self.windows, Some(&self.matrix_meters)).await?;
        }
        let (pct_prices, pct_totals) = (&self.pct_prices, &mut self.pct_totals);
        for_each_value_in(files, &self.windows, &self.pct_meters, &mut self.pct_segments, |sub, meter, value| {
            let key = (sub.to_owned(), meter.to_owned());
            match pct_prices.get(&key) {
                Some(model) => pct_totals.entry(key).or_default().add(meter, model, value),
                None => Ok(()), // this subscription's plan prices the meter another way
            }
        })
        .await?;
        self.add_calls(files).await
    }

    /// Rates every call record of the telecom-priced meters in `files`. A record that cannot be
    /// rated fails with an error naming it: nothing is dropped.
    async fn add_calls(&mut self, files: &[PathBuf]) -> Result<()> {
        let customers: HashMap<&str, &str> = self.active.iter().map(|(s, _)| (s.id.as_str(), s.customer.as_str())).collect();
        let (tables, calls, keep) = (&self.tables, &mut self.calls, self.keep_calls);
        for_each_row_in(files, &self.windows, &self.telecom_meters, |row| {
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
            let call = table.rate(&record).map_err(failed)?;
            let entry = calls.entry(key).or_default();
            entry.lines.add(&call).map_err(failed)?;
            entry.segments.insert(row.segment.to_owned());
            if keep {
                entry.records.push(RatedCallRecord {
                    event_id: row.event_id.to_owned(),
                    source: row.source.to_owned(),
                    customer: customer.to_owned(),
                    subscription: row.subscription.to_owned(),
                    meter: row.meter.to_owned(),
                    rate_table: table.table().key.clone(),
                    event_time: row.time,
                    segment: row.segment.to_owned(),
                    destination: record.destination,
                    answered_at: record.start,
                    call,
                });
            }
            Ok(())
        })
        .await
    }

    /// Prices the usage added so far: each active subscription in id order, as the close rates
    /// it. `catalog` must be the one the usage was made with. Kept call records are handed over
    /// with the result (the close asks once).
    pub fn rate(&mut self, catalog: &Catalog) -> Result<Vec<RatedSubscription>> {
        self.take_touched();
        self.rate_windows(catalog, None)
    }

    /// Like [`PeriodUsage::rate`], but only the subscriptions that got usage since the last
    /// `rate` or `rate_touched` (in id order): the others' rating has not changed. Every ledger
    /// row a subscription's rating reads (percentage and telecom prices' rows included) is a row
    /// of the fold of all meters, so the windows that fold marks are exactly the ones to price
    /// again.
    pub fn rate_touched(&mut self, catalog: &Catalog) -> Result<Vec<RatedSubscription>> {
        let touched = self.take_touched();
        if !touched.contains(&true) {
            return Ok(Vec::new());
        }
        self.rate_windows(catalog, Some(&touched))
    }

    fn take_touched(&mut self) -> Vec<bool> {
        let mut touched = self.all.take_touched();
        for (t, g) in touched.iter_mut().zip(self.grouped.take_touched()) {
            *t |= g;
        }
        touched
    }

    fn rate_windows(&mut self, catalog: &Catalog, only: Option<&[bool]>) -> Result<Vec<RatedSubscription>> {
        let aggregates = by_meter(self.all.aggregates_of(only)?);
        let grouped = if self.matrix_meters.is_empty() {
            vec![Vec::new(); self.windows.len()]
        } else {
            by_meter_groups(self.grouped.aggregates_of(only)?)
        };
        let empty = MeterAggregates::default();
        let mut shared_plans: HashMap<(&str, u32), Arc<PlanVersion>> = HashMap::new();
        let mut out = Vec::with_capacity(self.active.len());
        for (i, (s, window)) in self.active.iter().enumerate() {
            if only.is_some_and(|o| !o[i]) {
                continue;
            }
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
                let key = (s.id.clone(), p.meter.clone());
                let mut calls = None;
                let (priced, segments) = if let PriceModel::Telecom { rate_table } = &p.model {
                    let so_far = self.calls.get_mut(&key);
                    let lines = match &so_far {
                        Some(c) => c.lines.lines().map_err(|source| Error::Call {
                            event_id: String::new(),
                            customer: s.customer.clone(),
                            meter: p.meter.clone(),
                            source: Box::new(source),
                        })?,
                        None => Vec::new(),
                    };
                    let (mut records, segments) =
                        so_far.map(|c| (std::mem::take(&mut c.records), c.segments.iter().cloned().collect())).unwrap_or_default();
                    // Stored and shown in time order; the ledger's event-key order is only deterministic.
                    records.sort_by(|a: &RatedCallRecord, b| {
                        (a.event_time, &a.event_id, &a.source).cmp(&(b.event_time, &b.event_id, &b.source))
                    });
                    let mut amount = Decimal::ZERO;
                    for l in &lines {
                        amount = amount.checked_add(l.amount).ok_or_else(|| Error::Overflow { what: p.meter.clone() })?;
                    }
                    calls = Some(TelecomUsage { rate_table: rate_table.clone(), lines, calls: records });
                    (Priced::new(amount, Vec::new()), segments)
                } else if matches!(p.model, PriceModel::Percentage { .. }) {
                    let totals = self.pct_totals.get(&key).cloned().unwrap_or_default();
                    (price_percentage(p, totals), self.pct_segments.get(&key).map(|s| s.iter().cloned().collect()).unwrap_or_default())
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
                window: *window,
                usage,
                metered_seats,
            });
        }
        Ok(out)
    }
}

/// The value of `meter` among one window's (meter, value) pairs (a handful).
fn lookup<'a, T>(meters: &'a [(String, T)], meter: &str) -> Option<&'a T> {
    meters.iter().find(|(m, _)| m == meter).map(|(_, v)| v)
}
