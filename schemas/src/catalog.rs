//! The catalog: meters, plans (immutable versions), customers, subscriptions and tax rates.
//!
//! A catalog file (YAML, TOML or JSON, chosen by extension) is parsed into [`CatalogFile`], then
//! [`CatalogFile::validate`] checks every entry and cross-reference and builds a [`Catalog`].
//! Errors name the entry and the field, e.g.
//! `plans[starter].versions[2].prices[tokens].tiers[1].up_to: 1000 must be greater than the previous bound 5000`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use chrono::{DateTime, Datelike, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::credit::CreditGrant;
use crate::discount::{Coupon, Redemption};
use crate::error::{Error, Result};
use crate::meter::Meter;
use crate::money::{Currency, exact};
use crate::period::{BillingCycle, PeriodLabel, Schedule, Window};
use crate::price::{MatrixEntry, PackageRounding, Price, PriceModel, Tier};
use crate::rate_table::RateTable;
pub use crate::tax::{FxRate, TaxRate};
use crate::tax::{check_vat_id, jurisdiction_candidates};

/// A catalog file as written by users.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogFile {
    /// Meter definitions.
    #[serde(default)]
    pub meters: Vec<Meter>,
    /// Tax rates by jurisdiction.
    #[serde(default)]
    pub tax_rates: Vec<TaxRate>,
    /// Plans with their versions.
    #[serde(default)]
    pub plans: Vec<PlanSpec>,
    /// Customers.
    #[serde(default)]
    pub customers: Vec<Customer>,
    /// Subscriptions.
    #[serde(default)]
    pub subscriptions: Vec<Subscription>,
    /// Coupons that subscriptions redeem.
    #[serde(default)]
    pub coupons: Vec<Coupon>,
    /// Prepaid credit grants of customers.
    #[serde(default)]
    pub credit_grants: Vec<CreditGrant>,
    /// Telecom rate tables that `telecom` prices refer to.
    #[serde(default)]
    pub rate_tables: Vec<RateTable>,
    /// Dated exchange rates for the reporting-currency columns of invoices.
    #[serde(default)]
    pub fx_rates: Vec<FxRate>,
}

/// When a plan version's fixed charges (recurring fee and seats) are billed. Usage is always
/// billed in arrears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeeBilling {
    /// A period's fixed charges are on that period's invoice (issued at its end).
    #[default]
    Arrears,
    /// A period's fixed charges are on the previous period's invoice (issued at this period's
    /// start); the first period is billed on its own invoice, and seat changes during a period
    /// are trued up on that period's invoice. See docs/PRICING.md.
    Advance,
}

impl FeeBilling {
    /// The name used in catalog files and line breakdowns.
    pub fn as_str(self) -> &'static str {
        match self {
            FeeBilling::Arrears => "arrears",
            FeeBilling::Advance => "advance",
        }
    }
}

/// A dated change of a subscription's seat count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeatChange {
    /// From when the new count applies (inclusive).
    pub at: DateTime<Utc>,
    /// The new number of seats.
    pub seats: u32,
}

/// A plan and its versions, as written in a catalog file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSpec {
    /// Plan key.
    pub key: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Versions; each is immutable once applied.
    pub versions: Vec<PlanVersionSpec>,
}

/// One plan version as written in a catalog file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanVersionSpec {
    /// Version number, 1 or more.
    pub version: u32,
    /// Currency of every price in this version.
    pub currency: String,
    /// Flat fee per billing period, prorated for partial periods.
    #[serde(default, with = "exact::option")]
    pub recurring_fee: Option<Decimal>,
    /// Price of one seat per billing period; the subscription says how many seats, or
    /// `seat_meter` does.
    #[serde(default, with = "exact::option")]
    pub seat_price: Option<Decimal>,
    /// A MAX or LATEST meter whose period value is the seat count (billed in arrears).
    #[serde(default)]
    pub seat_meter: Option<String>,
    /// `arrears` (default) or `advance`: when the recurring fee and seats are billed.
    #[serde(default)]
    pub billing: Option<FeeBilling>,
    /// Usage prices, one per meter.
    #[serde(default)]
    pub prices: Vec<PriceSpec>,
    /// Minimum spend on usage per period: a true-up line makes up any shortfall.
    #[serde(default, with = "exact::option")]
    pub minimum_commitment: Option<Decimal>,
    /// Prices (fee, seats, usage, commitment, amount-off coupons) include tax: the tax is
    /// extracted from them instead of added (docs/TAX.md).
    #[serde(default)]
    pub tax_inclusive: bool,
}

/// A usage price as written in a catalog file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceSpec {
    /// Meter key.
    pub meter: String,
    /// `per_unit`, `graduated`, `volume`, `package` or `matrix`.
    pub model: String,
    /// For `per_unit`.
    #[serde(default, with = "exact::option")]
    pub unit_price: Option<Decimal>,
    /// For `graduated` and `volume`.
    #[serde(default)]
    pub tiers: Option<Vec<Tier>>,
    /// For `package`: units per block.
    #[serde(default, with = "exact::option")]
    pub size: Option<Decimal>,
    /// For `package`: price of one block.
    #[serde(default, with = "exact::option")]
    pub package_price: Option<Decimal>,
    /// For `package`: `up` (default) charges a partial block, `down` does not.
    #[serde(default)]
    pub round: Option<PackageRounding>,
    /// For `matrix`: entries matched in order against the meter's group-by values.
    #[serde(default)]
    pub entries: Option<Vec<MatrixEntry>>,
    /// For `matrix`: unit price of groups no entry matches.
    #[serde(default, with = "exact::option")]
    pub default_unit_price: Option<Decimal>,
    /// For `percentage`: fraction of each event's value.
    #[serde(default, with = "exact::option")]
    pub rate: Option<Decimal>,
    /// For `percentage`: fee added per event.
    #[serde(default, with = "exact::option")]
    pub fixed_fee: Option<Decimal>,
    /// For `percentage`: lowest charge per event.
    #[serde(default, with = "exact::option")]
    pub min_fee: Option<Decimal>,
    /// For `percentage`: highest charge per event.
    #[serde(default, with = "exact::option")]
    pub max_fee: Option<Decimal>,
    /// For `telecom`: key of the rate table pricing each call.
    #[serde(default)]
    pub rate_table: Option<String>,
    /// Units free of charge each period (not for `matrix` or `percentage`).
    #[serde(default, with = "exact::option")]
    pub free_units: Option<Decimal>,
    /// Cap on the line's amount per period.
    #[serde(default, with = "exact::option")]
    pub max_amount: Option<Decimal>,
}

/// A validated, immutable plan version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanVersion {
    /// Plan key.
    pub plan: String,
    /// Plan display name.
    pub name: String,
    /// Version number.
    pub version: u32,
    /// Currency of every amount.
    pub currency: Currency,
    /// Flat fee per period.
    #[serde(with = "exact::option")]
    pub recurring_fee: Option<Decimal>,
    /// Price of one seat per period.
    #[serde(default, with = "exact::option")]
    pub seat_price: Option<Decimal>,
    /// Meter giving the seat count per period, instead of the subscription's `seats`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seat_meter: Option<String>,
    /// When the fee and seats are billed.
    #[serde(default)]
    pub billing: FeeBilling,
    /// Usage prices in the order they appear on invoices.
    pub prices: Vec<Price>,
    /// Minimum usage spend per period.
    #[serde(default, with = "exact::option")]
    pub minimum_commitment: Option<Decimal>,
    /// Prices include tax.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tax_inclusive: bool,
}

/// A customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    /// Customer key; usage events carry it as CloudEvents `subject`.
    pub key: String,
    /// Legal or display name.
    pub name: String,
    /// Invoice currency (ISO 4217).
    pub currency: String,
    /// Tax jurisdiction, a key of `tax_rates` (e.g. `US-CA`, `DE`); derived from `country` and
    /// `region` when absent.
    #[serde(default)]
    pub jurisdiction: String,
    /// BCP 47 locale for documents, e.g. `en-US`.
    #[serde(default = "default_locale")]
    pub locale: String,
    /// ISO 3166 alpha-2 country; defaults to the jurisdiction's part before `-`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Region within the country (`CA` for California).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// VAT id of a business customer; an EU id of valid format enables reverse charge for
    /// cross-border supplies (docs/TAX.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vat_id: Option<String>,
    /// Exempt from tax; `tax_exempt_reason` is then required and printed on the invoice.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tax_exempt: bool,
    /// Why the customer is exempt (certificate number, legal basis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_exempt_reason: Option<String>,
    /// Payment terms of this customer's invoices in days (net-N), overriding
    /// `[billing] payment_terms_days`; at most [`MAX_PAYMENT_TERMS_DAYS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_terms_days: Option<u32>,
}

/// The longest payment terms accepted, in days (ten years): keeps every due date far inside the
/// `DateTime` range (UTC seconds in a `u32`, until 2106).
pub const MAX_PAYMENT_TERMS_DAYS: u32 = 3650;

impl Customer {
    /// The customer's country: `country`, else the jurisdiction's part before `-`.
    pub fn country_code(&self) -> &str {
        self.country.as_deref().unwrap_or_else(|| self.jurisdiction.split('-').next().unwrap_or_default())
    }
}

fn default_locale() -> String {
    "en-US".to_owned()
}

/// Billing cycle of a subscription (see `period.rs` for dates and labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cycle {
    /// Every month.
    Monthly,
    /// Every three months.
    Quarterly,
    /// Every twelve months.
    Annual,
}

impl Cycle {
    /// Length in months.
    pub fn months(self) -> u32 {
        match self {
            Cycle::Monthly => 1,
            Cycle::Quarterly => 3,
            Cycle::Annual => 12,
        }
    }

    /// The catalog spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Cycle::Monthly => "monthly",
            Cycle::Quarterly => "quarterly",
            Cycle::Annual => "annual",
        }
    }
}

/// Where a subscription's cycles fall when `anchor_day`/`anchor_month` do not say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Alignment {
    /// From the start's day (and, for quarterly and annual cycles, its month): the first cycle
    /// is a whole one.
    #[default]
    Anniversary,
    /// From day 1 of calendar months, quarters (January, April, July, October) or years
    /// (January): a subscription starting inside a cycle has a prorated first period.
    Calendar,
}

impl Alignment {
    /// Whether this is the default, [`Alignment::Anniversary`].
    pub fn is_anniversary(&self) -> bool {
        *self == Alignment::Anniversary
    }
}

/// A customer's subscription to a plan version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    /// Subscription id.
    pub id: String,
    /// Customer key.
    pub customer: String,
    /// Plan key.
    pub plan: String,
    /// Plan version.
    pub plan_version: u32,
    /// Start (inclusive), RFC 3339.
    pub start: DateTime<Utc>,
    /// End (exclusive), RFC 3339; open-ended when absent.
    #[serde(default)]
    pub end: Option<DateTime<Utc>>,
    /// Billing cycle: `monthly` (default), `quarterly` or `annual`.
    #[serde(default = "default_cycle")]
    pub cycle: Cycle,
    /// `anniversary` (default) or `calendar`: the default anchor day and month. Not written when
    /// it is the default, so subscriptions stored before it existed keep their stored form.
    #[serde(default, skip_serializing_if = "Alignment::is_anniversary")]
    pub alignment: Alignment,
    /// Day of month on which cycles start (1–31; clamped to short months). Defaults to the day
    /// of `start` (anniversary) or 1 (calendar).
    #[serde(default)]
    pub anchor_day: Option<u32>,
    /// Month (1–12) in which one of the quarterly or annual cycles starts. Defaults to the month
    /// of `start` (anniversary) or January (calendar). Not used by monthly cycles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor_month: Option<u32>,
    /// Seats at the start, for plans with a `seat_price`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats: Option<u32>,
    /// Later seat counts, in time order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seat_changes: Vec<SeatChange>,
    /// Coupons redeemed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coupons: Vec<Redemption>,
}

fn default_cycle() -> Cycle {
    Cycle::Monthly
}

impl Subscription {
    /// The anchor day in effect: `anchor_day`, else the start's day (anniversary) or 1 (calendar).
    pub fn anchor(&self) -> u32 {
        self.anchor_day.unwrap_or_else(|| match self.alignment {
            Alignment::Anniversary => self.start.day(),
            Alignment::Calendar => 1,
        })
    }

    /// The anchor month in effect: `anchor_month`, else the start's month (anniversary) or
    /// January (calendar).
    pub fn anchor_month(&self) -> u32 {
        self.anchor_month.unwrap_or_else(|| match self.alignment {
            Alignment::Anniversary => self.start.month(),
            Alignment::Calendar => 1,
        })
    }

    /// When this subscription's cycles start. Every caller that needs a cycle goes through this
    /// (or the methods below), so cycle arithmetic lives in `period.rs` only.
    pub fn schedule(&self) -> Schedule {
        Schedule::new(self.cycle.months(), self.anchor(), self.anchor_month())
    }

    /// The active part of the cycle closed by `label`: `None` when `label` closes none of this
    /// subscription's cycles (a quarterly subscription is billed every third close) or the
    /// subscription is not active in that cycle. The close of `label` bills exactly the
    /// subscriptions with a window.
    pub fn window(&self, label: PeriodLabel) -> Option<Window> {
        self.schedule().window(label, self.start, self.end)
    }

    /// The active part of the cycle after `w`'s (fees in advance); `None` when the subscription
    /// has ended by then.
    pub fn next_window(&self, w: &Window) -> Option<Window> {
        self.window(self.schedule().next_label(w.label))
    }

    /// The active part of the cycle before `w`'s; `None` in the subscription's first cycle.
    pub fn previous_window(&self, w: &Window) -> Option<Window> {
        self.window(self.schedule().prev_label(w.label))
    }

    /// The whole cycle with `start ≤ t < end` (whether or not the subscription is active at `t`).
    pub fn cycle_containing(&self, t: DateTime<Utc>) -> BillingCycle {
        self.schedule().cycle_containing(t)
    }

    /// The seat count in effect at `t` (0 without seats).
    pub fn seats_at(&self, t: DateTime<Utc>) -> u32 {
        self.seat_changes.iter().rev().find(|c| c.at <= t).map_or(self.seats.unwrap_or(0), |c| c.seats)
    }

    /// `[from, until)` parts of `[start, end)` with a constant seat count, in time order.
    pub fn seat_segments(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<(DateTime<Utc>, DateTime<Utc>, u32)> {
        let mut cuts: Vec<DateTime<Utc>> = vec![start];
        cuts.extend(self.seat_changes.iter().map(|c| c.at).filter(|t| start < *t && *t < end));
        cuts.push(end);
        cuts.windows(2).map(|w| (w[0], w[1], self.seats_at(w[0]))).collect()
    }
}

/// A validated catalog.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    /// Meters by key.
    pub meters: BTreeMap<String, Meter>,
    /// Plan versions by (plan, version).
    pub plans: BTreeMap<(String, u32), PlanVersion>,
    /// Customers by key.
    pub customers: BTreeMap<String, Customer>,
    /// Subscriptions by id.
    pub subscriptions: BTreeMap<String, Subscription>,
    /// Tax rates by [`TaxRate::key`] (the jurisdiction, plus the start date of dated entries).
    pub tax_rates: BTreeMap<String, TaxRate>,
    /// Coupons by code.
    pub coupons: BTreeMap<String, Coupon>,
    /// Credit grants by id.
    pub credit_grants: BTreeMap<String, CreditGrant>,
    /// Telecom rate tables by key.
    pub rate_tables: BTreeMap<String, RateTable>,
    /// Exchange rates by [`FxRate::key`].
    pub fx_rates: BTreeMap<String, FxRate>,
}

impl Catalog {
    /// The rate of a customer's `jurisdiction` at `t`: a dated entry of the most specific
    /// candidate ([`jurisdiction_candidates`]) covering `t`, else its default entry, else the next
    /// candidate's.
    pub fn tax_rate_at(&self, jurisdiction: &str, t: DateTime<Utc>) -> Option<&TaxRate> {
        jurisdiction_candidates(jurisdiction).into_iter().find_map(|j| {
            let mut of_j = self.tax_rates.values().filter(|r| r.jurisdiction == j);
            let dated = of_j.clone().find(|r| r.is_dated() && r.covers(t));
            dated.or_else(|| of_j.find(|r| !r.is_dated()))
        })
    }

    /// The exchange rate `from` → `to` in effect on `day`: the entry of the pair with the latest
    /// date not after `day`. Same currency: `None` (the caller uses 1).
    pub fn fx_rate_on(&self, from: &str, to: &str, day: chrono::NaiveDate) -> Option<&FxRate> {
        self.fx_rates.values().filter(|r| r.from == from && r.to == to && r.date <= day).max_by_key(|r| r.date)
    }

    /// Meters that count events of `event_type`.
    pub fn meters_by_event_type(&self) -> HashMap<String, Vec<Meter>> {
        let mut map: HashMap<String, Vec<Meter>> = HashMap::new();
        for m in self.meters.values() {
            map.entry(m.event_type.clone()).or_default().push(m.clone());
        }
        map
    }

    /// Checks cross-references of an assembled catalog (as loaded from the store).
    pub fn check_references(&self) -> Result<()> {
        for cp in self.coupons.values() {
            if let Some(m) = &cp.meter
                && !self.meters.contains_key(m)
            {
                return Err(Error::catalog(format!("coupons[{}].meter", cp.code), format!("{m:?} is not a known meter")));
            }
        }
        for (id, s) in &self.subscriptions {
            let at = format!("subscriptions[{id}]");
            let customer = self
                .customers
                .get(&s.customer)
                .ok_or_else(|| Error::catalog(format!("{at}.customer"), format!("{:?} is not a known customer", s.customer)))?;
            let plan = self.plans.get(&(s.plan.clone(), s.plan_version)).ok_or_else(|| {
                Error::catalog(format!("{at}.plan_version"), format!("plan {:?} has no version {}", s.plan, s.plan_version))
            })?;
            if plan.currency.code() != customer.currency {
                return Err(Error::catalog(
                    format!("{at}.plan"),
                    format!(
                        "plan {}@{} is priced in {} but customer {:?} is billed in {}",
                        s.plan, s.plan_version, plan.currency, s.customer, customer.currency
                    ),
                ));
            }
            if let Some(m) = &plan.seat_meter {
                if s.seats.is_some() {
                    return Err(Error::catalog(
                        format!("{at}.seats"),
                        format!("plan {}@{} counts seats with meter {m}; remove seats", s.plan, s.plan_version),
                    ));
                }
            } else {
                match (plan.seat_price.is_some(), s.seats.is_some()) {
                    (true, false) => {
                        return Err(Error::catalog(
                            format!("{at}.seats"),
                            format!("is required: plan {}@{} has a seat_price", s.plan, s.plan_version),
                        ));
                    }
                    (false, true) => {
                        return Err(Error::catalog(
                            format!("{at}.seats"),
                            format!("plan {}@{} has no seat_price; remove seats or use a plan with one", s.plan, s.plan_version),
                        ));
                    }
                    _ => {}
                }
            }
            self.check_redemptions(s, plan)?;
        }
        for (id, g) in &self.credit_grants {
            let customer = self.customers.get(&g.customer).ok_or_else(|| {
                Error::catalog(format!("credit_grants[{id}].customer"), format!("{:?} is not a known customer", g.customer))
            })?;
            let currency = Currency::from_code(&customer.currency)
                .map_err(|e| Error::catalog(format!("customers[{}].currency", customer.key), e.to_string()))?;
            g.validate(Some(currency))?;
        }
        self.check_overlaps()?;
        for (key, c) in &self.customers {
            let known = jurisdiction_candidates(&c.jurisdiction).iter().any(|j| self.tax_rates.values().any(|r| &r.jurisdiction == j));
            if !known {
                return Err(Error::catalog(
                    format!("customers[{key}].jurisdiction"),
                    format!("{:?} has no tax rate; add it to tax_rates (a rate of \"0\" is allowed)", c.jurisdiction),
                ));
            }
        }
        for plan in self.plans.values() {
            if let Some(m) = &plan.seat_meter {
                let at = format!("plans[{}].versions[{}].seat_meter", plan.plan, plan.version);
                let meter = self.meters.get(m).ok_or_else(|| Error::catalog(&at, format!("{m:?} is not a known meter")))?;
                if !matches!(meter.aggregation, crate::meter::Aggregation::Max | crate::meter::Aggregation::Latest) {
                    return Err(Error::catalog(
                        &at,
                        format!("a seat count comes from a MAX or LATEST meter; {m} is {}", meter.aggregation),
                    ));
                }
            }
            for p in &plan.prices {
                let at = format!("plans[{}].versions[{}].prices[{}]", plan.plan, plan.version, p.meter);
                let meter = self
                    .meters
                    .get(&p.meter)
                    .ok_or_else(|| Error::catalog(format!("{at}.meter"), format!("{:?} is not a known meter", p.meter)))?;
                if matches!(p.model, PriceModel::Percentage { .. }) && meter.aggregation != crate::meter::Aggregation::Sum {
                    return Err(Error::catalog(
                        format!("{at}.model"),
                        format!("percentage prices charge each event's value and need a SUM meter; {} is {}", meter.key, meter.aggregation),
                    ));
                }
                if let PriceModel::Telecom { rate_table } = &p.model {
                    let table = self
                        .rate_tables
                        .get(rate_table)
                        .ok_or_else(|| Error::catalog(format!("{at}.rate_table"), format!("{rate_table:?} is not a known rate table")))?;
                    if table.currency != plan.currency.code() {
                        return Err(Error::catalog(
                            format!("{at}.rate_table"),
                            format!("rate table {rate_table} is priced in {} but the plan in {}", table.currency, plan.currency),
                        ));
                    }
                    if meter.aggregation != crate::meter::Aggregation::Sum {
                        return Err(Error::catalog(
                            format!("{at}.model"),
                            format!(
                                "telecom prices rate each call record and need a SUM meter whose value is the duration in seconds; {} is {}",
                                meter.key, meter.aggregation
                            ),
                        ));
                    }
                }
                if let PriceModel::Matrix { entries, .. } = &p.model {
                    for (i, e) in entries.iter().enumerate() {
                        if let Some(dim) = e.when.keys().find(|d| !meter.group_by.contains_key(*d)) {
                            return Err(Error::catalog(
                                format!("{at}.entries[{i}].when"),
                                format!(
                                    "{dim:?} is not a group_by dimension of meter {} (it has: {})",
                                    meter.key,
                                    meter.group_by.keys().cloned().collect::<Vec<_>>().join(", ")
                                ),
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// A subscription's coupons exist, fit its plan (currency, meter) and start while it is active.
    fn check_redemptions(&self, s: &Subscription, plan: &PlanVersion) -> Result<()> {
        let mut seen = BTreeSet::new();
        for (i, r) in s.coupons.iter().enumerate() {
            let at = format!("subscriptions[{}].coupons[{i}]", s.id);
            let coupon = self
                .coupons
                .get(&r.code)
                .ok_or_else(|| Error::catalog(format!("{at}.code"), format!("{:?} is not a known coupon", r.code)))?;
            if !seen.insert(r.code.as_str()) {
                return Err(Error::catalog(format!("{at}.code"), format!("{:?} is redeemed twice", r.code)));
            }
            if let Some(c) = &coupon.currency
                && c != plan.currency.code()
            {
                return Err(Error::catalog(
                    format!("{at}.code"),
                    format!("coupon {} takes {c} off but plan {}@{} is priced in {}", r.code, plan.plan, plan.version, plan.currency),
                ));
            }
            if let Some(m) = &coupon.meter
                && !plan.prices.iter().any(|p| &p.meter == m)
            {
                return Err(Error::catalog(
                    format!("{at}.code"),
                    format!("coupon {} discounts meter {m}, which plan {}@{} does not price", r.code, plan.plan, plan.version),
                ));
            }
            if let Some(start) = r.start
                && (start < s.start || s.end.is_some_and(|e| start >= e))
            {
                return Err(Error::catalog(format!("{at}.start"), format!("{start} is outside the subscription")));
            }
        }
        Ok(())
    }

    /// Usage is matched to subscriptions by customer and time. Two subscriptions of one customer
    /// that overlap in time and price the same meter would both bill the same events, so that
    /// is refused (counted once). Overlaps on different meters (separate products) are fine.
    fn check_overlaps(&self) -> Result<()> {
        let mut by_customer: BTreeMap<&str, Vec<&Subscription>> = BTreeMap::new();
        for s in self.subscriptions.values() {
            by_customer.entry(s.customer.as_str()).or_default().push(s);
        }
        for subs in by_customer.values() {
            for (i, a) in subs.iter().enumerate() {
                for b in &subs[i + 1..] {
                    let overlap =
                        a.start < b.end.unwrap_or(DateTime::<Utc>::MAX_UTC) && b.start < a.end.unwrap_or(DateTime::<Utc>::MAX_UTC);
                    if !overlap {
                        continue;
                    }
                    let meters = |s: &Subscription| -> BTreeSet<String> {
                        self.plans
                            .get(&(s.plan.clone(), s.plan_version))
                            .map(|p| p.prices.iter().map(|x| x.meter.clone()).chain(p.seat_meter.clone()).collect())
                            .unwrap_or_default()
                    };
                    if let Some(m) = meters(a).intersection(&meters(b)).next() {
                        return Err(Error::catalog(
                            format!("subscriptions[{}].start", b.id),
                            format!(
                                "overlaps subscription {} of customer {:?} and both price meter {m}, so its usage would be billed twice; end {} where {} starts",
                                a.id, a.customer, a.id, b.id
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Merges `other` over `self` (entries of `other` win); used to check a file against the store.
    pub fn merged_with(&self, other: &Catalog) -> Catalog {
        let mut c = self.clone();
        c.meters.extend(other.meters.clone());
        c.plans.extend(other.plans.clone());
        c.customers.extend(other.customers.clone());
        c.subscriptions.extend(other.subscriptions.clone());
        c.tax_rates.extend(other.tax_rates.clone());
        c.coupons.extend(other.coupons.clone());
        c.credit_grants.extend(other.credit_grants.clone());
        c.rate_tables.extend(other.rate_tables.clone());
        c.fx_rates.extend(other.fx_rates.clone());
        c
    }
}

/// Keys are used in NATS KV keys and file paths: letters, digits, `_`, `-`; 1–128 characters.
pub fn check_key(path: &str, key: &str) -> Result<()> {
    let ok = !key.is_empty() && key.len() <= 128 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok { Ok(()) } else { Err(Error::catalog(path, format!("{key:?} is not a valid key: use 1-128 letters, digits, '_' or '-'"))) }
}

impl CatalogFile {
    /// Reads a catalog file; the format follows the extension (`.yaml`/`.yml`, `.toml`, `.json`).
    pub fn read(path: &Path) -> Result<CatalogFile> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Error::CatalogFile { file: file.clone(), message: e.to_string() })?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
        Self::parse(&text, &ext).map_err(|message| Error::CatalogFile { file, message })
    }

    /// Parses catalog text in the format named by `ext` (`yaml`, `yml`, `toml`, `json`).
    pub fn parse(text: &str, ext: &str) -> Result<CatalogFile, String> {
        match ext {
            "yaml" | "yml" => {
                let de = serde_norway::Deserializer::from_str(text);
                serde_path_to_error::deserialize(de).map_err(|e| format!("{}: {}", e.path(), e.inner()))
            }
            "toml" => {
                let de = toml::Deserializer::parse(text).map_err(|e| e.to_string())?;
                serde_path_to_error::deserialize(de).map_err(|e| format!("{}: {}", e.path(), e.inner()))
            }
            "json" => {
                let mut de = serde_json::Deserializer::from_str(text);
                serde_path_to_error::deserialize(&mut de).map_err(|e| format!("{}: {}", e.path(), e.inner()))
            }
            other => Err(format!("unknown extension {other:?}: use .yaml, .yml, .toml or .json")),
        }
    }

    /// Validates every entry and builds a [`Catalog`]. Cross-references are checked against
    /// `base` (what the store already holds) merged with this file.
    pub fn validate(&self, base: &Catalog) -> Result<Catalog> {
        let mut c = Catalog::default();
        for m in &self.meters {
            let at = format!("meters[{}]", m.key);
            check_key(&format!("{at}.key"), &m.key)?;
            if m.event_type.trim().is_empty() {
                return Err(Error::catalog(format!("{at}.event_type"), "must not be empty"));
            }
            match (&m.value, m.aggregation.needs_value()) {
                (None, true) => {
                    return Err(Error::catalog(format!("{at}.value"), format!("is required for aggregation {}", m.aggregation)));
                }
                (Some(v), false) => {
                    return Err(Error::catalog(format!("{at}.value"), format!("{v:?} is not used by COUNT; remove it")));
                }
                (Some(v), true) if v.split('.').any(str::is_empty) => {
                    return Err(Error::catalog(format!("{at}.value"), format!("{v:?} is not a dot path like \"usage.tokens\"")));
                }
                _ => {}
            }
            if c.meters.insert(m.key.clone(), m.clone()).is_some() {
                return Err(Error::catalog(format!("{at}.key"), "is defined twice"));
            }
        }
        for t in &self.tax_rates {
            let t = validate_tax_rate(t)?;
            let at = format!("tax_rates[{}]", t.key());
            if c.tax_rates.insert(t.key(), t).is_some() {
                return Err(Error::catalog(format!("{at}.jurisdiction"), "is defined twice"));
            }
        }
        for p in &self.plans {
            check_key(&format!("plans[{}].key", p.key), &p.key)?;
            if p.versions.is_empty() {
                return Err(Error::catalog(format!("plans[{}].versions", p.key), "must list at least one version"));
            }
            for v in &p.versions {
                let pv = validate_version(p, v)?;
                if c.plans.insert((p.key.clone(), v.version), pv).is_some() {
                    return Err(Error::catalog(format!("plans[{}].versions[{}].version", p.key, v.version), "is defined twice"));
                }
            }
        }
        for cu in &self.customers {
            let cu = validate_customer(cu)?;
            let at = format!("customers[{}]", cu.key);
            if c.customers.insert(cu.key.clone(), cu).is_some() {
                return Err(Error::catalog(format!("{at}.key"), "is defined twice"));
            }
        }
        for s in &self.subscriptions {
            let at = format!("subscriptions[{}]", s.id);
            check_key(&format!("{at}.id"), &s.id)?;
            if let Some(end) = s.end
                && end <= s.start
            {
                return Err(Error::catalog(format!("{at}.end"), format!("{end} is not after start {}", s.start)));
            }
            if let Some(a) = s.anchor_day
                && !(1..=31).contains(&a)
            {
                return Err(Error::catalog(format!("{at}.anchor_day"), format!("{a} is not a day of month (1-31)")));
            }
            match (s.anchor_month, s.cycle) {
                (Some(m), _) if !(1..=12).contains(&m) => {
                    return Err(Error::catalog(format!("{at}.anchor_month"), format!("{m} is not a month (1-12)")));
                }
                (Some(m), Cycle::Monthly) => {
                    return Err(Error::catalog(
                        format!("{at}.anchor_month"),
                        format!("{m} is only used with quarterly or annual cycles (this one is monthly)"),
                    ));
                }
                _ => {}
            }
            if s.seats.is_none() && !s.seat_changes.is_empty() {
                return Err(Error::catalog(format!("{at}.seat_changes"), "needs seats (the count at the start)"));
            }
            let mut previous = s.start;
            for (i, ch) in s.seat_changes.iter().enumerate() {
                if ch.at <= previous {
                    return Err(Error::catalog(
                        format!("{at}.seat_changes[{i}].at"),
                        format!("{} must be after {previous} (the start or the previous change)", ch.at),
                    ));
                }
                if let Some(end) = s.end
                    && ch.at >= end
                {
                    return Err(Error::catalog(format!("{at}.seat_changes[{i}].at"), format!("{} is not before the end {end}", ch.at)));
                }
                previous = ch.at;
            }
            if c.subscriptions.insert(s.id.clone(), s.clone()).is_some() {
                return Err(Error::catalog(format!("{at}.id"), "is defined twice"));
            }
        }
        for cp in &self.coupons {
            cp.validate()?;
            if c.coupons.insert(cp.code.clone(), cp.clone()).is_some() {
                return Err(Error::catalog(format!("coupons[{}].code", cp.code), "is defined twice"));
            }
        }
        for g in &self.credit_grants {
            g.validate(None)?;
            if c.credit_grants.insert(g.id.clone(), g.clone()).is_some() {
                return Err(Error::catalog(format!("credit_grants[{}].id", g.id), "is defined twice"));
            }
        }
        for t in &self.rate_tables {
            // The table's own errors name the rate by prefix and the field by path.
            t.validate().map_err(|e| match e {
                crate::rate_table::TelecomError::Invalid { path, message } => {
                    Error::catalog(format!("rate_tables[{}].{path}", t.key), message)
                }
                other => Error::catalog(format!("rate_tables[{}]", t.key), other.to_string()),
            })?;
            // Prices and fees are stored in Decimal(38, 9) columns (`rated_calls`) without rounding.
            for r in &t.rates {
                let at = format!("rate_tables[{}].rates[{}]", t.key, r.prefix);
                let fits = |d: Decimal| d.normalize().scale() <= crate::money::COLUMN_SCALE;
                if !fits(r.connect_fee) {
                    return Err(Error::catalog(format!("{at}.connect_fee"), format!("{} has more than 9 decimals", r.connect_fee)));
                }
                if let Some((i, b)) = r.bands.iter().enumerate().find(|(_, b)| !fits(b.price_per_minute)) {
                    return Err(Error::catalog(
                        format!("{at}.bands[{i}].price_per_minute"),
                        format!("{} has more than 9 decimals", b.price_per_minute),
                    ));
                }
            }
            if c.rate_tables.insert(t.key.clone(), t.clone()).is_some() {
                return Err(Error::catalog(format!("rate_tables[{}].key", t.key), "is defined twice"));
            }
        }
        for r in &self.fx_rates {
            let at = format!("fx_rates[{}]", r.key());
            for (field, code) in [("from", &r.from), ("to", &r.to)] {
                Currency::from_code(code).map_err(|e| Error::catalog(format!("{at}.{field}"), e.to_string()))?;
            }
            if r.from == r.to || r.rate <= Decimal::ZERO {
                return Err(Error::catalog(format!("{at}.rate"), format!("{} must be positive between two different currencies", r.rate)));
            }
            if c.fx_rates.insert(r.key(), r.clone()).is_some() {
                return Err(Error::catalog(format!("{at}.date"), "is defined twice for this pair"));
            }
        }
        base.merged_with(&c).check_references()?;
        c.check_tax_rate_overlaps(base)?;
        Ok(c)
    }
}

impl Catalog {
    /// Dated rates of one jurisdiction may not overlap (the default entry may: dated ones win).
    fn check_tax_rate_overlaps(&self, base: &Catalog) -> Result<()> {
        let all = base.merged_with(self);
        let dated: Vec<&TaxRate> = all.tax_rates.values().filter(|r| r.is_dated()).collect();
        for (i, a) in dated.iter().enumerate() {
            for b in &dated[i + 1..] {
                let overlap = a.jurisdiction == b.jurisdiction
                    && a.from.is_none_or(|af| b.to.is_none_or(|bt| af <= bt))
                    && b.from.is_none_or(|bf| a.to.is_none_or(|at| bf <= at));
                if overlap {
                    return Err(Error::catalog(
                        format!("tax_rates[{}].from", b.key()),
                        format!("overlaps tax_rates[{}]: dated rates of {} must not overlap", a.key(), a.jurisdiction),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Checks a tax rate and fills its jurisdiction from `country`/`region`.
fn validate_tax_rate(t: &TaxRate) -> Result<TaxRate> {
    let mut t = t.clone();
    let derived = match (&t.country, &t.region) {
        (Some(c), Some(r)) => Some(format!("{c}-{r}")),
        (Some(c), None) => Some(c.clone()),
        (None, Some(r)) => return Err(Error::catalog(format!("tax_rates[{}].region", t.jurisdiction), format!("{r:?} needs a country"))),
        (None, None) => None,
    };
    match derived {
        Some(d) if t.jurisdiction.is_empty() || t.jurisdiction == d => t.jurisdiction = d,
        Some(d) => {
            return Err(Error::catalog(
                format!("tax_rates[{}].jurisdiction", t.jurisdiction),
                format!("does not match country/region {d}; give one or the other"),
            ));
        }
        None => {}
    }
    let at = format!("tax_rates[{}]", t.jurisdiction);
    check_key(&format!("{at}.jurisdiction"), &t.jurisdiction)?;
    if t.rate < Decimal::ZERO || t.rate >= Decimal::ONE {
        return Err(Error::catalog(format!("{at}.rate"), format!("{} must be a fraction in [0, 1), e.g. \"0.19\" for 19%", t.rate)));
    }
    if let (Some(f), Some(to)) = (t.from, t.to)
        && to < f
    {
        return Err(Error::catalog(format!("{at}.to"), format!("{to} is before from {f}")));
    }
    Ok(t)
}

/// Checks a customer and fills its jurisdiction from `country`/`region`.
fn validate_customer(cu: &Customer) -> Result<Customer> {
    let mut cu = cu.clone();
    let at = format!("customers[{}]", cu.key);
    check_key(&format!("{at}.key"), &cu.key)?;
    Currency::from_code(&cu.currency).map_err(|e| Error::catalog(format!("{at}.currency"), e.to_string()))?;
    if cu.jurisdiction.is_empty() {
        cu.jurisdiction = match (&cu.country, &cu.region) {
            (Some(c), Some(r)) => format!("{c}-{r}"),
            (Some(c), None) => c.clone(),
            _ => return Err(Error::catalog(format!("{at}.jurisdiction"), "is required (or give country and optionally region)")),
        };
    }
    if let Some(days) = cu.payment_terms_days
        && days > MAX_PAYMENT_TERMS_DAYS
    {
        return Err(Error::catalog(format!("{at}.payment_terms_days"), format!("{days} is more than {MAX_PAYMENT_TERMS_DAYS} days")));
    }
    if cu.tax_exempt && cu.tax_exempt_reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
        return Err(Error::catalog(format!("{at}.tax_exempt_reason"), "is required when tax_exempt is true (it is printed on invoices)"));
    }
    if let Some(id) = &cu.vat_id {
        match check_vat_id(id) {
            Some(Err(expected)) => {
                return Err(Error::catalog(format!("{at}.vat_id"), format!("{id:?} is not a valid EU VAT id: expected {expected}")));
            }
            Some(Ok(country)) if country != cu.country_code() => {
                return Err(Error::catalog(
                    format!("{at}.vat_id"),
                    format!("{id:?} is a VAT id of {country} but the customer is in {:?}", cu.country_code()),
                ));
            }
            _ => {}
        }
    }
    Ok(cu)
}

fn validate_version(p: &PlanSpec, v: &PlanVersionSpec) -> Result<PlanVersion> {
    let at = format!("plans[{}].versions[{}]", p.key, v.version);
    if v.version == 0 {
        return Err(Error::catalog(format!("{at}.version"), "0 is not allowed; versions start at 1"));
    }
    let currency = Currency::from_code(&v.currency).map_err(|e| Error::catalog(format!("{at}.currency"), e.to_string()))?;
    if let Some(fee) = v.recurring_fee
        && fee < Decimal::ZERO
    {
        return Err(Error::catalog(format!("{at}.recurring_fee"), format!("{fee} must not be negative")));
    }
    let seat_price = non_negative(&format!("{at}.seat_price"), v.seat_price)?;
    if let Some(m) = &v.seat_meter {
        if seat_price.is_none() {
            return Err(Error::catalog(format!("{at}.seat_meter"), format!("{m:?} needs a seat_price")));
        }
        if v.billing == Some(FeeBilling::Advance) {
            return Err(Error::catalog(
                format!("{at}.seat_meter"),
                "seats counted by a meter are only known at the period's end: use billing arrears or subscription seats",
            ));
        }
        if v.prices.iter().any(|p| &p.meter == m) {
            return Err(Error::catalog(format!("{at}.seat_meter"), format!("{m:?} is also priced as usage; it would be billed twice")));
        }
    }
    let mut seen = BTreeSet::new();
    let mut prices = Vec::with_capacity(v.prices.len());
    for ps in &v.prices {
        let pat = format!("{at}.prices[{}]", ps.meter);
        if !seen.insert(ps.meter.clone()) {
            return Err(Error::catalog(format!("{pat}.meter"), "is priced twice in this version"));
        }
        let model = price_model(&pat, ps)?;
        let free_units = non_negative(&format!("{pat}.free_units"), ps.free_units)?.unwrap_or_default();
        if !free_units.is_zero() && matches!(model, PriceModel::Matrix { .. } | PriceModel::Percentage { .. } | PriceModel::Telecom { .. })
        {
            return Err(Error::catalog(format!("{pat}.free_units"), format!("is not supported with model {}", model.name())));
        }
        let max_amount = non_negative(&format!("{pat}.max_amount"), ps.max_amount)?;
        if max_amount.is_some() && matches!(model, PriceModel::Telecom { .. }) {
            // A telecom price writes one line per (prefix, band): there is no one line to cap.
            return Err(Error::catalog(format!("{pat}.max_amount"), "is not supported with model telecom"));
        }
        prices.push(Price { meter: ps.meter.clone(), model, free_units, max_amount });
    }
    let minimum_commitment = non_negative(&format!("{at}.minimum_commitment"), v.minimum_commitment)?;
    if let Some(m) = minimum_commitment
        && m.normalize().scale() > currency.minor_units()
    {
        return Err(Error::catalog(
            format!("{at}.minimum_commitment"),
            format!("{m} has more decimals than {currency} allows ({})", currency.minor_units()),
        ));
    }
    Ok(PlanVersion {
        plan: p.key.clone(),
        name: p.name.clone().unwrap_or_else(|| p.key.clone()),
        version: v.version,
        currency,
        recurring_fee: v.recurring_fee,
        seat_price,
        seat_meter: v.seat_meter.clone(),
        billing: v.billing.unwrap_or_default(),
        prices,
        minimum_commitment,
        tax_inclusive: v.tax_inclusive,
    })
}

fn non_negative(at: &str, v: Option<Decimal>) -> Result<Option<Decimal>> {
    match v {
        Some(d) if d < Decimal::ZERO => Err(Error::catalog(at, format!("{d} must not be negative"))),
        other => Ok(other),
    }
}

/// The fields each model uses; any other model field set in the file is an error.
fn price_model(pat: &str, ps: &PriceSpec) -> Result<PriceModel> {
    let model = ps.model.as_str();
    let set = [
        ("unit_price", ps.unit_price.is_some()),
        ("tiers", ps.tiers.is_some()),
        ("size", ps.size.is_some()),
        ("package_price", ps.package_price.is_some()),
        ("round", ps.round.is_some()),
        ("entries", ps.entries.is_some()),
        ("default_unit_price", ps.default_unit_price.is_some()),
        ("rate", ps.rate.is_some()),
        ("fixed_fee", ps.fixed_fee.is_some()),
        ("min_fee", ps.min_fee.is_some()),
        ("max_fee", ps.max_fee.is_some()),
        ("rate_table", ps.rate_table.is_some()),
    ];
    let uses: &[&str] = match model {
        "per_unit" => &["unit_price"],
        "graduated" | "volume" => &["tiers"],
        "package" => &["size", "package_price", "round"],
        "matrix" => &["entries", "default_unit_price"],
        "percentage" => &["rate", "fixed_fee", "min_fee", "max_fee"],
        "telecom" => &["rate_table"],
        other => {
            return Err(Error::catalog(
                format!("{pat}.model"),
                format!("{other:?} is not a price model: use per_unit, graduated, volume, package, matrix, percentage or telecom"),
            ));
        }
    };
    if let Some((field, _)) = set.iter().find(|(f, is_set)| *is_set && !uses.contains(f)) {
        return Err(Error::catalog(format!("{pat}.{field}"), format!("is not used by model {model} (it uses: {})", uses.join(", "))));
    }
    let required = |field: &str, v: Option<Decimal>| {
        let d = v.ok_or_else(|| Error::catalog(format!("{pat}.{field}"), format!("is required for model {model}")))?;
        non_negative(&format!("{pat}.{field}"), Some(d)).map(|_| d)
    };
    Ok(match model {
        "per_unit" => PriceModel::PerUnit { unit_price: required("unit_price", ps.unit_price)? },
        "graduated" | "volume" => {
            let tiers = ps.tiers.clone().ok_or_else(|| Error::catalog(format!("{pat}.tiers"), format!("is required for model {model}")))?;
            check_tiers(pat, &tiers)?;
            if model == "graduated" { PriceModel::Graduated { tiers } } else { PriceModel::Volume { tiers } }
        }
        "package" => {
            let size = required("size", ps.size)?;
            if size.is_zero() {
                return Err(Error::catalog(format!("{pat}.size"), "0 is not a package size; use 1 or more units"));
            }
            PriceModel::Package {
                size,
                package_price: required("package_price", ps.package_price)?,
                round: ps.round.unwrap_or(PackageRounding::Up),
            }
        }
        "telecom" => {
            let rate_table =
                ps.rate_table.clone().ok_or_else(|| Error::catalog(format!("{pat}.rate_table"), "is required for model telecom"))?;
            PriceModel::Telecom { rate_table }
        }
        "percentage" => {
            let rate = required("rate", ps.rate)?;
            let min_fee = non_negative(&format!("{pat}.min_fee"), ps.min_fee)?;
            let max_fee = non_negative(&format!("{pat}.max_fee"), ps.max_fee)?;
            if let (Some(lo), Some(hi)) = (min_fee, max_fee)
                && lo > hi
            {
                return Err(Error::catalog(format!("{pat}.max_fee"), format!("{hi} is below min_fee {lo}")));
            }
            let fixed_fee = non_negative(&format!("{pat}.fixed_fee"), ps.fixed_fee)?.unwrap_or_default();
            PriceModel::Percentage { rate, fixed_fee, min_fee, max_fee }
        }
        _ => {
            let entries = ps.entries.clone().unwrap_or_default();
            for (i, e) in entries.iter().enumerate() {
                if e.when.is_empty() {
                    return Err(Error::catalog(format!("{pat}.entries[{i}].when"), "must name at least one dimension value"));
                }
                non_negative(&format!("{pat}.entries[{i}].unit_price"), Some(e.unit_price))?;
            }
            PriceModel::Matrix { entries, default_unit_price: required("default_unit_price", ps.default_unit_price)? }
        }
    })
}

fn check_tiers(at: &str, tiers: &[Tier]) -> Result<()> {
    if tiers.is_empty() {
        return Err(Error::catalog(format!("{at}.tiers"), "must list at least one tier"));
    }
    let mut previous = Decimal::ZERO;
    for (i, t) in tiers.iter().enumerate() {
        let tat = format!("{at}.tiers[{i}]");
        let last = i + 1 == tiers.len();
        match (t.up_to, last) {
            (None, false) => return Err(Error::catalog(format!("{tat}.up_to"), "only the last tier may be unbounded")),
            (Some(u), true) => {
                return Err(Error::catalog(format!("{tat}.up_to"), format!("{u}: the last tier must be unbounded (up_to: null)")));
            }
            (Some(u), false) if u <= previous => {
                return Err(Error::catalog(format!("{tat}.up_to"), format!("{u} must be greater than the previous bound {previous}")));
            }
            (Some(u), false) => previous = u,
            (None, true) => {}
        }
        if t.unit_price < Decimal::ZERO {
            return Err(Error::catalog(format!("{tat}.unit_price"), format!("{} must not be negative", t.unit_price)));
        }
        if t.flat_fee < Decimal::ZERO {
            return Err(Error::catalog(format!("{tat}.flat_fee"), format!("{} must not be negative", t.flat_fee)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
meters:
  - { key: api_calls, event_type: api.request, aggregation: COUNT }
  - { key: tokens, event_type: llm.completion, aggregation: SUM, value: tokens, group_by: { model: model } }
tax_rates:
  - { jurisdiction: US-CA, name: CA sales tax, rate: "0.0725" }
plans:
  - key: starter
    versions:
      - version: 1
        currency: USD
        recurring_fee: "29"
        prices:
          - { meter: api_calls, model: per_unit, unit_price: "0.001" }
          - meter: tokens
            model: graduated
            tiers:
              - { up_to: "1000", unit_price: "0" }
              - { up_to: null, unit_price: "0.002", flat_fee: "5" }
customers:
  - { key: acme, name: Acme, currency: USD, jurisdiction: US-CA }
subscriptions:
  - { id: sub-acme, customer: acme, plan: starter, plan_version: 1, start: "2026-01-15T00:00:00Z", anchor_day: 1 }
"#;

    fn parse(text: &str) -> Result<Catalog> {
        let file = CatalogFile::parse(text, "yaml").map_err(|m| Error::CatalogFile { file: "t.yaml".into(), message: m })?;
        file.validate(&Catalog::default())
    }

    #[test]
    fn valid_catalog() {
        let c = parse(YAML).unwrap();
        assert_eq!(c.meters.len(), 2);
        let plan = &c.plans[&("starter".to_string(), 1)];
        assert_eq!(plan.currency.code(), "USD");
        assert_eq!(plan.prices[1].model.name(), "graduated");
        assert_eq!(c.subscriptions["sub-acme"].anchor(), 1);
        assert_eq!(c.customers["acme"].locale, "en-US");
    }

    fn err(from: &str, to: &str) -> String {
        let text = YAML.replace(from, to);
        assert_ne!(text, YAML, "replacement {from:?} did not apply");
        parse(&text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_entry_and_field() {
        assert!(
            err(
                r#"- { up_to: "1000", unit_price: "0" }"#,
                "- { up_to: \"1000\", unit_price: \"0\" }\n              - { up_to: \"500\", unit_price: \"1\" }"
            )
            .contains("plans[starter].versions[1].prices[tokens].tiers[1].up_to: 500 must be greater than the previous bound 1000")
        );
        assert!(
            err("currency: USD\n        recurring", "currency: USX\n        recurring")
                .contains("plans[starter].versions[1].currency: unknown currency \"USX\"")
        );
        assert!(
            err("plan_version: 1", "plan_version: 2").contains("subscriptions[sub-acme].plan_version: plan \"starter\" has no version 2")
        );
        assert!(
            err("jurisdiction: US-CA }\nsub", "jurisdiction: DE }\nsub").contains("customers[acme].jurisdiction: \"DE\" has no tax rate")
        );
        assert!(err("model: per_unit", "model: perunit").contains("prices[api_calls].model: \"perunit\" is not a price model"));
        assert!(err("value: tokens,", "").contains("meters[tokens].value: is required for aggregation SUM"));
        assert!(err("key: acme", "key: \"ac me\"").contains("customers[ac me].key"));
        assert!(err("rate: \"0.0725\"", "rate: \"7.25\"").contains("tax_rates[US-CA].rate: 7.25 must be a fraction"));
    }

    #[test]
    fn cycles_alignment_and_anchor_month() {
        let sub = |extra: &str| -> Result<Subscription> {
            let text = YAML.replace("anchor_day: 1 }", &format!("{extra} }}"));
            Ok(parse(&text)?.subscriptions["sub-acme"].clone())
        };
        let l = |s: &str| s.parse::<PeriodLabel>().unwrap();
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        // Start 2026-01-15, quarterly anniversary: [15 Jan, 15 Apr) closed by 2026-03.
        let q = sub("cycle: quarterly").unwrap();
        assert_eq!((q.cycle, q.alignment, q.anchor(), q.anchor_month()), (Cycle::Quarterly, Alignment::Anniversary, 15, 1));
        let w = q.window(l("2026-03")).unwrap();
        assert_eq!((w.period_start, w.period_end), (t("2026-01-15T00:00:00Z"), t("2026-04-15T00:00:00Z")));
        assert!(q.window(l("2026-01")).is_none() && q.window(l("2026-04")).is_none());
        assert_eq!(q.next_window(&w).unwrap().label, l("2026-06"));
        assert!(q.previous_window(&w).is_none());
        // Calendar quarters: [1 Jan, 1 Apr) with the first 14 days before the start:
        // active 15 Jan → 1 Apr = 17 + 28 + 31 = 76 days of 90.
        let c = sub("cycle: quarterly, alignment: calendar").unwrap();
        let w = c.window(l("2026-03")).unwrap();
        assert_eq!(w.seconds(), (76 * 86_400, 90 * 86_400));
        // anchor_month overrides the month: quarters from February 15 are closed by Apr, Jul, …
        let f = sub("cycle: quarterly, anchor_month: 2").unwrap();
        assert!(f.window(l("2026-03")).is_none());
        let w = f.window(l("2026-01")).unwrap();
        assert_eq!(
            (w.period_start, w.start, w.period_end),
            (t("2025-11-15T00:00:00Z"), t("2026-01-15T00:00:00Z"), t("2026-02-15T00:00:00Z"))
        );
        // Annual calendar with anchor day 10: [10 Jan 2026, 10 Jan 2027) closed by 2026-12.
        let a = sub("cycle: annual, alignment: calendar, anchor_day: 10").unwrap();
        assert_eq!(a.cycle_containing(t("2026-06-01T00:00:00Z")).label, l("2026-12"));
        assert_eq!(a.cycle_containing(t("2026-01-09T00:00:00Z")).label, l("2025-12"));
        // The default alignment is not written, so stored subscriptions keep their form.
        let json = serde_json::to_string(&q).unwrap();
        assert!(json.contains(r#""cycle":"quarterly""#) && !json.contains("alignment") && !json.contains("anchor_month"), "{json}");
        assert!(serde_json::to_string(&c).unwrap().contains(r#""alignment":"calendar""#));
        // Errors name the field and the value.
        let e = sub("cycle: quarterly, anchor_month: 13").unwrap_err().to_string();
        assert!(e.contains("subscriptions[sub-acme].anchor_month: 13 is not a month (1-12)"), "{e}");
        let e = sub("anchor_month: 4").unwrap_err().to_string();
        assert!(e.contains("subscriptions[sub-acme].anchor_month: 4 is only used with quarterly or annual cycles"), "{e}");
        let e = sub("cycle: weekly").unwrap_err().to_string();
        assert!(e.contains("weekly"), "{e}");
        let e = sub("alignment: fiscal").unwrap_err().to_string();
        assert!(e.contains("fiscal"), "{e}");
    }

    #[test]
    fn parse_errors_carry_the_path() {
        let e = err(r#"unit_price: "0.001""#, "unit_price: 0.001");
        assert!(e.contains("plans[0].versions[0].prices[0].unit_price") && e.contains("write decimals as strings"), "{e}");
        let e = err("aggregation: COUNT", "aggregation: TOTAL");
        assert!(e.contains("meters[0].aggregation"), "{e}");
        let e = err("anchor_day: 1", "anchor_day: 1, colour: red");
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn overlapping_subscriptions_on_the_same_meter_are_refused() {
        let second = "  - { id: sub-acme-2, customer: acme, plan: starter, plan_version: 1, start: \"2026-06-01T00:00:00Z\" }\n";
        let e = parse(&format!("{YAML}{second}")).unwrap_err().to_string();
        assert!(
            e.contains(
                "subscriptions[sub-acme-2].start: overlaps subscription sub-acme of customer \"acme\" and both price meter api_calls"
            ),
            "{e}"
        );
        // Back to back (an upgrade at a point in time) is fine.
        let ended = YAML.replace("anchor_day: 1 }", "anchor_day: 1, end: \"2026-06-01T00:00:00Z\" }");
        assert!(parse(&format!("{ended}{second}")).is_ok());
    }

    #[test]
    fn currency_mismatch_is_refused() {
        let e = err("currency: USD, jurisdiction", "currency: EUR, jurisdiction");
        assert!(e.contains("subscriptions[sub-acme].plan: plan starter@1 is priced in USD but customer \"acme\" is billed in EUR"), "{e}");
    }

    #[test]
    fn package_and_matrix_models_validate() {
        let pkg = r#"{ meter: api_calls, model: package, size: "1000", package_price: "2.50", round: down, free_units: "500", max_amount: "100" }"#;
        let c = parse(&YAML.replace(r#"{ meter: api_calls, model: per_unit, unit_price: "0.001" }"#, pkg)).unwrap();
        let price = &c.plans[&("starter".to_string(), 1)].prices[0];
        assert_eq!(
            price.model,
            PriceModel::Package { size: Decimal::from(1000), package_price: Decimal::new(250, 2), round: PackageRounding::Down }
        );
        assert_eq!((price.free_units, price.max_amount), (Decimal::from(500), Some(Decimal::from(100))));

        let e = err(
            r#"{ meter: api_calls, model: per_unit, unit_price: "0.001" }"#,
            r#"{ meter: api_calls, model: package, size: "0", package_price: "1" }"#,
        );
        assert!(e.contains("prices[api_calls].size: 0 is not a package size"), "{e}");
        let e = err(
            r#"{ meter: api_calls, model: per_unit, unit_price: "0.001" }"#,
            r#"{ meter: api_calls, model: per_unit, unit_price: "0.001", size: "5" }"#,
        );
        assert!(e.contains("prices[api_calls].size: is not used by model per_unit (it uses: unit_price)"), "{e}");

        let matrix = r#"{ meter: tokens, model: matrix, default_unit_price: "0.002", entries: [ { when: { model: large }, unit_price: "0.004" } ] }"#;
        let text = YAML.replace(
            "          - meter: tokens
            model: graduated
            tiers:
              - { up_to: \"1000\", unit_price: \"0\" }
              - { up_to: null, unit_price: \"0.002\", flat_fee: \"5\" }",
            &format!("          - {matrix}"),
        );
        assert_ne!(text, YAML);
        let c = parse(&text).unwrap();
        assert_eq!(c.plans[&("starter".to_string(), 1)].prices[1].model.name(), "matrix");
        let e = parse(&text.replace("when: { model: large }", "when: { region: eu }")).unwrap_err().to_string();
        assert!(
            e.contains("prices[tokens].entries[0].when: \"region\" is not a group_by dimension of meter tokens (it has: model)"),
            "{e}"
        );
        let e = parse(&text.replace(r#"default_unit_price: "0.002", "#, "")).unwrap_err().to_string();
        assert!(e.contains("prices[tokens].default_unit_price: is required for model matrix"), "{e}");
    }

    #[test]
    fn percentage_model_validates() {
        let pct = r#"{ meter: tokens, model: percentage, rate: "0.029", fixed_fee: "0.30", min_fee: "0.50", max_fee: "10" }"#;
        let text = YAML.replace("          - meter: tokens\n            model: graduated\n            tiers:\n              - { up_to: \"1000\", unit_price: \"0\" }\n              - { up_to: null, unit_price: \"0.002\", flat_fee: \"5\" }", &format!("          - {pct}"));
        assert_ne!(text, YAML);
        let c = parse(&text).unwrap();
        assert_eq!(c.plans[&("starter".to_string(), 1)].prices[1].model.name(), "percentage");
        let e = parse(&text.replace(r#"max_fee: "10""#, r#"max_fee: "0.40""#)).unwrap_err().to_string();
        assert!(e.contains("prices[tokens].max_fee: 0.40 is below min_fee 0.50"), "{e}");
        let e = parse(&text.replace("meter: tokens, model: percentage", "meter: api_calls, model: percentage").replace(
            r#"{ meter: api_calls, model: per_unit, unit_price: "0.001" }"#,
            r#"{ meter: tokens, model: per_unit, unit_price: "0.001" }"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("percentage prices charge each event's value and need a SUM meter; api_calls is COUNT"), "{e}");
        let e = parse(&text.replace(r#"rate: "0.029", "#, "")).unwrap_err().to_string();
        assert!(e.contains("prices[tokens].rate: is required for model percentage"), "{e}");
    }

    #[test]
    fn minimum_commitment_fits_the_currency() {
        let c = parse(&YAML.replace(r#"recurring_fee: "29""#, "recurring_fee: \"29\"\n        minimum_commitment: \"100.50\"")).unwrap();
        assert_eq!(c.plans[&("starter".to_string(), 1)].minimum_commitment, Some(Decimal::new(10050, 2)));
        let e = err(r#"recurring_fee: "29""#, "recurring_fee: \"29\"\n        minimum_commitment: \"100.505\"");
        assert!(e.contains("plans[starter].versions[1].minimum_commitment: 100.505 has more decimals than USD allows (2)"), "{e}");
    }

    #[test]
    fn seats_coupons_and_credits_validate() {
        let seats = YAML.replace(r#"recurring_fee: "29""#, "recurring_fee: \"29\"\n        seat_price: \"12\"\n        billing: advance");
        let with_seats = seats.replace(
            "anchor_day: 1 }",
            r#"anchor_day: 1, seats: 5, seat_changes: [ { at: "2026-02-10T00:00:00Z", seats: 8 }, { at: "2026-03-01T00:00:00Z", seats: 2 } ] }"#,
        );
        let c = parse(&with_seats).unwrap();
        let plan = &c.plans[&("starter".to_string(), 1)];
        assert_eq!((plan.seat_price, plan.billing), (Some(Decimal::from(12)), FeeBilling::Advance));
        let s = &c.subscriptions["sub-acme"];
        let t = |x: &str| DateTime::parse_from_rfc3339(x).unwrap().with_timezone(&Utc);
        assert_eq!(
            [s.seats_at(t("2026-02-09T23:59:59Z")), s.seats_at(t("2026-02-10T00:00:00Z")), s.seats_at(t("2026-03-05T00:00:00Z"))],
            [5, 8, 2]
        );
        assert_eq!(
            s.seat_segments(t("2026-02-01T00:00:00Z"), t("2026-03-01T00:00:00Z")),
            vec![(t("2026-02-01T00:00:00Z"), t("2026-02-10T00:00:00Z"), 5), (t("2026-02-10T00:00:00Z"), t("2026-03-01T00:00:00Z"), 8)]
        );

        let e = parse(&seats).unwrap_err().to_string();
        assert!(e.contains("subscriptions[sub-acme].seats: is required: plan starter@1 has a seat_price"), "{e}");
        let e = parse(&with_seats.replace("seat_price: \"12\"\n        ", "")).unwrap_err().to_string();
        assert!(e.contains("subscriptions[sub-acme].seats: plan starter@1 has no seat_price"), "{e}");
        let e = parse(&with_seats.replace("2026-03-01T00:00:00Z\", seats: 2", "2026-02-01T00:00:00Z\", seats: 2")).unwrap_err().to_string();
        assert!(
            e.contains("subscriptions[sub-acme].seat_changes[1].at: 2026-02-01 00:00:00 UTC must be after 2026-02-10 00:00:00 UTC"),
            "{e}"
        );
        let e = parse(&seats.replace("billing: advance", "billing: upfront")).unwrap_err().to_string();
        assert!(e.contains("plans[0].versions[0].billing"), "{e}");

        // Seats from a meter (MAX or LATEST), in arrears only.
        let metered = YAML
            .replace(r#"recurring_fee: "29""#, "recurring_fee: \"29\"\n        seat_price: \"12\"\n        seat_meter: peak")
            .replace("meters:\n", "meters:\n  - { key: peak, event_type: seats, aggregation: MAX, value: n }\n");
        assert_eq!(parse(&metered).unwrap().plans[&("starter".to_string(), 1)].seat_meter.as_deref(), Some("peak"));
        let e = parse(&metered.replace("aggregation: MAX, value: n", "aggregation: SUM, value: n")).unwrap_err().to_string();
        assert!(e.contains("plans[starter].versions[1].seat_meter: a seat count comes from a MAX or LATEST meter; peak is SUM"), "{e}");
        let e = parse(&metered.replace("seat_meter: peak", "seat_meter: peak\n        billing: advance")).unwrap_err().to_string();
        assert!(e.contains("plans[starter].versions[1].seat_meter: seats counted by a meter are only known at the period's end"), "{e}");
        let e = parse(&metered.replace("anchor_day: 1 }", "anchor_day: 1, seats: 3 }")).unwrap_err().to_string();
        assert!(e.contains("subscriptions[sub-acme].seats: plan starter@1 counts seats with meter peak; remove seats"), "{e}");

        let coupons = r#"
coupons:
  - { code: WELCOME, percent: "20", duration: repeating, periods: 3 }
  - { code: TOKENS5, amount_off: "5", currency: USD, meter: tokens, duration: forever }
  - { code: BIG, percent: "120", duration: once }
credit_grants:
  - { id: g1, customer: acme, amount: "100.50", granted_at: "2026-01-01T00:00:00Z", expires_at: "2027-01-01T00:00:00Z", priority: 1 }
"#;
        let redeem = "anchor_day: 1, coupons: [ { code: WELCOME }, { code: TOKENS5, start: \"2026-03-01T00:00:00Z\" } ] }";
        let text = format!("{}{coupons}", YAML.replace("anchor_day: 1 }", redeem));
        let e = parse(&text).unwrap_err().to_string();
        assert_eq!(e, "coupons[BIG].percent: 120 must be between 0 and 100 (\"20\" is 20%)");
        let text = text.replace(r#"percent: "120""#, r#"percent: "100""#);
        let c = parse(&text).unwrap();
        assert_eq!(c.coupons.len(), 3);
        assert_eq!(c.subscriptions["sub-acme"].coupons.len(), 2);
        assert_eq!(c.credit_grants["g1"].amount, Decimal::new(10050, 2));

        let e = parse(&text.replace("{ code: WELCOME }", "{ code: NOPE }")).unwrap_err().to_string();
        assert!(e.contains("subscriptions[sub-acme].coupons[0].code: \"NOPE\" is not a known coupon"), "{e}");
        let e = parse(&text.replace("currency: USD, meter", "currency: EUR, meter")).unwrap_err().to_string();
        assert!(
            e.contains("subscriptions[sub-acme].coupons[1].code: coupon TOKENS5 takes EUR off but plan starter@1 is priced in USD"),
            "{e}"
        );
        let e = parse(&text.replace("meter: tokens, duration", "meter: api_calls2, duration")).unwrap_err().to_string();
        assert!(e.contains("coupons[TOKENS5].meter: \"api_calls2\" is not a known meter"), "{e}");
        let e = parse(&text.replace("start: \"2026-03-01T00:00:00Z\"", "start: \"2025-03-01T00:00:00Z\"")).unwrap_err().to_string();
        assert!(e.contains("subscriptions[sub-acme].coupons[1].start: 2025-03-01 00:00:00 UTC is outside the subscription"), "{e}");
        let e = parse(&text.replace(r#"amount: "100.50""#, r#"amount: "100.505""#)).unwrap_err().to_string();
        assert!(e.contains("credit_grants[g1].amount: 100.505 has more decimals than USD allows (2)"), "{e}");
        let e = parse(&text.replace("customer: acme, amount", "customer: nobody, amount")).unwrap_err().to_string();
        assert!(e.contains("credit_grants[g1].customer: \"nobody\" is not a known customer"), "{e}");
        let e = parse(&text.replace("{ code: WELCOME }", "{ code: TOKENS5 }")).unwrap_err().to_string();
        assert!(e.contains("subscriptions[sub-acme].coupons[1].code: \"TOKENS5\" is redeemed twice"), "{e}");
    }

    #[test]
    fn rate_tables_and_telecom_prices_validate() {
        let text = YAML
            .replace("meters:\n", "meters:\n  - { key: calls, event_type: call.completed, aggregation: SUM, value: duration_secs }\n")
            .replace(
                r#"{ meter: api_calls, model: per_unit, unit_price: "0.001" }"#,
                r#"{ meter: api_calls, model: per_unit, unit_price: "0.001" }
          - { meter: calls, model: telecom, rate_table: uk }"#,
            )
            + r#"rate_tables:
  - key: uk
    currency: USD
    rates:
      - { prefix: "44", description: UK, increments: { first: 60, next: 60 }, bands: [ { name: peak, from: "08:00", to: "18:00", price_per_minute: "0.05" } ] }
"#;
        let c = parse(&text).unwrap();
        assert_eq!(c.rate_tables["uk"].rates.len(), 1);
        assert_eq!(c.plans[&("starter".to_string(), 1)].prices[1].model, PriceModel::Telecom { rate_table: "uk".into() });
        let e = parse(&text.replace(r#"from: "08:00""#, r#"from: "25:00""#)).unwrap_err().to_string();
        assert!(e.contains(r#"rate_tables[uk].rates[44].bands[0].from: "25:00" is not HH:MM (00:00 to 23:59)"#), "{e}");
        let e = parse(&text.replace("next: 60", "next: 0")).unwrap_err().to_string();
        assert!(e.contains("rate_tables[uk].rates[44].increments.next: 0 must be at least 1"), "{e}");
        let e = parse(&text.replace("rate_table: uk", "rate_table: fr")).unwrap_err().to_string();
        assert!(e.contains(r#"plans[starter].versions[1].prices[calls].rate_table: "fr" is not a known rate table"#), "{e}");
        let e = parse(&text.replace("    currency: USD\n    rates", "    currency: EUR\n    rates")).unwrap_err().to_string();
        assert!(e.contains("prices[calls].rate_table: rate table uk is priced in EUR but the plan in USD"), "{e}");
        let e = parse(&text.replace("aggregation: SUM, value: duration_secs", "aggregation: COUNT")).unwrap_err().to_string();
        assert!(e.contains("prices[calls].model: telecom prices rate each call record and need a SUM meter"), "{e}");
        let e = parse(&text.replace("model: telecom, rate_table: uk", "model: telecom")).unwrap_err().to_string();
        assert!(e.contains("prices[calls].rate_table: is required for model telecom"), "{e}");
        let e = parse(&text.replace("rate_table: uk }", "rate_table: uk, max_amount: \"5\" }")).unwrap_err().to_string();
        assert!(e.contains("prices[calls].max_amount: is not supported with model telecom"), "{e}");
    }

    #[test]
    fn shipped_example_catalog_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/catalog.yaml");
        let c = CatalogFile::read(&path).unwrap().validate(&Catalog::default()).unwrap();
        assert_eq!((c.meters.len(), c.plans.len(), c.customers.len(), c.subscriptions.len()), (6, 8, 7, 6));
        assert_eq!(c.rate_tables.len(), 1);
        assert_eq!(c.rate_tables["uk-voice"].rates.len(), 3);
        assert_eq!((c.coupons.len(), c.credit_grants.len(), c.tax_rates.len(), c.fx_rates.len()), (2, 2, 6, 3));
        assert!(c.plans[&("vat-inclusive-eur".to_string(), 1)].tax_inclusive);
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(c.tax_rate_at("DE", t("2020-08-01T00:00:00Z")).unwrap().name, "USt 16%");
        assert_eq!(c.tax_rate_at("DE", t("2026-10-01T00:00:00Z")).unwrap().name, "USt 19%");
        assert_eq!(c.customers["societe-fr"].jurisdiction, "FR");
        assert_eq!(c.subscriptions["sub-team-1"].seats_at(DateTime::parse_from_rfc3339("2026-10-20T00:00:00Z").unwrap().into()), 12);
        assert_eq!(c.plans[&("gulf-kwd".to_string(), 1)].currency.minor_units(), 3);
        // Calendar quarters from 10 Feb: the first quarter [1 Jan, 1 Apr) is closed by 2026-03.
        let q = &c.subscriptions["sub-hilfswerk-1"];
        assert!(q.window("2026-02".parse().unwrap()).is_none());
        assert_eq!(q.window("2026-03".parse().unwrap()).unwrap().period_start, t("2026-01-01T00:00:00Z"));
    }

    #[test]
    fn tax_rates_customers_and_fx_validate() {
        let rates = r#"  - { country: US, name: US, rate: "0" }
  - { country: US, region: CA, name: CA 8%, rate: "0.08", from: 2027-01-01 }
"#;
        let text = YAML.replace(
            "tax_rates:
",
            &format!(
                "tax_rates:
{rates}"
            ),
        );
        let c = parse(&text).unwrap();
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        // Region beats country; a dated entry beats the default on its dates.
        assert_eq!(c.tax_rate_at("US-CA", t("2026-06-01T00:00:00Z")).unwrap().name, "CA sales tax");
        assert_eq!(c.tax_rate_at("US-CA", t("2027-01-01T00:00:00Z")).unwrap().name, "CA 8%");
        assert_eq!(c.tax_rate_at("US-NV", t("2027-01-01T00:00:00Z")).unwrap().name, "US");
        assert!(c.tax_rate_at("DE", t("2027-01-01T00:00:00Z")).is_none());

        let overlap = text.replace(
            "from: 2027-01-01 }",
            "from: 2027-01-01 }
  - { jurisdiction: US-CA, name: x, rate: \"0.1\", from: 2027-06-01, to: 2027-06-30 }",
        );
        let e = parse(&overlap).unwrap_err().to_string();
        assert!(e.contains("overlaps tax_rates[US-CA.2027-01-01]: dated rates of US-CA must not overlap"), "{e}");
        let e = parse(&text.replace("from: 2027-01-01 }", "from: 2027-01-01, to: 2026-01-01 }")).unwrap_err().to_string();
        assert!(e.contains("tax_rates[US-CA].to: 2026-01-01 is before from 2027-01-01"), "{e}");

        let cust = |extra: &str| YAML.replace("jurisdiction: US-CA }\nsub", &format!("jurisdiction: US-CA{extra} }}\nsub"));
        let e = parse(&cust(", tax_exempt: true")).unwrap_err().to_string();
        assert!(e.contains("customers[acme].tax_exempt_reason: is required when tax_exempt is true"), "{e}");
        assert!(parse(&cust(", tax_exempt: true, tax_exempt_reason: resale certificate 42")).is_ok());
        let e = parse(&cust(", vat_id: DE12345")).unwrap_err().to_string();
        assert!(e.contains("customers[acme].vat_id: \"DE12345\" is not a valid EU VAT id: expected DE followed by 999999999"), "{e}");
        let e = parse(&cust(", vat_id: DE123456789")).unwrap_err().to_string();
        assert!(e.contains("\"DE123456789\" is a VAT id of DE but the customer is in \"US\""), "{e}");
        assert!(parse(&cust(", vat_id: \"CHE-123.456.789\"")).is_ok(), "non-EU ids are kept, never reverse-charged");
        assert_eq!(parse(YAML).unwrap().customers["acme"].payment_terms_days, None, "absent: [billing] payment_terms_days");
        assert_eq!(parse(&cust(", payment_terms_days: 14")).unwrap().customers["acme"].payment_terms_days, Some(14));
        assert_eq!(parse(&cust(", payment_terms_days: 3650")).unwrap().customers["acme"].payment_terms_days, Some(3650));
        let e = parse(&cust(", payment_terms_days: 3651")).unwrap_err().to_string();
        assert!(e.contains("customers[acme].payment_terms_days: 3651 is more than 3650 days"), "{e}");

        let fx = format!("{YAML}fx_rates:\n  - {{ from: EUR, to: EUR, rate: \"1\", date: 2026-10-31 }}\n");
        let e = parse(&fx).unwrap_err().to_string();
        assert!(e.contains("fx_rates[EUR.EUR.2026-10-31].rate: 1 must be positive between two different currencies"), "{e}");
        let c = parse(&fx.replace("to: EUR", "to: USD")).unwrap();
        let day = |s: &str| s.parse::<chrono::NaiveDate>().unwrap();
        assert_eq!(c.fx_rate_on("EUR", "USD", day("2026-11-01")).unwrap().rate, Decimal::ONE);
        assert!(c.fx_rate_on("EUR", "USD", day("2026-10-30")).is_none());
    }

    #[test]
    fn toml_works_too() {
        let toml = r#"
[[meters]]
key = "api_calls"
event_type = "api.request"
aggregation = "COUNT"
[[tax_rates]]
jurisdiction = "DE"
name = "USt 19%"
rate = "0.19"
"#;
        let c = CatalogFile::parse(toml, "toml").unwrap().validate(&Catalog::default()).unwrap();
        assert_eq!(c.tax_rates["DE"].rate, Decimal::new(19, 2));
        let e = CatalogFile::parse(&toml.replace(r#"rate = "0.19""#, "rate = 0.19"), "toml").unwrap_err();
        assert!(e.contains("tax_rates[0].rate"), "{e}");
    }
}
