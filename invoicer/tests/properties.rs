//! Property tests over the whole rating and invoicing path (ledger segments → DataFusion →
//! prices → invoices): the result does not depend on event order or on how events are split
//! into segments, and every invoice's totals are sums of its rounded lines.

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
            for seg in build_segments(part, seq + 1, seq + 999, at).unwrap() {
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
