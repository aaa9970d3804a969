//! The fixed end-to-end scenario: duplicates, an invalid event, ingest killed after a segment
//! became durable but before its messages were acked, then restarted; the invoices in ClickHouse
//! must equal amounts worked out by hand.

use rust_decimal::Decimal;

use meterline_invoicer::writer::{list_invoices, list_lines};

use crate::common::{TestEnv, event, segment_count};

pub const CATALOG: &str = r#"
meters:
  - { key: calls, event_type: api.request, aggregation: COUNT }
  - { key: tokens, event_type: llm.completion, aggregation: SUM, value: tokens }
tax_rates:
  - { jurisdiction: US-CA, name: CA sales tax, rate: "0.0725" }
  - { jurisdiction: DE, name: USt 19%, rate: "0.19" }
  - { jurisdiction: JP, name: 消費税 10%, rate: "0.10" }
plans:
  - key: basic
    versions:
      - version: 1
        currency: USD
        recurring_fee: "10"
        prices:
          - { meter: calls, model: per_unit, unit_price: "0.01" }
          - meter: tokens
            model: graduated
            tiers:
              - { up_to: "1000", unit_price: "0.001" }
              - { up_to: null, unit_price: "0.0005", flat_fee: "2" }
  - key: eu
    versions:
      - version: 1
        currency: EUR
        recurring_fee: "5"
        prices:
          - meter: calls
            model: volume
            tiers:
              - { up_to: "2", unit_price: "1.00" }
              - { up_to: null, unit_price: "0.50", flat_fee: "1" }
          - { meter: tokens, model: per_unit, unit_price: "0.0001" }
  - key: jp
    versions:
      - { version: 1, currency: JPY, recurring_fee: "1000", prices: [ { meter: calls, model: per_unit, unit_price: "3.5" } ] }
customers:
  - { key: alice, name: Alice Inc., currency: USD, jurisdiction: US-CA }
  - { key: bob, name: Bob GmbH, currency: EUR, jurisdiction: DE, locale: de-DE }
  - { key: chiyo, name: Chiyo KK, currency: JPY, jurisdiction: JP, locale: ja-JP }
  - { key: dan, name: Dan LLC, currency: USD, jurisdiction: US-CA }
subscriptions:
  - { id: sub-alice, customer: alice, plan: basic, plan_version: 1, start: "2026-01-01T00:00:00Z", anchor_day: 1 }
  - { id: sub-bob, customer: bob, plan: eu, plan_version: 1, start: "2026-01-01T00:00:00Z", anchor_day: 1 }
  - { id: sub-chiyo, customer: chiyo, plan: jp, plan_version: 1, start: "2026-01-01T00:00:00Z", anchor_day: 1 }
  - { id: sub-dan, customer: dan, plan: basic, plan_version: 1, start: "2026-10-16T00:00:00Z", anchor_day: 1 }
"#;

/// The messages of the scenario, in publish order.
pub fn messages() -> Vec<String> {
    let call = |id: &str, who: &str, t: &str| event(id, "api.request", who, t, r#"{"path":"/x"}"#);
    let tok = |id: &str, who: &str, t: &str, n: &str| event(id, "llm.completion", who, t, &format!(r#"{{"tokens":{n}}}"#));
    vec![
        call("a1", "alice", "2026-10-01T00:00:00Z"), // first instant of the period: billed
        call("a2", "alice", "2026-10-10T12:00:00Z"),
        call("a2", "alice", "2026-10-10T12:00:00Z"), // same message again (JetStream window)
        call("a3", "alice", "2026-10-31T23:59:59Z"),
        tok("a4", "alice", "2026-10-05T08:00:00Z", "800"),
        format!("[{}]", call("a2", "alice", "2026-10-10T12:00:00Z")), // retried in a batch: exact dedup
        tok("a5", "alice", "2026-10-06T08:00:00+02:00", "700"),
        tok("a6", "alice", "2026-10-07T08:00:00Z", r#""lots""#), // invalid → dead letter
        call("a7", "alice", "2026-11-01T00:00:00Z"),             // next period: not billed now
        call("a8", "alice", "2026-09-30T23:59:59Z"),             // previous period: not billed now
        format!(
            "[{},{},{}]",
            call("b1", "bob", "2026-10-02T00:00:00Z"),
            call("b2", "bob", "2026-10-03T00:00:00Z"),
            call("b3", "bob", "2026-10-04T00:00:00Z")
        ),
        tok("b4", "bob", "2026-10-05T00:00:00Z", "12345"),
        call("c1", "chiyo", "2026-10-02T00:00:00Z"),
        call("c2", "chiyo", "2026-10-02T00:00:01Z"),
        call("c3", "chiyo", "2026-10-02T00:00:02Z"),
        call("d0", "dan", "2026-10-10T00:00:00Z"), // before dan's subscription starts: not billed
        call("d1", "dan", "2026-10-20T00:00:00Z"),
        format!("[{},{}]", call("b1", "bob", "2026-10-02T00:00:00Z"), call("c1", "chiyo", "2026-10-02T00:00:00Z")), // retries
    ]
}

fn d(s: &str) -> Decimal {
    Decimal::from_str_exact(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_with_crash_and_restart_bills_exact_amounts() {
    let mut env = TestEnv::new("scenario").await;
    env.ingest.segment_max_events = 4; // several segments, so the crash leaves work undone
    env.catalog(CATALOG).await;
    for m in messages() {
        env.publish(&m).await;
    }

    // First run: abort right after the first segment is durable, before any ack.
    let (ok, _, stderr) = env.meterline(&["ingest", "--until-idle"], &[("METERLINE_FAILPOINT", "ingest.after_segment:1")]);
    assert!(!ok, "the failpoint must kill ingest; stderr: {stderr}");
    assert!(stderr.contains("failpoint ingest.after_segment reached"), "{stderr}");
    assert_eq!(segment_count(&env.ledger_path()), 1, "one segment was durable when ingest died");

    // Restart: unacked messages come back after ack_wait; the rebuilt index drops what the
    // first segment already holds.
    let (ok, stdout, stderr) = env.meterline(&["ingest", "--until-idle"], &[]);
    assert!(ok, "restart must succeed: {stdout}\n{stderr}");
    // 16 distinct valid events; the first run made 4 durable (a1, a2, a3, a4). The restart sees
    // those 4 again plus 3 retries in batch messages (a2, b1, c1): 7 duplicates, 12 new events.
    assert!(stdout.contains("12 events to the ledger, 7 duplicates dropped, 1 dead-lettered"), "{stdout}");

    let (ok, stdout, stderr) = env.meterline(&["close", "--period", "2026-10"], &[]);
    assert!(ok, "close: {stdout}\n{stderr}");

    let ch = env.clickhouse().await;
    let invoices = list_invoices(&ch, "2026-10").await.unwrap();
    let totals: Vec<(&str, &str, Decimal, Decimal, Decimal)> =
        invoices.iter().map(|i| (i.customer.as_str(), i.currency.as_str(), i.subtotal, i.tax, i.total)).collect();
    // Worked out by hand (half-even rounding per line to the currency's minor unit):
    //
    // alice, USD, CA 7.25%: fee 10.00
    //   calls: a1, a2, a3 (a2 sent three times; a7 is November, a8 September) = 3 × 0.01 = 0.03
    //   tokens: 800 + 700 = 1500 (a6 invalid); graduated: 1000 × 0.001 = 1.00,
    //           500 × 0.0005 + 2 (tier 2 flat fee) = 2.25 → 3.25
    //   subtotal 10.00 + 0.03 + 3.25 = 13.28; tax 13.28 × 0.0725 = 0.9628 → 0.96; total 14.24
    // bob, EUR, DE 19%: fee 5.00
    //   calls: b1, b2, b3 (b1 retried) = 3; volume: 3 > 2 → all 3 × 0.50 + 1 = 2.50
    //   tokens: 12345 × 0.0001 = 1.2345 → 1.23
    //   subtotal 8.73; tax 8.73 × 0.19 = 1.6587 → 1.66; total 10.39
    // chiyo, JPY (0 minor units), JP 10%: fee 1000
    //   calls: c1, c2, c3 (c1 retried) = 3 × 3.5 = 10.5 → 10 (half-even: ties to the even yen)
    //   subtotal 1010; tax 101.0 → 101; total 1111
    // dan, USD, CA: subscribed from 2026-10-16: 16 of 31 days
    //   fee 10 × 1382400 s / 2678400 s = 5.161290… → 5.16
    //   calls: d1 only (d0 is before the start) = 0.01; tokens 0 → 0.00
    //   subtotal 5.17; tax 5.17 × 0.0725 = 0.374825 → 0.37; total 5.54
    assert_eq!(
        totals,
        vec![
            ("alice", "USD", d("13.28"), d("0.96"), d("14.24")),
            ("bob", "EUR", d("8.73"), d("1.66"), d("10.39")),
            ("chiyo", "JPY", d("1010"), d("101"), d("1111")),
            ("dan", "USD", d("5.17"), d("0.37"), d("5.54")),
        ]
    );

    // Lines explain themselves: event counts and amounts per line.
    let lines = list_lines(&ch, "2026-10").await.unwrap();
    let alice = invoices.iter().find(|i| i.customer == "alice").unwrap();
    let alice_lines: Vec<(String, Decimal, u64, Decimal)> = lines
        .iter()
        .filter(|l| l.invoice_id == alice.invoice_id)
        .map(|l| (l.price_model.clone(), l.quantity, l.event_count, l.amount))
        .collect();
    assert_eq!(
        alice_lines,
        vec![
            ("recurring".to_string(), d("1"), 0, d("10.00")),
            ("per_unit".to_string(), d("3"), 3, d("0.03")),
            ("graduated".to_string(), d("1500"), 2, d("3.25")),
            ("tax".to_string(), d("13.28"), 0, d("0.96")),
        ]
    );
    let tokens = lines.iter().find(|l| l.invoice_id == alice.invoice_id && l.meter == "tokens").unwrap();
    assert!(!tokens.segments.is_empty() && tokens.segments.iter().all(|s| s.starts_with("month=2026-10/seg-")), "{:?}", tokens.segments);
    let breakdown: serde_json::Value = serde_json::from_str(&tokens.breakdown).unwrap();
    assert_eq!(breakdown["tiers"][1]["amount"], "2.25");
    assert_eq!(breakdown["tiers"][1]["flat_fee"], "2");
    let dan = invoices.iter().find(|i| i.customer == "dan").unwrap();
    let fee = lines.iter().find(|l| l.invoice_id == dan.invoice_id && l.line_no == 1).unwrap();
    assert!(fee.amount_unrounded.starts_with("5.16129032258"), "{}", fee.amount_unrounded);

    env.cleanup().await;
}
