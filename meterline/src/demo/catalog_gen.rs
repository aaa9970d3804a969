//! The demo catalog: five meters, six plan versions in four currencies (USD 2, EUR 2, JPY 0 and
//! KWD 3 minor units), tax rates for eight jurisdictions, and `n` customers with one
//! subscription each; a few start or end inside the demo period (prorated fees); exchange rates
//! to USD for the reporting columns.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use rust_decimal::Decimal;

use meterline_schemas::catalog::{Alignment, CatalogFile, Customer, Cycle, PlanSpec, PlanVersionSpec, PriceSpec, Subscription, TaxRate};
use meterline_schemas::meter::{Aggregation, Meter};
use meterline_schemas::period::PeriodLabel;
use meterline_schemas::price::Tier;
use meterline_schemas::tax::FxRate;

fn d(s: &str) -> Decimal {
    Decimal::from_str_exact(s).expect("demo constants are valid decimals")
}

fn meter(key: &str, event_type: &str, aggregation: Aggregation, value: Option<&str>, group_by: &[(&str, &str)]) -> Meter {
    Meter {
        key: key.into(),
        name: Some(key.replace('_', " ")),
        event_type: event_type.into(),
        aggregation,
        value: value.map(Into::into),
        group_by: group_by.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>(),
    }
}

fn per_unit(meter: &str, price: &str) -> PriceSpec {
    PriceSpec { meter: meter.into(), model: "per_unit".into(), unit_price: Some(d(price)), ..Default::default() }
}

fn tiered(meter: &str, model: &str, tiers: &[(Option<&str>, &str, &str)]) -> PriceSpec {
    PriceSpec {
        meter: meter.into(),
        model: model.into(),
        tiers: Some(tiers.iter().map(|(u, p, f)| Tier { up_to: u.map(d), unit_price: d(p), flat_fee: d(f) }).collect()),
        ..Default::default()
    }
}

fn version(version: u32, currency: &str, fee: &str, prices: Vec<PriceSpec>) -> PlanVersionSpec {
    PlanVersionSpec { version, currency: currency.into(), recurring_fee: Some(d(fee)), prices, ..Default::default() }
}

/// A customer segment: currency, jurisdictions, and the plan versions it subscribes to.
type Segment = (&'static str, &'static [&'static str], &'static [(&'static str, u32)]);

const SEGMENTS: &[Segment] = &[
    ("USD", &["US-CA", "US-NY", "US-TX", "US-OR"], &[("starter", 1), ("growth", 1), ("growth", 2)]),
    ("EUR", &["DE", "FR", "NL"], &[("business-eur", 1)]),
    ("JPY", &["JP"], &[("enterprise-jpy", 1)]),
    ("KWD", &["KW"], &[("gulf-kwd", 1)]),
];

const NAMES_A: &[&str] =
    &["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Tyrell", "Cyberdyne", "Soylent", "Vandelay", "Wonka"];
const NAMES_B: &[&str] = &["Labs", "Systems", "Cloud", "Analytics", "Networks", "Robotics", "Media", "Health", "Logistics", "Energy"];

/// Builds the catalog for `customers` customers around period `label`.
pub fn generate(customers: usize, label: PeriodLabel, seed: u64) -> CatalogFile {
    let meters = vec![
        meter("api_calls", "api.request", Aggregation::Count, None, &[("endpoint", "endpoint")]),
        meter("active_users", "api.request", Aggregation::UniqueCount, Some("user_id"), &[]),
        meter("llm_tokens", "llm.completion", Aggregation::Sum, Some("tokens"), &[("model", "model")]),
        meter("storage_gb_hours", "storage.usage", Aggregation::Sum, Some("gb_hours"), &[("region", "region")]),
        meter("peak_connections", "realtime.connections", Aggregation::Max, Some("connections"), &[]),
    ];
    let tax_rates = [
        ("US-CA", "CA sales tax 7.25%", "0.0725"),
        ("US-NY", "NY sales tax 8.875%", "0.08875"),
        ("US-TX", "TX sales tax 6.25%", "0.0625"),
        ("US-OR", "OR no sales tax", "0"),
        ("DE", "USt 19%", "0.19"),
        ("FR", "TVA 20%", "0.20"),
        ("NL", "BTW 21%", "0.21"),
        ("JP", "消費税 10%", "0.10"),
        ("KW", "No VAT", "0"),
    ]
    .iter()
    .map(|(j, n, r)| TaxRate { jurisdiction: (*j).into(), name: (*n).into(), rate: d(r), ..Default::default() })
    .collect();

    let token_tiers = [(Some("1000000"), "0", "0"), (Some("10000000"), "0.000002", "0"), (None, "0.0000015", "0")];
    let plans = vec![
        PlanSpec {
            key: "starter".into(),
            name: Some("Starter".into()),
            versions: vec![version(
                1,
                "USD",
                "29",
                vec![
                    per_unit("api_calls", "0.0004"),
                    tiered("llm_tokens", "graduated", &token_tiers),
                    per_unit("storage_gb_hours", "0.00012"),
                ],
            )],
        },
        PlanSpec {
            key: "growth".into(),
            name: Some("Growth".into()),
            versions: vec![
                version(
                    1,
                    "USD",
                    "199",
                    vec![
                        tiered(
                            "api_calls",
                            "volume",
                            &[(Some("10000"), "0.0003", "0"), (Some("100000"), "0.00025", "0"), (None, "0.0002", "0")],
                        ),
                        tiered("llm_tokens", "graduated", &token_tiers),
                        per_unit("active_users", "0.50"),
                        per_unit("storage_gb_hours", "0.0001"),
                    ],
                ),
                version(
                    2,
                    "USD",
                    "249",
                    vec![
                        tiered("api_calls", "volume", &[(Some("10000"), "0.00025", "0"), (None, "0.00018", "0")]),
                        tiered("llm_tokens", "graduated", &[(Some("2000000"), "0", "0"), (None, "0.0000012", "10")]),
                        per_unit("active_users", "0.40"),
                        per_unit("storage_gb_hours", "0.0001"),
                        per_unit("peak_connections", "0.02"),
                    ],
                ),
            ],
        },
        PlanSpec {
            key: "business-eur".into(),
            name: Some("Business".into()),
            versions: vec![version(
                1,
                "EUR",
                "149",
                vec![
                    per_unit("api_calls", "0.00035"),
                    tiered("llm_tokens", "volume", &[(Some("5000000"), "0.0000022", "0"), (None, "0.0000018", "0")]),
                    per_unit("active_users", "0.45"),
                    per_unit("storage_gb_hours", "0.00011"),
                ],
            )],
        },
        PlanSpec {
            key: "enterprise-jpy".into(),
            name: Some("Enterprise".into()),
            versions: vec![version(
                1,
                "JPY",
                "50000",
                vec![
                    per_unit("api_calls", "0.05"),
                    tiered("llm_tokens", "graduated", &[(Some("1000000"), "0", "0"), (None, "0.00031", "0")]),
                    per_unit("peak_connections", "3"),
                ],
            )],
        },
        PlanSpec {
            key: "gulf-kwd".into(),
            name: Some("Gulf".into()),
            versions: vec![version(
                1,
                "KWD",
                "12.500",
                vec![per_unit("api_calls", "0.0001"), per_unit("llm_tokens", "0.0000006"), per_unit("storage_gb_hours", "0.000035")],
            )],
        },
    ];

    let mut rng = fastrand::Rng::with_seed(seed ^ 0xC0FFEE);
    let (period_start, period_end) = label.cycle(1);
    let span = (period_end - period_start).num_seconds();
    let mut custs = Vec::with_capacity(customers);
    let mut subs = Vec::with_capacity(customers);
    for i in 0..customers {
        // 60% USD, 25% EUR, 10% JPY, 5% KWD
        let seg = match i % 20 {
            0..=11 => 0,
            12..=16 => 1,
            17 | 18 => 2,
            _ => 3,
        };
        let (currency, jurisdictions, seg_plans) = SEGMENTS[seg];
        let key = format!("cust-{:05}", i + 1);
        custs.push(Customer {
            key: key.clone(),
            name: format!("{} {} #{}", NAMES_A[rng.usize(..NAMES_A.len())], NAMES_B[rng.usize(..NAMES_B.len())], i + 1),
            currency: currency.into(),
            jurisdiction: jurisdictions[rng.usize(..jurisdictions.len())].into(),
            locale: match currency {
                "EUR" => "de-DE",
                "JPY" => "ja-JP",
                "KWD" => "ar-KW",
                _ => "en-US",
            }
            .into(),
            country: None,
            region: None,
            vat_id: None,
            tax_exempt: false,
            tax_exempt_reason: None,
            payment_terms_days: None,
        });
        let (plan, plan_version) = seg_plans[rng.usize(..seg_plans.len())];
        let roll = rng.u32(..100);
        let mut start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().expect("valid date");
        let mut end = None;
        if roll < 3 {
            start = period_start + chrono::Duration::seconds(rng.i64(span / 4..span * 3 / 4));
        } else if roll < 5 {
            end = Some(period_start + chrono::Duration::seconds(rng.i64(span / 4..span * 3 / 4)));
        }
        subs.push(Subscription {
            id: format!("sub-{:05}", i + 1),
            customer: key,
            plan: plan.into(),
            plan_version,
            start,
            end,
            cycle: Cycle::Monthly,
            alignment: Alignment::Calendar,
            anchor_day: Some(1),
            anchor_month: None,
            seats: None,
            seat_changes: Vec::new(),
            coupons: Vec::new(),
        });
    }
    // Rates for the invoices' reporting columns (`billing.reporting_currency`, USD by default),
    // valid from the period's first day; they never change what is billed.
    let fx_rates = [("EUR", "1.0832"), ("JPY", "0.0066"), ("KWD", "3.2550")]
        .into_iter()
        .map(|(from, rate)| FxRate { from: from.into(), to: "USD".into(), rate: d(rate), date: period_start.date_naive() })
        .collect();
    CatalogFile { meters, tax_rates, plans, customers: custs, subscriptions: subs, fx_rates, ..Default::default() }
}
