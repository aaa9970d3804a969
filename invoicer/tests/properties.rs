//! Property tests over the whole rating and invoicing path (ledger segments → DataFusion →
//! prices → invoices): the result does not depend on event order or on how events are split
//! into segments, and every invoice's totals are sums of its rounded lines; discounts and
//! prepaid credits never make a line or a total negative, and never use more than a grant holds;
//! tax never changes what the lines before it cost (split at a rate change or extracted from
//! inclusive prices).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use chrono::{Duration, TimeZone, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;

use meterline_ingest::LedgerConfig;
use meterline_ingest::segment::{Ledger, build_segments};
use meterline_ingest::validate::{Accepted, Validator};
use meterline_invoicer::{CreditUsage, Invoice, build_invoices};
use meterline_schemas::catalog::{Catalog, CatalogFile};
use meterline_schemas::invoice::LineKind;
use meterline_schemas::money::RoundingMode;

const CATALOG: &str = r#"
meters:
  - { key: total, event_type: u, aggregation: SUM, value: v }
  - { key: calls, event_type: u, aggregation: COUNT }
  - { key: peak, event_type: u, aggregation: MAX, value: v }
  - { key: users, event_type: u, aggregation: UNIQUE_COUNT, value: user }
  - { key: last, event_type: u, aggregation: LATEST, value: v }
  - { key: mean, event_type: u, aggregation: AVG, value: v }
tax_rates:
  - { jurisdiction: NY, name: NY 8.875%, rate: "0.08875" }
plans:
  - key: p
    versions:
      - version: 1
        currency: USD
        recurring_fee: "9.99"
        minimum_commitment: "50"
        prices:
          - meter: total
            model: graduated
            tiers:
              - { up_to: "1000", unit_price: "0.013" }
              - { up_to: "5000", unit_price: "0.0071", flat_fee: "1.5" }
              - { up_to: null, unit_price: "0.0033" }
          - { meter: calls, model: package, size: "7", package_price: "0.33" }
          - { meter: peak, model: per_unit, unit_price: "0.017" }
          - { meter: users, model: per_unit, unit_price: "1.11" }
          - { meter: last, model: per_unit, unit_price: "0.019" }
          - { meter: mean, model: volume, tiers: [ { up_to: "100", unit_price: "0.7" }, { up_to: null, unit_price: "0.3" } ] }
customers:
  - { key: a, name: A, currency: USD, jurisdiction: NY }
  - { key: b, name: B, currency: USD, jurisdiction: NY }
subscriptions:
  - { id: sub-a, customer: a, plan: p, plan_version: 1, start: "2026-01-01T00:00:00Z", anchor_day: 1 }
  - { id: sub-b, customer: b, plan: p, plan_version: 1, start: "2026-10-11T06:00:00Z", anchor_day: 1 }
"#;

fn catalog() -> Catalog {
    CatalogFile::parse(CATALOG, "yaml").unwrap().validate(&Catalog::default()).unwrap()
}

/// (customer, value in cents, second of October, user)
type Ev = (bool, u32, u32, u8);

fn events(evs: &[Ev]) -> Vec<Accepted> {
    let validator = Validator::new(catalog().meters_by_event_type());
    let start = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    for (i, (b, cents, sec, user)) in evs.iter().enumerate() {
        let t = (start + Duration::seconds(i64::from(*sec))).to_rfc3339();
        let json = serde_json::json!({
            "specversion": "1.0", "id": format!("e{i:04}"), "source": "prop", "type": "u",
            "subject": if *b { "b" } else { "a" }, "time": t,
            "data": { "v": Decimal::new(i64::from(*cents), 2).to_string(), "user": format!("u{user}") },
        });
        validator.check(json.to_string().as_bytes(), &mut ok, &mut bad);
    }
    assert!(bad.is_empty());
    ok
}

/// Writes `order` of the events into segments cut at `cuts`, then closes October.
fn close(accepted: &[Accepted], order: &[usize], cuts: &[usize], rt: &tokio::runtime::Runtime) -> Vec<Invoice> {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&LedgerConfig { path: dir.path().to_path_buf() }).unwrap();
    let at = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
    let ordered: Vec<&Accepted> = order.iter().map(|i| &accepted[*i]).collect();
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (ordered.len() + 1)).collect();
    bounds.extend([0, ordered.len()]);
    bounds.sort_unstable();
    bounds.dedup();
    rt.block_on(async {
        for (n, w) in bounds.windows(2).enumerate() {
            let part = &ordered[w[0]..w[1]];
            let seq = u64::try_from(n).unwrap() * 1000;
            for seg in build_segments(0, part, seq + 1, seq + 999, at).unwrap() {
                ledger.write(&seg).await.unwrap();
            }
        }
        let rated = meterline_rater::rate_period(dir.path(), &catalog(), "2026-10".parse().unwrap()).await.unwrap();
        build_invoices(&rated, &catalog(), "2026-10".parse().unwrap(), RoundingMode::HalfUp, &CreditUsage::none()).unwrap()
    })
}

/// One line as compared: kind, meter, quantity, event count, amount, exact amount.
type LineEssence = (i8, String, Decimal, u64, Decimal, String);

/// What must not change: every line's kind, meter, quantity, event count and amounts.
fn essence(invoices: &[Invoice]) -> Vec<(String, Vec<LineEssence>)> {
    invoices
        .iter()
        .map(|i| {
            let lines = i
                .lines
                .iter()
                .map(|l| (l.kind, l.meter.clone(), l.quantity, l.event_count, l.amount, l.amount_unrounded.clone()))
                .collect();
            (i.row.subscription_id.clone(), lines)
        })
        .collect()
}

fn ev() -> impl Strategy<Value = Ev> {
    // Whole hours, so several events share a time and LATEST must break ties by event id.
    (any::<bool>(), 0u32..500_000, (0u32..744).prop_map(|h| h * 3600), 0u8..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn rating_ignores_event_order_and_segment_split(
        evs in prop::collection::vec(ev(), 1..80),
        shuffle in any::<u64>(),
        cuts in prop::collection::vec(any::<usize>(), 0..4),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let accepted = events(&evs);
        let in_order: Vec<usize> = (0..accepted.len()).collect();
        let mut shuffled = in_order.clone();
        fastrand::Rng::with_seed(shuffle).shuffle(&mut shuffled);
        let one = close(&accepted, &in_order, &[], &rt);
        let split = close(&accepted, &shuffled, &cuts, &rt);
        prop_assert_eq!(essence(&one), essence(&split));
    }

    #[test]
    fn totals_are_sums_of_rounded_lines(evs in prop::collection::vec(ev(), 0..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let accepted = events(&evs);
        let order: Vec<usize> = (0..accepted.len()).collect();
        for inv in close(&accepted, &order, &[], &rt) {
            let tax: Decimal = inv.lines.iter().filter(|l| l.kind == LineKind::Tax as i8).map(|l| l.amount).sum();
            let rest: Decimal = inv.lines.iter().filter(|l| l.kind != LineKind::Tax as i8).map(|l| l.amount).sum();
            prop_assert_eq!(inv.row.subtotal, rest);
            prop_assert_eq!(inv.row.tax, tax);
            prop_assert_eq!(inv.row.total, rest + tax);
            for l in &inv.lines {
                prop_assert!(l.amount.scale() <= 2, "line {} has {} decimals", l.line_no, l.amount.scale());
            }
            let usage: Decimal = inv.lines.iter().filter(|l| l.kind == LineKind::Usage as i8).map(|l| l.amount).sum();
            prop_assert!(usage >= Decimal::from(50) || inv.lines.iter().any(|l| l.kind == LineKind::Commitment as i8));
        }
    }
}

/// A catalog with random coupons and grants; usage feeds one SUM meter.
fn discount_catalog(percent: &str, off_cents: u32, meter_percent: &str, meter_off_cents: u32, grants: &[(u32, u8)], tax: &str) -> Catalog {
    let grants: String = grants
        .iter()
        .enumerate()
        .map(|(i, (cents, prio))| {
            format!(
                "  - {{ id: g{i}, customer: a, amount: \"{}\", granted_at: \"2026-09-0{}T00:00:00Z\", priority: {prio} }}\n",
                Decimal::new(i64::from(*cents) + 1, 2),
                i % 9 + 1
            )
        })
        .collect();
    let text = format!(
        r#"
meters:
  - {{ key: total, event_type: u, aggregation: SUM, value: v }}
  - {{ key: calls, event_type: u, aggregation: COUNT }}
tax_rates:
  - {{ jurisdiction: X, name: tax, rate: "{tax}" }}
coupons:
  - {{ code: PCT, percent: "{percent}", duration: forever }}
  - {{ code: OFF, amount_off: "{off}", currency: USD, duration: forever }}
  - {{ code: MPCT, percent: "{meter_percent}", meter: total, duration: forever }}
  - {{ code: MOFF, amount_off: "{moff}", currency: USD, meter: calls, duration: forever }}
plans:
  - key: p
    versions:
      - version: 1
        currency: USD
        recurring_fee: "9.99"
        seat_price: "3.33"
        prices:
          - {{ meter: total, model: per_unit, unit_price: "0.013" }}
          - {{ meter: calls, model: per_unit, unit_price: "0.07" }}
customers:
  - {{ key: a, name: A, currency: USD, jurisdiction: X }}
subscriptions:
  - id: sub-a
    customer: a
    plan: p
    plan_version: 1
    start: "2026-10-07T05:00:00Z"
    anchor_day: 1
    seats: 3
    seat_changes: [ {{ at: "2026-10-19T00:00:00Z", seats: 7 }} ]
    coupons: [ {{ code: OFF }}, {{ code: MPCT }}, {{ code: PCT }}, {{ code: MOFF }} ]
credit_grants:
{grants}"#,
        off = Decimal::new(i64::from(off_cents) + 1, 2),
        moff = Decimal::new(i64::from(meter_off_cents) + 1, 2),
    );
    CatalogFile::parse(&text, "yaml").unwrap().validate(&Catalog::default()).unwrap()
}

fn percent() -> impl Strategy<Value = String> {
    (0u32..=1000).prop_map(|p| Decimal::new(i64::from(p), 1).to_string())
}

fn rounding() -> impl Strategy<Value = RoundingMode> {
    prop_oneof![Just(RoundingMode::HalfEven), Just(RoundingMode::HalfUp), Just(RoundingMode::Up), Just(RoundingMode::Down)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn discounts_and_credits_never_go_negative(
        evs in prop::collection::vec(ev(), 0..30),
        pct in percent(),
        off in 0u32..20_000,
        mpct in percent(),
        moff in 0u32..500,
        grants in prop::collection::vec((0u32..30_000, 0u8..3), 0..4),
        tax in prop_oneof![Just("0"), Just("0.19"), Just("0.08875")],
        mode in rounding(),
    ) {
        let cat = discount_catalog(&pct, off, &mpct, moff, &grants, tax);
        let validator = Validator::new(cat.meters_by_event_type());
        let start = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        for (i, (_, cents, sec, _)) in evs.iter().enumerate() {
            // Two months of usage: October and November.
            let t = (start + Duration::seconds(i64::from(*sec) * 2)).to_rfc3339();
            let json = serde_json::json!({ "specversion": "1.0", "id": format!("e{i}"), "source": "prop", "type": "u",
                "subject": "a", "time": t, "data": { "v": Decimal::new(i64::from(*cents), 2).to_string() } });
            validator.check(json.to_string().as_bytes(), &mut ok, &mut bad);
        }
        prop_assert!(bad.is_empty());
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&LedgerConfig { path: dir.path().to_path_buf() }).unwrap();
        let refs: Vec<&Accepted> = ok.iter().collect();
        let mut credits = CreditUsage::none();
        for label in ["2026-10", "2026-11", "2026-12"] {
            let label = label.parse().unwrap();
            let invoices = rt.block_on(async {
                if !refs.is_empty() && label == "2026-10".parse().unwrap() {
                    for seg in build_segments(0, &refs, 1, refs.len() as u64, start).unwrap() {
                        ledger.write(&seg).await.unwrap();
                    }
                }
                let rated = meterline_rater::rate_period(dir.path(), &cat, label).await.unwrap();
                build_invoices(&rated, &cat, label, mode, &credits).unwrap()
            });
            for inv in &invoices {
                let sum = |f: &dyn Fn(i8) -> bool| -> Decimal { inv.lines.iter().filter(|l| f(l.kind)).map(|l| l.amount).sum() };
                let (tax_k, credit_k, discount_k) = (LineKind::Tax as i8, LineKind::Credit as i8, LineKind::Discount as i8);
                prop_assert_eq!(inv.row.total, sum(&|_| true), "total is the sum of every line");
                prop_assert_eq!(inv.row.subtotal, sum(&|k| k != tax_k && k != credit_k));
                prop_assert_eq!(inv.row.tax, sum(&|k| k == tax_k));
                // Every charge here is positive, so nothing may go below zero.
                prop_assert!(inv.row.subtotal >= Decimal::ZERO, "subtotal {}", inv.row.subtotal);
                prop_assert!(inv.row.total >= Decimal::ZERO, "total {}", inv.row.total);
                let charges = sum(&|k| k != tax_k && k != credit_k && k != discount_k);
                prop_assert!(-sum(&|k| k == discount_k) <= charges);
                for l in &inv.lines {
                    prop_assert!(l.amount.scale() == 2, "line {} has scale {}", l.line_no, l.amount.scale());
                    if l.kind == discount_k || l.kind == credit_k {
                        prop_assert!(l.amount <= Decimal::ZERO, "{} is positive", l.description);
                    }
                    if l.kind == discount_k && !l.meter.is_empty() {
                        let line = inv.lines.iter().find(|u| u.kind == LineKind::Usage as i8 && u.meter == l.meter).unwrap();
                        prop_assert!(-l.amount <= line.amount.max(Decimal::ZERO), "{} exceeds its line", l.description);
                    }
                }
                credits.add_lines(&inv.lines).unwrap();
            }
        }
        for (i, (cents, _)) in grants.iter().enumerate() {
            let id = format!("g{i}");
            prop_assert!(credits.used(&id) <= Decimal::new(i64::from(*cents) + 1, 2), "grant {} overdrawn", id);
        }
    }
}

/// A plan with a fee, seats, usage and a percent coupon; DE taxed at 19%, then `second` from
/// October `change_day` (none when 0); prices inclusive or not. `zero`: the same with no tax.
fn tax_catalog(inclusive: bool, change_day: u32, second: &str, pct: &str, zero: bool) -> Catalog {
    let (r1, r2) = if zero { ("0", "0") } else { ("0.19", second) };
    let dated = if change_day > 0 {
        format!("  - {{ country: DE, name: second, rate: \"{r2}\", from: 2026-10-{change_day:02}, to: 2026-12-31 }}\n")
    } else {
        String::new()
    };
    let text = format!(
        r#"
meters:
  - {{ key: total, event_type: u, aggregation: SUM, value: v }}
  - {{ key: calls, event_type: u, aggregation: COUNT }}
tax_rates:
  - {{ country: DE, name: first, rate: "{r1}" }}
{dated}coupons:
  - {{ code: PCT, percent: "{pct}", duration: forever }}
  - {{ code: MPCT, percent: "{pct}", meter: calls, duration: forever }}
plans:
  - key: p
    versions:
      - version: 1
        currency: EUR
        tax_inclusive: {inclusive}
        recurring_fee: "9.99"
        seat_price: "3.33"
        prices:
          - {{ meter: total, model: per_unit, unit_price: "0.013" }}
          - {{ meter: calls, model: per_unit, unit_price: "0.07" }}
customers:
  - {{ key: a, name: A, currency: EUR, country: DE }}
subscriptions:
  - {{ id: sub-a, customer: a, plan: p, plan_version: 1, start: "2026-10-07T05:00:00Z", anchor_day: 1, seats: 3,
      seat_changes: [ {{ at: "2026-10-19T00:00:00Z", seats: 7 }} ], coupons: [ MPCT, PCT ] }}
"#
    );
    CatalogFile::parse(&text, "yaml").unwrap().validate(&Catalog::default()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn tax_never_changes_what_lines_cost(
        evs in prop::collection::vec(ev(), 0..30),
        inclusive in any::<bool>(),
        change_day in prop_oneof![Just(0u32), 2u32..=31],
        second in prop_oneof![Just("0.16"), Just("0.07"), Just("0.0725"), Just("0")],
        pct in percent(),
        mode in rounding(),
        per_line in any::<bool>(),
    ) {
        use meterline_invoicer::tax::usage_by_tax_period;
        use meterline_schemas::tax::TaxRounding;
        let taxed = tax_catalog(inclusive, change_day, second, &pct, false);
        let untaxed = tax_catalog(inclusive, change_day, second, &pct, true);
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        let validator = Validator::new(taxed.meters_by_event_type());
        let start = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
        for (i, (_, cents, sec, _)) in evs.iter().enumerate() {
            let t = (start + Duration::seconds(i64::from(*sec))).to_rfc3339();
            let json = serde_json::json!({ "specversion": "1.0", "id": format!("e{i}"), "source": "prop", "type": "u",
                "subject": "a", "time": t, "data": { "v": Decimal::new(i64::from(*cents), 2).to_string() } });
            validator.check(json.to_string().as_bytes(), &mut ok, &mut bad);
        }
        prop_assert!(bad.is_empty());
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let label = "2026-10".parse().unwrap();
        let billing = meterline_invoicer::Settings {
            tax_rounding: if per_line { TaxRounding::PerLine } else { TaxRounding::PerInvoice },
            ..mode.into()
        };
        let (with_tax, without) = rt.block_on(async {
            let ledger = Ledger::open(&LedgerConfig { path: dir.path().to_path_buf() }).unwrap();
            let refs: Vec<&Accepted> = ok.iter().collect();
            if !refs.is_empty() {
                for seg in build_segments(0, &refs, 1, refs.len() as u64, start).unwrap() {
                    ledger.write(&seg).await.unwrap();
                }
            }
            let mut out = Vec::new();
            for cat in [&taxed, &untaxed] {
                let rated = meterline_rater::rate_period(dir.path(), cat, label).await.unwrap();
                let parts = usage_by_tax_period(dir.path(), &rated, &billing, billing.provider(cat).as_ref()).await.unwrap();
                out.push(meterline_invoicer::build_invoices_with_usage(&rated, cat, label, &billing, &CreditUsage::none(), &parts).unwrap());
            }
            (out.remove(0), out.remove(0))
        });
        let (a, b) = (&with_tax[0], &without[0]);
        let tax_k = LineKind::Tax as i8;
        prop_assert_eq!(a.row.total, a.lines.iter().map(|l| l.amount).sum::<Decimal>(), "total is the sum of every line");
        prop_assert_eq!(a.row.tax, a.lines.iter().filter(|l| l.kind == tax_k).map(|l| l.amount).sum::<Decimal>());
        prop_assert_eq!(a.row.subtotal, a.row.total - a.row.tax);
        prop_assert!(a.lines.iter().all(|l| l.amount.scale() == 2));
        if inclusive {
            // net + tax = gross: the customer pays the price list, whatever the rates.
            prop_assert_eq!(a.row.total, b.row.total);
        } else {
            // Splitting at a rate change never changes the amount before tax.
            prop_assert_eq!(a.row.subtotal, b.row.subtotal);
        }
            // One tax line per non-zero rate in the window, which starts on 7 October: a change on
        // the 8th or later cuts it in two, an earlier one replaces the first rate entirely.
        let second_line = usize::from(second != "0");
        let lines = match change_day {
            0 => 1,
            2..=7 => second_line,
            _ => 1 + second_line,
        };
        prop_assert_eq!(a.lines.iter().filter(|l| l.kind == tax_k).count(), lines);
    }
}

/// The build runs on several threads from 1,000 subscriptions on, keeping each customer on one
/// thread. Reference: each customer's invoices built on their own, sequentially (prepaid credits
/// only ever burn across one customer's subscriptions), put back in subscription order.
#[test]
fn parallel_build_equals_per_customer_sequential_builds() {
    let mut yaml = String::from(
        r#"
meters:
  - { key: calls, event_type: u, aggregation: COUNT }
tax_rates:
  - { jurisdiction: NY, name: NY 8.875%, rate: "0.08875" }
plans:
  - key: p
    versions:
      - { version: 1, currency: USD, recurring_fee: "9.99", prices: [ { meter: calls, model: per_unit, unit_price: "0.01" } ] }
  - key: addon
    versions:
      - { version: 1, currency: USD, recurring_fee: "9.99" }
customers:
"#,
    );
    let customers = 800;
    for c in 0..customers {
        yaml.push_str(&format!("  - {{ key: c{c:04}, name: C{c}, currency: USD, jurisdiction: NY }}\n"));
    }
    yaml.push_str("subscriptions:\n");
    // Two subscriptions for every customer divisible by 3: 800 + 267 = 1,067 subscriptions.
    for c in 0..customers {
        yaml.push_str(&format!(
            "  - {{ id: s{c:04}-a, customer: c{c:04}, plan: p, plan_version: 1, start: \"2026-01-01T00:00:00Z\", anchor_day: 1 }}\n"
        ));
        if c % 3 == 0 {
            yaml.push_str(&format!(
                "  - {{ id: s{c:04}-b, customer: c{c:04}, plan: addon, plan_version: 1, start: \"2026-10-11T00:00:00Z\", anchor_day: 1 }}\n"
            ));
        }
    }
    // A grant smaller than two fees for every customer divisible by 5: it runs out across them.
    yaml.push_str("credit_grants:\n");
    for c in (0..customers).step_by(5) {
        yaml.push_str(&format!("  - {{ id: g{c:04}, customer: c{c:04}, amount: \"15\", granted_at: \"2026-01-01T00:00:00Z\" }}\n"));
    }
    let catalog = CatalogFile::parse(&yaml, "yaml").unwrap().validate(&Catalog::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let label = "2026-10".parse().unwrap();
    let rated = rt.block_on(meterline_rater::rate_period(dir.path(), &catalog, label)).unwrap();
    assert_eq!(rated.len(), 1_067);
    let all = build_invoices(&rated, &catalog, label, meterline_invoicer::Settings::default(), &CreditUsage::none()).unwrap();

    let mut reference: Vec<Invoice> = Vec::new();
    let mut by_customer: std::collections::BTreeMap<&str, Vec<meterline_rater::RatedSubscription>> = Default::default();
    for r in &rated {
        by_customer.entry(r.customer.key.as_str()).or_default().push(r.clone());
    }
    for subs in by_customer.values() {
        reference.extend(build_invoices(subs, &catalog, label, meterline_invoicer::Settings::default(), &CreditUsage::none()).unwrap());
    }
    let order: std::collections::HashMap<&str, usize> = rated.iter().enumerate().map(|(i, r)| (r.subscription.id.as_str(), i)).collect();
    reference.sort_by_key(|inv| order[inv.row.subscription_id.as_str()]);
    assert_eq!(all.len(), reference.len());
    for (a, b) in all.iter().zip(&reference) {
        assert_eq!((&a.row, &a.lines), (&b.row, &b.lines), "{}", a.row.subscription_id);
    }
    // The grants did burn: c0000's two invoices use 15.00 of credit between them.
    let credit = |sub: &str| -> Decimal {
        all.iter()
            .find(|i| i.row.subscription_id == sub)
            .unwrap()
            .lines
            .iter()
            .filter(|l| l.kind == LineKind::Credit as i8)
            .map(|l| l.amount)
            .sum()
    };
    assert_eq!(credit("s0000-a") + credit("s0000-b"), Decimal::new(-1500, 2));
}
