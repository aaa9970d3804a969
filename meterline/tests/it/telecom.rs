//! Telecom end to end: call records published to JetStream, ingested into the ledger, rated
//! one by one at `meterline close`, stored in the ledger and in `rated_calls` and summed into invoice lines with
//! literal amounts worked out by hand; a second close writes nothing new. A call record the
//! table cannot rate is dead-lettered at ingest with its reason.

use clickhouse::Row;
use serde::Deserialize;

use meterline_ingest::segment::Ledger;
use meterline_invoicer::writer::{list_invoices, list_lines};

use crate::common::{TestEnv, event};

pub(crate) const CATALOG: &str = r#"
meters:
  - { key: calls, name: Calls, event_type: call.completed, aggregation: SUM, value: duration_secs }
tax_rates:
  - { jurisdiction: NONE, name: no tax, rate: "0" }
rate_tables:
  - key: uk
    currency: USD
    rates:
      - prefix: "44"
        description: United Kingdom
        increments: { first: 60, next: 60 }
        connect_fee: "0.05"
        bands:
          - { name: peak, days: [mon, tue, wed, thu, fri], from: "08:00", to: "18:00", price_per_minute: "0.05" }
          - { name: off-peak, days: [mon, tue, wed, thu, fri], from: "18:00", to: "08:00", price_per_minute: "0.02" }
          - { name: weekend, days: [sat, sun], from: "00:00", to: "00:00", price_per_minute: "0.01" }
      - prefix: "447"
        description: UK mobile
        increments: { first: 30, next: 6 }
        min_duration_secs: 10
        bands: [ { name: any time, from: "00:00", to: "00:00", price_per_minute: "0.12" } ]
plans:
  - key: voice
    versions:
      - { version: 1, currency: USD, prices: [ { meter: calls, model: telecom, rate_table: uk } ] }
customers:
  - { key: acme, name: Acme, currency: USD, jurisdiction: NONE }
subscriptions:
  - { id: sub-acme, customer: acme, plan: voice, plan_version: 1, start: "2026-01-01T00:00:00Z", anchor_day: 1 }
"#;

#[derive(Debug, Row, Deserialize, PartialEq, Eq)]
struct Call {
    event_id: String,
    matched_prefix: String,
    band: String,
    billed_secs: u64,
    connect_fee: String,
    amount: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_records_are_rated_stored_and_invoiced() {
    let env = TestEnv::new("telecom").await;
    let store = env.catalog(CATALOG).await;
    let catalog = store.load().await.unwrap();
    assert_eq!(catalog.rate_tables.len(), 1, "rate tables go through the catalog's KV buckets");
    let call = |id: &str, time: &str, destination: &str, secs: u32| {
        event(id, "call.completed", "acme", time, &format!(r#"{{"destination":"{destination}","duration_secs":{secs}}}"#))
    };
    // 2026-03-02 is a Monday.
    let calls = [
        call("c1", "2026-03-02T17:59:59Z", "+44 20 7946 0000", 61), // peak: 120 s × 0.05 / 60 = 0.10 + 0.05
        call("c2", "2026-03-02T18:00:00Z", "+44 20 7946 0000", 120), // off-peak: 120 s × 0.02 / 60 = 0.04 + 0.05
        call("c3", "2026-03-03T09:00:00Z", "+44 7700 900123", 37),  // 447, 30/6: 42 s × 0.12 / 60 = 0.084
        call("c4", "2026-03-03T09:05:00Z", "+44 7700 900123", 37),  // the same: 0.084
        call("c5", "2026-03-03T09:10:00Z", "+44 7700 900123", 0),   // unanswered: 0
    ];
    for c in &calls {
        env.publish(c).await;
    }
    env.publish(&calls[0]).await; // a producer retry: counted once
    // Unratable: France is not in the table (no catch-all). Ingest dead-letters it naming the
    // field, so the close below rates the rest instead of failing on it.
    let unratable = call("c9", "2026-03-02T12:00:00Z", "+33 1 4020 5000", 30);
    env.publish(&unratable).await;
    let _ledger = Ledger::open(&meterline_ingest::LedgerConfig { path: env.ledger_path() }).unwrap();
    let report = env.ingest_until_idle(&catalog).await;
    assert_eq!((report.valid, report.invalid), (5, 1));
    let dead = env.dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!((dead[0].field.as_str(), dead[0].value.as_str()), ("data.destination", "\"+33 1 4020 5000\""));
    assert_eq!(
        dead[0].reason,
        "field 'data.destination' = \"+33 1 4020 5000\": (digits 33140205000) matches no rate prefix in rate table uk"
    );
    assert_eq!(dead[0].payload, unratable);

    // Within the grace window (period end + 72 h): the invoice is a draft.
    let (ok, out, err) = env.meterline(&["close", "--period", "2026-03", "--as-of", "2026-04-02T00:00:00Z"], &[]);
    assert!(ok, "{err}");
    assert!(out.contains("rated calls: 5 written now, 0 subscriptions already stored"), "{out}");
    assert!(out.contains("rated calls in the ledger: 5 written now to rated-calls/period=2026-03/calls-"), "{out}");

    let ch = env.clickhouse().await;
    // toString of a Decimal(38, 9) prints all 9 decimals; `amount` is the exact text.
    let stored: Vec<Call> = ch
        .client()
        .query(
            "SELECT event_id, matched_prefix, band, billed_secs, toString(connect_fee) AS connect_fee, amount \
             FROM rated_calls WHERE period = '2026-03' ORDER BY event_id",
        )
        .fetch_all()
        .await
        .unwrap();
    let row = |id: &str, prefix: &str, band: &str, billed: u64, fee: &str, amount: &str| Call {
        event_id: id.into(),
        matched_prefix: prefix.into(),
        band: band.into(),
        billed_secs: billed,
        connect_fee: fee.into(),
        amount: amount.into(),
    };
    assert_eq!(
        stored,
        vec![
            row("c1", "44", "peak", 120, "0.050000000", "0.15"),
            row("c2", "44", "off-peak", 120, "0.050000000", "0.09"),
            row("c3", "447", "any time", 42, "0.000000000", "0.084"),
            row("c4", "447", "any time", 42, "0.000000000", "0.084"),
            row("c5", "447", "any time", 0, "0.000000000", "0"),
        ]
    );
    // The ledger holds the same rated calls, field for field (the durable record; ClickHouse is
    // the queryable copy).
    let in_ledger = |n: usize| {
        let calls = meterline_invoicer::ledger_calls::read_blocking(&env.ledger_path(), "2026-03").unwrap();
        assert_eq!(calls.len(), n);
        calls
    };
    let ledger_rows: Vec<Call> = in_ledger(5)
        .iter()
        .map(|c| row(&c.event_id, &c.matched_prefix, &c.band, c.billed_secs, &format!("{:.9}", c.connect_fee), &c.amount))
        .collect();
    assert_eq!(ledger_rows, stored);
    let c3 = in_ledger(5).into_iter().find(|c| c.event_id == "c3").unwrap();
    assert_eq!(
        (c3.subscription_id.as_str(), c3.destination.as_str(), c3.duration_secs, c3.price_per_minute.to_string(), c3.currency.as_str()),
        ("sub-acme", "+44 7700 900123", 37, "0.12".to_owned(), "USD")
    );
    assert!(c3.segment.starts_with("month=2026-03/seg-"), "{}", c3.segment);
    let files = || std::fs::read_dir(meterline_invoicer::ledger_calls::period_dir(&env.ledger_path(), "2026-03")).unwrap().count();
    assert_eq!(files(), 1);

    // Lines per (prefix, band, price), seconds summed before the division, rounded once:
    //   44 off-peak: 120 × 0.02 / 60 = 0.04 + 0.05 = 0.09; 44 peak: 120 × 0.05 / 60 = 0.10 + 0.05 = 0.15;
    //   447: (42 + 42 + 0) × 0.12 / 60 = 10.08 / 60 = 0.168 → 0.17. Total 0.41.
    let lines = list_lines(&ch, "2026-03").await.unwrap();
    let got: Vec<(String, String, u64, String)> =
        lines.iter().map(|l| (l.description.clone(), l.amount.to_string(), l.event_count, l.amount_unrounded.clone())).collect();
    let want = |d: &str, a: &str, n: u64, exact: &str| (d.to_owned(), a.to_owned(), n, exact.to_owned());
    assert_eq!(
        got,
        vec![
            want("Calls: United Kingdom (+44), off-peak at 0.02/min", "0.09", 1, "0.09"),
            want("Calls: United Kingdom (+44), peak at 0.05/min", "0.15", 1, "0.15"),
            want("Calls: UK mobile (+447), any time at 0.12/min", "0.17", 3, "0.168"),
        ]
    );
    assert_eq!(list_invoices(&ch, "2026-03").await.unwrap()[0].total.to_string(), "0.41");

    // A late call within the grace window: the draft is refreshed and only that call is added
    // to rated_calls (447: (42 + 42 + 42) × 0.12 / 60 = 0.252 → 0.25; total 0.49).
    env.publish(&call("c6", "2026-03-31T23:00:00Z", "+44 7700 900123", 37)).await;
    env.ingest_until_idle(&catalog).await;
    let (ok, out, err) = env.meterline(&["close", "--period", "2026-03", "--as-of", "2026-04-02T12:00:00Z"], &[]);
    assert!(ok, "{err}");
    assert!(out.contains("rated calls: 1 written now, 0 subscriptions already stored"), "{out}");
    assert!(out.contains("rated calls in the ledger: 1 written now"), "{out}");
    assert_eq!((in_ledger(6).iter().filter(|c| c.event_id == "c6").count(), files()), (1, 2));
    assert_eq!(list_invoices(&ch, "2026-03").await.unwrap()[0].total.to_string(), "0.49");

    // Closing again (after the deadline: finalized): nothing new in rated_calls, no duplicates
    // without FINAL.
    let (ok, out, err) = env.meterline(&["close", "--period", "2026-03"], &[]);
    assert!(ok, "{err}");
    assert!(out.contains("rated calls: 0 written now, 1 subscriptions already stored"), "{out}");
    assert!(!out.contains("rated calls in the ledger"), "{out}");
    assert_eq!((in_ledger(6).len(), files()), (6, 2));
    let count: u64 = ch.client().query("SELECT count() FROM rated_calls").fetch_one().await.unwrap();
    assert_eq!(count, 6);

    // The preview of one call uses the stored catalog and the same code.
    let (ok, out, err) = env.meterline(&["price", "--plan", "voice", "--event", &calls[2], "--format", "json"], &[]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["billed_secs"].as_u64(), v["amount_unrounded"].as_str(), v["amount"].as_str()), (Some(42), Some("0.084"), Some("0.08")));
    env.cleanup().await;
}
