//! The invoice lifecycle end to end through the `meterline` binary: drafts in the grace window,
//! refresh, finalization with gapless numbers, transitions and their refusals, billing events,
//! two closers at once, adjustments for late usage, credit notes.

use std::time::Duration;

use clickhouse::Row;
use futures::StreamExt;
use rust_decimal::Decimal;
use serde::Deserialize;

use meterline_invoicer::lifecycle::history;
use meterline_invoicer::numbering::{Counter, Numbering, Series};
use meterline_invoicer::writer::{list_invoices, list_lines};
use meterline_schemas::invoice::{CreditNoteLineRow, InvoiceStatus, LineKind};

use crate::common::{TestEnv, event};
use crate::scenario::{CATALOG, messages};

fn d(s: &str) -> Decimal {
    Decimal::from_str_exact(s).unwrap()
}

/// Publishes the scenario and ingests it with the binary.
async fn scenario(env: &TestEnv) {
    env.catalog(CATALOG).await;
    for m in messages() {
        env.publish(&m).await;
    }
    let (ok, out, err) = env.meterline(&["ingest", "--until-idle"], &[]);
    assert!(ok, "{out}{err}");
}

fn run(env: &TestEnv, args: &[&str]) -> String {
    let (ok, out, err) = env.meterline(args, &[]);
    assert!(ok, "meterline {args:?} failed: {out}{err}");
    out
}

fn fail(env: &TestEnv, args: &[&str]) -> String {
    let (ok, out, err) = env.meterline(args, &[]);
    assert!(!ok, "meterline {args:?} should fail: {out}{err}");
    err
}

/// Starts `meterline args` without waiting (for commands raced against each other).
fn spawn_meterline(env: &TestEnv, args: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_meterline"))
        .args(args)
        .current_dir(env.ledger.path())
        .envs(env.child_env())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Billing events received on a core subscription, as JSON, until `n` arrived.
async fn collect(sub: &mut async_nats::Subscriber, n: usize) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    while out.len() < n {
        let msg =
            tokio::time::timeout(Duration::from_secs(10), sub.next()).await.expect("billing event in time").expect("subscription open");
        out.push((msg.subject.to_string(), serde_json::from_slice(&msg.payload).unwrap()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drafts_refresh_finalize_and_transition_with_events() {
    let env = TestEnv::new("lifecycle").await;
    scenario(&env).await;
    let mut sub = env.client.subscribe(format!("{}.>", env.billing_prefix)).await.unwrap();
    env.client.flush().await.unwrap();
    let ch = env.clickhouse().await;

    // Inside the grace window (October ends 2026-11-01, deadline 2026-11-04): drafts, no numbers.
    let out = run(&env, &["close", "--period", "2026-10", "--as-of", "2026-11-02T00:00:00Z"]);
    assert!(out.contains("4 invoices (4 created, 0 refreshed, 0 finalized now, 0 unchanged, 0 conflicting, 4 still draft)"), "{out}");
    assert!(out.contains("drafts are finalized by the first close after the grace deadline 2026-11-04T00:00:00Z"), "{out}");
    let inv = list_invoices(&ch, "2026-10").await.unwrap();
    assert!(inv.iter().all(|i| i.status == InvoiceStatus::Draft as i8 && i.number.is_empty()), "{inv:?}");

    // --finalize before the deadline is refused, naming it; nothing is written.
    let err = fail(&env, &["close", "--period", "2026-10", "--finalize", "--as-of", "2026-11-02T00:00:00Z"]);
    assert!(
        err.contains(
            "period 2026-10 cannot be finalized before its grace deadline 2026-11-04T00:00:00Z \
             (period end + billing.grace_hours = 72); it is 2026-11-02T00:00:00Z now"
        ),
        "{err}"
    );

    // A late call for alice within the grace window refreshes her draft: calls 3 → 4 (0.04),
    // subtotal 13.29, tax 13.29 × 0.0725 = 0.963525 → 0.96, total 14.25.
    env.publish(&event("late-1", "api.request", "alice", "2026-10-15T00:00:00Z", "{}")).await;
    run(&env, &["ingest", "--until-idle"]);
    let out = run(&env, &["close", "--period", "2026-10", "--as-of", "2026-11-03T00:00:00Z"]);
    assert!(out.contains("(0 created, 1 refreshed, 0 finalized now, 3 unchanged, 0 conflicting, 4 still draft)"), "{out}");
    let alice = list_invoices(&ch, "2026-10").await.unwrap().into_iter().find(|i| i.customer == "alice").unwrap();
    assert_eq!((alice.total, alice.status, alice.version, alice.lines_version), (d("14.25"), 1, 2, 2));
    let alice_lines: Vec<Decimal> =
        list_lines(&ch, "2026-10").await.unwrap().iter().filter(|l| l.invoice_id == alice.invoice_id).map(|l| l.amount).collect();
    assert_eq!(alice_lines, vec![d("10.00"), d("0.04"), d("3.25"), d("0.96")]);

    // At the deadline: finalized, numbered in customer order.
    let out = run(&env, &["close", "--period", "2026-10", "--finalize", "--as-of", "2026-11-04T00:00:00Z"]);
    assert!(out.contains("(0 created, 0 refreshed, 4 finalized now, 4 unchanged, 0 conflicting, 0 still draft)"), "{out}");
    assert!(out.contains("numbers INV-2026-000001 to INV-2026-000004"), "{out}");
    let inv = list_invoices(&ch, "2026-10").await.unwrap();
    let got: Vec<(&str, &str, i8, u32)> = inv.iter().map(|i| (i.customer.as_str(), i.number.as_str(), i.status, i.status_at)).collect();
    let at = 1_793_750_400; // 2026-11-04T00:00:00Z
    assert_eq!(
        got,
        vec![
            ("alice", "INV-2026-000001", 2, at),
            ("bob", "INV-2026-000002", 2, at),
            ("chiyo", "INV-2026-000003", 2, at),
            ("dan", "INV-2026-000004", 2, at)
        ]
    );
    // Closing again changes nothing.
    let out = run(&env, &["close", "--period", "2026-10", "--as-of", "2026-11-05T00:00:00Z"]);
    assert!(out.contains("(0 created, 0 refreshed, 0 finalized now, 4 unchanged, 0 conflicting, 0 still draft)"), "{out}");

    // Transitions and refusals.
    let alice_id = alice.invoice_id.to_string();
    let out = run(&env, &["invoices", "pay", "--id", "INV-2026-000001", "--reason", "wire 42"]);
    assert_eq!(out.trim(), format!("invoice INV-2026-000001 ({alice_id}) is paid now"));
    let err = fail(&env, &["invoices", "pay", "--id", &alice_id]);
    assert!(err.contains(&format!("invoice INV-2026-000001 ({alice_id}) is paid: cannot pay it (paid → paid is not allowed)")), "{err}");
    let err = fail(&env, &["invoices", "void", "--id", "INV-2026-000001"]);
    assert!(err.contains("is paid: cannot void it (paid → void is not allowed)"), "{err}");

    let bob = inv[1].invoice_id.to_string();
    run(&env, &["invoices", "void", "--id", "INV-2026-000002", "--reason", "duplicate order"]);
    let err = fail(&env, &["invoices", "void", "--id", "INV-2026-000002"]);
    assert!(err.contains(&format!("invoice INV-2026-000002 ({bob}) is void: cannot void it (void → void is not allowed)")), "{err}");
    let err = fail(&env, &["invoices", "pay", "--id", "INV-2026-000002"]);
    assert!(err.contains(&format!("invoice INV-2026-000002 ({bob}) is void: cannot pay it (void → paid is not allowed)")), "{err}");
    let err = fail(&env, &["invoices", "mark-uncollectible", "--id", "INV-2026-000002"]);
    assert!(err.contains("is void: cannot mark it uncollectible (void → uncollectible is not allowed)"), "{err}");

    run(&env, &["invoices", "mark-uncollectible", "--id", "INV-2026-000003", "--reason", "insolvent"]);
    run(&env, &["invoices", "pay", "--id", "INV-2026-000003", "--reason", "paid after all"]);

    // A draft cannot be paid: November (alice's a7 call) is still in its grace window.
    run(&env, &["close", "--period", "2026-11", "--as-of", "2026-11-25T00:00:00Z"]);
    let nov = list_invoices(&ch, "2026-11").await.unwrap();
    let draft = nov[0].invoice_id.to_string();
    let err = fail(&env, &["invoices", "pay", "--id", &draft]);
    assert!(err.contains(&format!("invoice {draft} is draft: cannot pay it (draft → paid is not allowed)")), "{err}");
    let err = fail(&env, &["invoices", "pay", "--id", "INV-2026-999999"]);
    assert!(err.contains("no invoice with id or number \"INV-2026-999999\""), "{err}");

    // Every transition of alice's invoice, in order.
    let h: Vec<(i8, i8, String, String, String)> = history(&ch, alice.invoice_id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.from_status, e.to_status, e.number, e.actor, e.reason))
        .collect();
    let s = |x: &str| x.to_string();
    assert_eq!(
        h,
        vec![
            (0, 1, s(""), s("close"), s("created")),
            (1, 1, s(""), s("close"), s("refreshed")),
            (1, 2, s("INV-2026-000001"), s("close"), s("grace deadline passed")),
            (2, 3, s("INV-2026-000001"), s("cli"), s("wire 42")),
        ]
    );
    let out = run(&env, &["invoices", "history", "--id", "INV-2026-000001"]);
    assert!(
        out.contains("| 2026-11-04T00:00:00+00:00 | draft     | finalized | INV-2026-000001 | close | grace deadline passed |"),
        "{out}"
    );
    assert!(out.trim_end().ends_with(&format!("invoice INV-2026-000001 ({alice_id}) is paid")), "{out}");
    let out = run(&env, &["invoices", "list", "--period", "2026-10", "--format", "json"]);
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let statuses: Vec<(&str, &str)> =
        listed.as_array().unwrap().iter().map(|i| (i["number"].as_str().unwrap(), i["status"].as_str().unwrap())).collect();
    assert_eq!(
        statuses,
        vec![("INV-2026-000001", "paid"), ("INV-2026-000002", "void"), ("INV-2026-000003", "paid"), ("INV-2026-000004", "finalized")]
    );

    // Billing events: 4 finalized, then paid, voided, uncollectible, paid.
    let evs = collect(&mut sub, 8).await;
    let p = &env.billing_prefix;
    let subjects: Vec<String> = evs.iter().map(|(s, _)| s.clone()).collect();
    let mut expected: Vec<String> = ["invoice.finalized"; 4].iter().map(|k| format!("{p}.{k}")).collect();
    expected.extend(["invoice.paid", "invoice.voided", "invoice.uncollectible", "invoice.paid"].iter().map(|k| format!("{p}.{k}")));
    assert_eq!(subjects, expected);
    let first = &evs[0].1;
    let event_id = first["event_id"].as_str().unwrap().to_string();
    assert_eq!(
        first,
        &serde_json::json!({
            "schema": "meterline.billing.v1",
            "event_id": event_id,
            "type": "invoice.finalized",
            "occurred_at": "2026-11-04T00:00:00Z",
            "invoice_id": alice_id,
            "invoice_number": "INV-2026-000001",
            "customer": "alice",
            "subscription_id": "sub-alice",
            "period": "2026-10",
            "currency": "USD",
            "total": "14.25",
            // Finalized 2026-11-04 + the default 30 days of payment terms.
            "due_at": "2026-12-04T00:00:00Z",
            "status": "finalized",
            "previous_status": "draft",
            "actor": "close",
            "reason": "grace deadline passed",
        })
    );
    assert_eq!(
        (evs[4].1["status"].as_str(), evs[4].1["previous_status"].as_str(), evs[4].1["reason"].as_str()),
        (Some("paid"), Some("finalized"), Some("wire 42"))
    );
    assert_eq!(evs[5].1["invoice_number"], "INV-2026-000002");
    // The stream holds each event once (Nats-Msg-Id = event id).
    let mut stream = env.js.get_stream(&env.billing_stream).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 8);
    env.cleanup().await;
}

#[derive(Row, Deserialize)]
struct Numbers {
    current: u64,
    distinct_numbers: u64,
    numbers: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_closes_number_gaplessly() {
    let env = TestEnv::new("concurrent").await;
    let n = 25;
    let mut yaml = String::from(
        "tax_rates:\n  - { jurisdiction: NONE, name: no tax, rate: \"0\" }\nplans:\n  - key: basic\n    versions:\n      - { version: 1, currency: USD, recurring_fee: \"10\" }\ncustomers:\n",
    );
    for i in 0..n {
        yaml.push_str(&format!("  - {{ key: c{i:02}, name: C{i}, currency: USD, jurisdiction: NONE }}\n"));
    }
    yaml.push_str("subscriptions:\n");
    for i in 0..n {
        yaml.push_str(&format!(
            "  - {{ id: sub-{i:02}, customer: c{i:02}, plan: basic, plan_version: 1, start: \"2026-01-01T00:00:00Z\", anchor_day: 1 }}\n"
        ));
    }
    env.catalog(&yaml).await;
    std::fs::create_dir_all(env.ledger_path()).unwrap();

    // Two closers for the same period, started at once, both past the deadline.
    let spawn = || spawn_meterline(&env, &["close", "--period", "2026-10", "--as-of", "2026-11-25T00:00:00Z"]);
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        // Which closer did what varies from run to run (both may create and finalize).
        eprintln!("closer: {}", String::from_utf8_lossy(&out.stdout).trim());
    }

    let ch = env.clickhouse().await;
    let got: Numbers = ch
        .client()
        .query(
            "SELECT (SELECT count() FROM invoices_current) AS current, \
             (SELECT uniqExact(number) FROM invoices WHERE number != '') AS distinct_numbers, \
             (SELECT groupArray(number) FROM (SELECT number FROM invoices_current ORDER BY number)) AS numbers",
        )
        .fetch_one()
        .await
        .unwrap();
    let expected: Vec<String> = (1..=n).map(|i| format!("INV-2026-{i:06}")).collect();
    assert_eq!((got.current, got.distinct_numbers, got.numbers), (25, 25, expected));
    // Numbers follow customer order, and every invoice is finalized.
    let inv = list_invoices(&ch, "2026-10").await.unwrap();
    assert!(inv.iter().enumerate().all(|(i, r)| r.number == format!("INV-2026-{:06}", i + 1) && r.status == 2), "{inv:?}");
    // The counter: next 26, no reservation left behind.
    let numbering = Numbering::open(&env.js, &format!("{}numbering", env.bucket_prefix)).await.unwrap();
    let snap = numbering.read(&Series::new("meterline", "inv", "INV-{year}-{seq:06}").unwrap()).await.unwrap();
    assert_eq!(snap.counter, Counter { next: 26, pending: Default::default() });
    // A third close finds everything done.
    let out = run(&env, &["close", "--period", "2026-10", "--as-of", "2026-11-26T00:00:00Z"]);
    assert!(out.contains("(0 created, 0 refreshed, 0 finalized now, 25 unchanged, 0 conflicting, 0 still draft)"), "{out}");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_usage_is_adjusted_once_on_the_next_invoice() {
    let env = TestEnv::new("adjust").await;
    scenario(&env).await;
    let ch = env.clickhouse().await;
    run(&env, &["close", "--period", "2026-10", "--as-of", "2026-11-25T00:00:00Z"]);
    let oct = list_invoices(&ch, "2026-10").await.unwrap();

    // After October's deadline: 5000 more tokens for bob, dated 2026-10-20.
    env.publish(&event("late-2", "llm.completion", "bob", "2026-10-20T00:00:00Z", r#"{"tokens":5000}"#)).await;
    run(&env, &["ingest", "--until-idle"]);
    let out = run(&env, &["close", "--period", "2026-11", "--as-of", "2026-11-25T00:00:00Z"]);
    assert!(out.contains("4 created"), "{out}");
    // October stays as finalized.
    assert_eq!(list_invoices(&ch, "2026-10").await.unwrap(), oct);

    // bob's November: fee 5.00, no usage (0.00 calls, 0.00 tokens), adjustment for October's
    // tokens 12345 → 17345: 1.73 − 1.23 = 0.50; subtotal 5.50; tax 5.50 × 0.19 = 1.045 → 1.04
    // (half-even); total 6.54.
    let nov = list_invoices(&ch, "2026-11").await.unwrap();
    let bob = nov.iter().find(|i| i.customer == "bob").unwrap();
    assert_eq!((bob.subtotal, bob.tax, bob.total), (d("5.50"), d("1.04"), d("6.54")));
    let lines = list_lines(&ch, "2026-11").await.unwrap();
    let adj: Vec<_> = lines.iter().filter(|l| l.kind == LineKind::Adjustment as i8).collect();
    assert_eq!(adj.len(), 1, "{adj:?}");
    assert_eq!(
        (adj[0].invoice_id, adj[0].description.as_str(), adj[0].meter.as_str(), adj[0].quantity, adj[0].amount),
        (bob.invoice_id, "Adjustment 2026-10 (INV-2026-000002): tokens", "tokens", d("5000"), d("0.50"))
    );
    let b: serde_json::Value = serde_json::from_str(&adj[0].breakdown).unwrap();
    assert_eq!(
        (b["adjusts_period"].as_str(), b["billed_amount"].as_str(), b["rerated_amount"].as_str()),
        (Some("2026-10"), Some("1.23"), Some("1.73"))
    );

    // Closing November again recomputes the same adjustment: unchanged.
    let out = run(&env, &["close", "--period", "2026-11", "--as-of", "2026-11-26T00:00:00Z"]);
    assert!(out.contains("4 unchanged"), "{out}");
    // Finalize November, close December: the adjustment is not billed again.
    run(&env, &["close", "--period", "2026-11", "--as-of", "2026-12-05T00:00:00Z"]);
    run(&env, &["close", "--period", "2026-12", "--as-of", "2026-12-05T00:00:00Z"]);
    let dec = list_lines(&ch, "2026-12").await.unwrap();
    assert!(!dec.is_empty());
    assert_eq!(dec.iter().filter(|l| l.kind == LineKind::Adjustment as i8).count(), 0);
    env.cleanup().await;
}

const ANNUAL: &str = r#"
meters:
  - { key: calls, event_type: api.request, aggregation: COUNT }
tax_rates:
  - { jurisdiction: NONE, name: no tax, rate: "0" }
plans:
  - key: yearly
    versions:
      - { version: 1, currency: USD, recurring_fee: "1200", prices: [ { meter: calls, model: per_unit, unit_price: "2" } ] }
customers:
  - { key: yuki, name: Yuki, currency: USD, jurisdiction: NONE }
subscriptions:
  - { id: sub-yuki, customer: yuki, plan: yearly, plan_version: 1, start: "2026-01-01T00:00:00Z", cycle: annual, alignment: calendar }
"#;

/// An annual subscription's next invoice comes a year after the one its late usage belongs to:
/// the adjustment look-back counts the subscription's cycles (3 years by default), not months.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_usage_of_an_annual_cycle_is_adjusted_on_the_next_years_invoice() {
    let env = TestEnv::new("adjust_annual").await;
    env.catalog(ANNUAL).await;
    env.publish(&event("y-1", "api.request", "yuki", "2026-05-01T00:00:00Z", "{}")).await;
    run(&env, &["ingest", "--until-idle"]);
    let ch = env.clickhouse().await;
    // 2026 = [1 Jan 2026, 1 Jan 2027), label 2026-12: fee 1200.00 + 1 call x 2.00 = 1202.00,
    // finalized (closed after the grace deadline).
    run(&env, &["close", "--period", "2026-12", "--as-of", "2027-01-10T00:00:00Z"]);
    let y2026 = list_invoices(&ch, "2026-12").await.unwrap();
    assert_eq!(y2026.len(), 1);
    assert_eq!((y2026[0].total, y2026[0].status), (d("1202.00"), InvoiceStatus::Finalized as i8));

    // After the deadline: 3 more calls dated 1 June 2026.
    for id in ["late-1", "late-2", "late-3"] {
        env.publish(&event(id, "api.request", "yuki", "2026-06-01T00:00:00Z", "{}")).await;
    }
    run(&env, &["ingest", "--until-idle"]);
    // A close whose label ends none of its years bills nothing for it.
    run(&env, &["close", "--period", "2027-06", "--as-of", "2027-07-10T00:00:00Z"]);
    assert!(list_invoices(&ch, "2027-06").await.unwrap().is_empty());
    // 2027: fee 1200.00, no 2027 usage, adjustment for 2026's calls 1 -> 4: 8.00 - 2.00 = 6.00;
    // total 1206.00. 2026's invoice is unchanged.
    run(&env, &["close", "--period", "2027-12", "--as-of", "2028-01-10T00:00:00Z"]);
    assert_eq!(list_invoices(&ch, "2026-12").await.unwrap(), y2026);
    let y2027 = list_invoices(&ch, "2027-12").await.unwrap();
    assert_eq!(y2027.len(), 1);
    assert_eq!((y2027[0].subtotal, y2027[0].total), (d("1206.00"), d("1206.00")));
    let lines = list_lines(&ch, "2027-12").await.unwrap();
    let adj: Vec<_> = lines.iter().filter(|l| l.kind == LineKind::Adjustment as i8).collect();
    assert_eq!(adj.len(), 1, "{adj:?}");
    assert_eq!((adj[0].meter.as_str(), adj[0].quantity, adj[0].amount), ("calls", d("3"), d("6.00")));
    let b: serde_json::Value = serde_json::from_str(&adj[0].breakdown).unwrap();
    // Billed amounts are read back from ClickHouse, which drops trailing zeros: compare values.
    let amount = |k: &str| d(b[k].as_str().unwrap());
    assert_eq!((b["adjusts_period"].as_str(), amount("billed_amount"), amount("rerated_amount")), (Some("2026-12"), d("2"), d("8")));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_usage_on_a_tax_inclusive_plan_is_adjusted_at_its_gross_price() {
    let env = TestEnv::new("adjincl").await;
    // The scenario with bob's EUR plan priced tax-inclusive (German VAT 19%).
    let catalog = CATALOG.replacen("recurring_fee: \"5\"", "recurring_fee: \"5\"\n        tax_inclusive: true", 1);
    assert_ne!(catalog, CATALOG);
    env.catalog(&catalog).await;
    for m in messages() {
        env.publish(&m).await;
    }
    run(&env, &["ingest", "--until-idle"]);
    let ch = env.clickhouse().await;
    run(&env, &["close", "--period", "2026-10", "--as-of", "2026-11-25T00:00:00Z"]);
    env.publish(&event("late-2", "llm.completion", "bob", "2026-10-20T00:00:00Z", r#"{"tokens":5000}"#)).await;
    run(&env, &["ingest", "--until-idle"]);
    run(&env, &["close", "--period", "2026-11", "--as-of", "2026-11-25T00:00:00Z"]);

    // October's tokens line, gross: 12345 × 0.0001 = 1.2345 → 1.23; re-rated with the late 5000:
    // 1.7345 → 1.73. The customer owes the inclusive price of the late usage, 0.50 gross.
    // November: fee 5.00 + adjustment 0.50 = 5.50 gross; per-invoice extraction at 19%:
    // 5.00 / 1.19 = 4.2017 → 4.20 net; 5.50 / 1.19 = 4.6218 → 4.62, so the adjustment nets 0.42;
    // tax 5.50 − 4.62 = 0.88; total 5.50. (Comparing the nets 1.45 − 1.03 = 0.42 and extracting
    // tax from that again would bill 5.42.)
    let nov = list_invoices(&ch, "2026-11").await.unwrap();
    let bob = nov.iter().find(|i| i.customer == "bob").unwrap();
    assert_eq!((bob.subtotal, bob.tax, bob.total), (d("4.62"), d("0.88"), d("5.50")));
    let lines = list_lines(&ch, "2026-11").await.unwrap();
    let adj: Vec<_> = lines.iter().filter(|l| l.kind == LineKind::Adjustment as i8).collect();
    assert_eq!(adj.len(), 1, "{adj:?}");
    assert_eq!((adj[0].quantity, adj[0].amount), (d("5000"), d("0.42")));
    let b: serde_json::Value = serde_json::from_str(&adj[0].breakdown).unwrap();
    assert_eq!(
        (b["billed_amount"].as_str(), b["rerated_amount"].as_str(), b["tax_inclusive"]["gross"].as_str()),
        (Some("1.23"), Some("1.73"), Some("0.50"))
    );
    // Idempotent: closing again recomputes the same gross difference.
    let out = run(&env, &["close", "--period", "2026-11", "--as-of", "2026-11-26T00:00:00Z"]);
    assert!(out.contains("4 unchanged"), "{out}");
    env.cleanup().await;
}

/// bob's plan is tax-exclusive, eva's has the same prices tax-inclusive.
const VOLUME: &str = r#"
meters:
  - { key: calls, event_type: api.request, aggregation: COUNT }
tax_rates:
  - { jurisdiction: DE, name: USt 19%, rate: "0.19" }
plans:
  - key: vol
    versions:
      - version: 1
        currency: EUR
        prices:
          - meter: calls
            model: volume
            tiers:
              - { up_to: "10", unit_price: "1.00" }
              - { up_to: null, unit_price: "0.10" }
  - key: volincl
    versions:
      - version: 1
        currency: EUR
        tax_inclusive: true
        prices:
          - meter: calls
            model: volume
            tiers:
              - { up_to: "10", unit_price: "1.00" }
              - { up_to: null, unit_price: "0.10" }
customers:
  - { key: bob, name: Bob GmbH, currency: EUR, jurisdiction: DE }
  - { key: eva, name: Eva GmbH, currency: EUR, jurisdiction: DE }
subscriptions:
  - { id: sub-bob, customer: bob, plan: vol, plan_version: 1, start: "2026-01-01T00:00:00Z", anchor_day: 1 }
  - { id: sub-eva, customer: eva, plan: volincl, plan_version: 1, start: "2026-01-01T00:00:00Z", anchor_day: 1 }
"#;

/// Late usage that lowers a finalized period's amount (a volume tier reached late) is credited by
/// the close with a credit note on that period's invoice, taxed as it was, once; a crash between
/// reserving its number and writing it leaves no gap; later late usage is compared with what was
/// billed minus what was credited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_usage_netting_negative_is_credited_once_on_its_invoice() {
    let env = TestEnv::new("latecredit").await;
    env.catalog(VOLUME).await;
    let call = |id: String, who: &str, t: &str| event(&id, "api.request", who, t, "{}");
    for who in ["bob", "eva"] {
        for i in 0..10 {
            env.publish(&call(format!("{who}-{i}"), who, "2026-10-05T00:00:00Z")).await;
        }
    }
    run(&env, &["ingest", "--until-idle"]);
    let ch = env.clickhouse().await;
    // October, finalized: 10 calls at the first volume tier, 10 × 1.00 = 10.00.
    // bob (exclusive): 10.00 + 19% 1.90 = 11.90. eva (inclusive): 10.00 gross.
    run(&env, &["close", "--period", "2026-10", "--as-of", "2026-11-25T00:00:00Z"]);
    let oct = list_invoices(&ch, "2026-10").await.unwrap();
    let inv = |c: &str| oct.iter().find(|i| i.customer == c).unwrap().clone();
    let (bob, eva) = (inv("bob"), inv("eva"));
    assert_eq!(
        (bob.number.as_str(), bob.total, eva.number.as_str(), eva.total),
        ("INV-2026-000001", d("11.90"), "INV-2026-000002", d("10.00"))
    );
    let oct_lines = list_lines(&ch, "2026-10").await.unwrap();
    let usage_line = |i: uuid::Uuid| oct_lines.iter().find(|l| l.invoice_id == i && l.kind == LineKind::Usage as i8).unwrap().line_no;

    let mut sub = env.client.subscribe(format!("{}.credit_note.>", env.billing_prefix)).await.unwrap();
    env.client.flush().await.unwrap();
    // After October's deadline, one more call each dated in October: 11 calls reach the second
    // tier, 11 × 0.10 = 1.10, so October's usage nets 1.10 − 10.00 = −8.90.
    for who in ["bob", "eva"] {
        env.publish(&call(format!("{who}-late"), who, "2026-10-20T00:00:00Z")).await;
    }
    run(&env, &["ingest", "--until-idle"]);
    // The close dies after reserving eva's credit note number, bob's being written.
    let (ok, _, err) = env.meterline(
        &["close", "--period", "2026-11", "--as-of", "2026-11-25T00:00:00Z"],
        &[("METERLINE_FAILPOINT", "late_credit.before_write:2")],
    );
    assert!(!ok && err.contains("failpoint late_credit.before_write reached"), "{err}");
    let out = run(&env, &["close", "--period", "2026-11", "--as-of", "2026-11-25T00:00:00Z"]);
    // bob: credit 8.90 + tax 8.90 × 0.19 = 1.691 → 1.69: 10.59; 11.90 − 10.59 = 1.31 left.
    // eva: 8.90 gross, 8.90 / 1.19 = 7.4790 → 7.48 net, tax 8.90 − 7.48 = 1.42; 10.00 − 8.90 = 1.10 left.
    assert!(!out.contains("sub-bob: credit note"), "bob's credit note was issued by the first run: {out}");
    assert!(
        out.contains("late usage of 2026-10 nets -8.90 EUR for sub-eva: credit note CN-2026-000002 on invoice INV-2026-000002, 8.90 EUR (tax included)"),
        "{out}"
    );
    // October's invoices are unchanged; November's carry no adjustment.
    assert_eq!(list_invoices(&ch, "2026-10").await.unwrap(), oct);
    assert!(list_lines(&ch, "2026-11").await.unwrap().iter().all(|l| l.kind != LineKind::Adjustment as i8));

    let notes = |id: uuid::Uuid| {
        let ch = ch.clone();
        async move { meterline_invoicer::credit_notes::of_invoice(&ch, id).await.unwrap() }
    };
    let lines_of = |id: uuid::Uuid| {
        let ch = ch.clone();
        async move {
            ch.client()
                .query("SELECT ?fields FROM credit_note_lines FINAL WHERE credit_note_id = ? ORDER BY line_no")
                .bind(id.to_string())
                .fetch_all::<CreditNoteLineRow>()
                .await
                .unwrap()
        }
    };
    let (bob_notes, eva_notes) = (notes(bob.invoice_id).await, notes(eva.invoice_id).await);
    assert_eq!(bob_notes.len(), 1);
    assert_eq!(eva_notes.len(), 1);
    let (bn, en) = (&bob_notes[0], &eva_notes[0]);
    assert_eq!((bn.number.as_str(), bn.amount), ("CN-2026-000001", d("10.59")));
    assert_eq!((en.number.as_str(), en.amount), ("CN-2026-000002", d("8.90")));
    assert_eq!(bn.reason, "late usage of 2026-10 re-rated by the close of 2026-11");
    let bl = lines_of(bn.credit_note_id).await;
    let el = lines_of(en.credit_note_id).await;
    let brief = |ls: &[CreditNoteLineRow]| ls.iter().map(|l| (l.invoice_line_no, l.description.clone(), l.amount)).collect::<Vec<_>>();
    assert_eq!(
        brief(&bl),
        vec![(usage_line(bob.invoice_id), "Late usage 2026-10: calls".to_owned(), d("8.90")), (0, "USt 19%".to_owned(), d("1.69"))]
    );
    assert_eq!(
        brief(&el),
        vec![(usage_line(eva.invoice_id), "Late usage 2026-10: calls".to_owned(), d("7.48")), (0, "USt 19%".to_owned(), d("1.42"))]
    );
    let b: serde_json::Value = serde_json::from_str(&el[0].breakdown).unwrap();
    assert_eq!(
        (b["adjusts_period"].as_str(), b["billed_amount"].as_str(), b["rerated_amount"].as_str(), b["tax_inclusive"]["gross"].as_str()),
        (Some("2026-10"), Some("10.00"), Some("1.10"), Some("8.90"))
    );

    // Events: bob's from the first run, eva's from the second, published by the close.
    let evs = collect(&mut sub, 2).await;
    let brief_ev = |e: &serde_json::Value| {
        (
            e["actor"].as_str().map(str::to_owned),
            e["credit_note"]["number"].as_str().map(str::to_owned),
            e["credit_note"]["amount"].as_str().map(str::to_owned),
            e["credit_note"]["remaining"].as_str().map(str::to_owned),
        )
    };
    let s = |x: &str| Some(x.to_owned());
    assert_eq!(brief_ev(&evs[0].1), (s("close"), s("CN-2026-000001"), s("10.59"), s("1.31")));
    assert_eq!(brief_ev(&evs[1].1), (s("close"), s("CN-2026-000002"), s("8.90"), s("1.10")));

    // Once: closing November again, finalizing it, closing December issue nothing more.
    let out = run(&env, &["close", "--period", "2026-11", "--as-of", "2026-11-26T00:00:00Z"]);
    assert!(!out.contains("credit note"), "{out}");
    run(&env, &["close", "--period", "2026-11", "--as-of", "2026-12-05T00:00:00Z"]);
    run(&env, &["close", "--period", "2026-12", "--as-of", "2026-12-05T00:00:00Z"]);
    assert_eq!((notes(bob.invoice_id).await.len(), notes(eva.invoice_id).await.len()), (1, 1));
    assert!(list_lines(&ch, "2026-12").await.unwrap().iter().all(|l| l.kind != LineKind::Adjustment as i8));

    // Five more late calls for bob: 16 × 0.10 = 1.60 against 10.00 billed − 8.90 credited = 1.10:
    // a 0.50 adjustment on December's (draft) invoice, not a second credit.
    for i in 0..5 {
        env.publish(&call(format!("bob-late-{i}"), "bob", "2026-10-21T00:00:00Z")).await;
    }
    run(&env, &["ingest", "--until-idle"]);
    run(&env, &["close", "--period", "2026-12", "--as-of", "2026-12-06T00:00:00Z"]);
    let dec = list_lines(&ch, "2026-12").await.unwrap();
    let adj: Vec<_> = dec.iter().filter(|l| l.kind == LineKind::Adjustment as i8).collect();
    assert_eq!(adj.len(), 1, "{adj:?}");
    assert_eq!(
        (adj[0].description.as_str(), adj[0].quantity, adj[0].amount),
        ("Adjustment 2026-10 (INV-2026-000001): calls", d("5"), d("0.50"))
    );
    assert_eq!(notes(bob.invoice_id).await.len(), 1);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_lost_in_a_crash_are_replayed_from_clickhouse_once() {
    let env = TestEnv::new("replay").await;
    scenario(&env).await;
    run(&env, &["close", "--period", "2026-10", "--finalize", "--as-of", "2026-11-05T00:00:00Z"]);
    let started = chrono::Utc::now() - chrono::Duration::minutes(5);
    let mut stream = env.js.get_stream(&env.billing_stream).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 4, "4 invoice.finalized");

    // `pay` dies after its ClickHouse writes, before publishing: paid in ClickHouse, no event.
    let (ok, _, err) = env.meterline(
        &["invoices", "pay", "--id", "INV-2026-000001", "--reason", "wire 42"],
        &[("METERLINE_FAILPOINT", "transition.after_write:1")],
    );
    assert!(!ok && err.contains("failpoint transition.after_write reached"), "{err}");
    let ch = env.clickhouse().await;
    let alice = list_invoices(&ch, "2026-10").await.unwrap().into_iter().find(|i| i.number == "INV-2026-000001").unwrap();
    assert_eq!(alice.status, InvoiceStatus::Paid as i8);
    assert_eq!(stream.info().await.unwrap().state.messages, 4);
    // A credit note goes through normally.
    run(&env, &["invoices", "credit-note", "--id", "INV-2026-000004", "--amount", "1.00", "--reason", "goodwill"]);
    assert_eq!(stream.info().await.unwrap().state.messages, 5);

    // Replay: the paid event is rebuilt from ClickHouse; the credit note's copy is dropped by
    // JetStream (same id), so each transition is in the stream exactly once.
    let mut paid = env.client.subscribe(format!("{}.invoice.paid", env.billing_prefix)).await.unwrap();
    env.client.flush().await.unwrap();
    let since = started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let out = run(&env, &["invoices", "replay-events", "--since", &since]);
    assert!(out.contains("published 1 invoice events and 1 credit note events"), "{out}");
    let got = collect(&mut paid, 1).await;
    let e = &got[0].1;
    assert_eq!(
        (e["invoice_number"].as_str(), e["status"].as_str(), e["previous_status"].as_str(), e["reason"].as_str(), e["total"].as_str()),
        (Some("INV-2026-000001"), Some("paid"), Some("finalized"), Some("wire 42"), Some("14.24"))
    );
    assert_eq!(stream.info().await.unwrap().state.messages, 6);
    run(&env, &["invoices", "replay-events", "--since", &since]);
    assert_eq!(stream.info().await.unwrap().state.messages, 6, "a second replay adds nothing");
    let err = fail(&env, &["invoices", "replay-events", "--since", "yesterday"]);
    assert!(err.contains("--since \"yesterday\": expected an RFC 3339 time"), "{err}");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_notes_partial_then_over_credit_refused() {
    let env = TestEnv::new("creditnote").await;
    scenario(&env).await;
    let mut sub = env.client.subscribe(format!("{}.credit_note.>", env.billing_prefix)).await.unwrap();
    env.client.flush().await.unwrap();
    // Drafts cannot be credited.
    run(&env, &["close", "--period", "2026-10", "--as-of", "2026-11-02T00:00:00Z"]);
    let ch = env.clickhouse().await;
    let draft = list_invoices(&ch, "2026-10").await.unwrap()[0].invoice_id.to_string();
    let err = fail(&env, &["invoices", "credit-note", "--id", &draft, "--amount", "1", "--reason", "x"]);
    assert!(err.contains(&format!("invoice {draft} is draft: only finalized, paid or uncollectible invoices can be credited")), "{err}");

    run(&env, &["close", "--period", "2026-10", "--as-of", "2026-11-25T00:00:00Z"]);
    // alice: total 14.24 USD (scenario.rs). 4.24 now, then line 1 (the 10.00 fee): nothing left.
    let out = run(&env, &["invoices", "credit-note", "--id", "INV-2026-000001", "--amount", "4.24", "--reason", "goodwill"]);
    assert_eq!(out.trim(), "credit note CN-2026-000001 on invoice INV-2026-000001: 4.24 USD, 10.00 USD left to credit");
    let err = fail(&env, &["invoices", "credit-note", "--id", "INV-2026-000001", "--amount", "10.01", "--reason", "too much"]);
    assert!(
        err.contains(&format!(
            "credit note of 10.01 USD exceeds what is left to credit on invoice INV-2026-000001 ({draft}): \
             total 14.24 USD, already credited 4.24 USD, remaining 10.00 USD"
        )),
        "{err}"
    );
    let err = fail(&env, &["invoices", "credit-note", "--id", "INV-2026-000001", "--amount", "0.001", "--reason", "x"]);
    assert!(err.contains("--amount 0.001: must be positive with at most 2 decimals for USD"), "{err}");
    let out = run(&env, &["invoices", "credit-note", "--id", "INV-2026-000001", "--line", "1", "--reason", "fee waived"]);
    assert_eq!(out.trim(), "credit note CN-2026-000002 on invoice INV-2026-000001: 10.00 USD, 0.00 USD left to credit");
    let err = fail(&env, &["invoices", "credit-note", "--id", "INV-2026-000001", "--full", "--reason", "again"]);
    assert!(err.contains("has nothing left to credit"), "{err}");
    // chiyo (JPY 1111): a full credit.
    let out = run(&env, &["invoices", "credit-note", "--id", "INV-2026-000003", "--full", "--reason", "cancelled"]);
    assert_eq!(out.trim(), "credit note CN-2026-000003 on invoice INV-2026-000003: 1111 JPY, 0 JPY left to credit");

    let evs = collect(&mut sub, 3).await;
    let e = &evs[0].1;
    assert_eq!(evs[0].0, format!("{}.credit_note.issued", env.billing_prefix));
    assert_eq!(
        (e["type"].as_str(), e["invoice_number"].as_str(), e["total"].as_str(), e["reason"].as_str()),
        (Some("credit_note.issued"), Some("INV-2026-000001"), Some("14.24"), Some("goodwill"))
    );
    let cn = &e["credit_note"];
    assert_eq!(
        (cn["number"].as_str(), cn["amount"].as_str(), cn["remaining"].as_str()),
        (Some("CN-2026-000001"), Some("4.24"), Some("10.00"))
    );
    assert_eq!(cn["credit_note_id"], e["event_id"]);
    env.cleanup().await;
}

/// Four operators credit the same invoice at the same moment (different amounts). Each either
/// gets its credit note or a clear "busy" refusal with nothing issued; no credit overwrites
/// another (they would share the invoice's n-th id), numbers stay gapless, and the refused ones
/// succeed when retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_credit_notes_on_one_invoice_never_overwrite_each_other() {
    let env = TestEnv::new("cnrace").await;
    scenario(&env).await;
    run(&env, &["close", "--period", "2026-10", "--as-of", "2026-11-25T00:00:00Z"]);
    let amounts = ["1.00", "2.00", "3.00", "4.00"];
    let spawn = |amount: &str| {
        spawn_meterline(
            &env,
            &["invoices", "credit-note", "--id", "INV-2026-000001", "--amount", amount, "--reason", &format!("race {amount}")],
        )
    };
    let children: Vec<_> = amounts.iter().map(|a| spawn(a)).collect();
    let (mut issued, mut busy) = (Vec::new(), Vec::new());
    for (amount, child) in amounts.iter().zip(children) {
        let out = child.wait_with_output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string());
        if out.status.success() {
            assert!(stdout.contains(&format!(": {amount} USD,")), "{stdout}");
            issued.push(d(amount));
        } else {
            assert!(stderr.contains("is being issued right now") && stderr.contains("nothing was issued"), "{stdout}{stderr}");
            busy.push(*amount);
        }
    }
    eprintln!("issued at once: {issued:?}, refused as busy: {busy:?}");
    assert!(!issued.is_empty());
    let ch = env.clickhouse().await;
    let invoice = list_invoices(&ch, "2026-10").await.unwrap()[0].invoice_id;
    let stored = |notes: Vec<meterline_schemas::invoice::CreditNoteRow>| -> (Vec<String>, Vec<Decimal>) {
        let mut amounts: Vec<Decimal> = notes.iter().map(|n| n.amount).collect();
        amounts.sort();
        (notes.into_iter().map(|n| n.number).collect(), amounts)
    };
    // Every credit reported as issued is stored, with its own number; nothing else is.
    issued.sort();
    let numbers: Vec<String> = (1..=issued.len()).map(|i| format!("CN-2026-{i:06}")).collect();
    assert_eq!(stored(meterline_invoicer::credit_notes::of_invoice(&ch, invoice).await.unwrap()), (numbers, issued));
    // The refused ones, retried one by one, are issued after them: four notes, gapless, 10.00.
    for amount in &busy {
        run(&env, &["invoices", "credit-note", "--id", "INV-2026-000001", "--amount", amount, "--reason", &format!("race {amount}")]);
    }
    let (numbers, amounts) = stored(meterline_invoicer::credit_notes::of_invoice(&ch, invoice).await.unwrap());
    assert_eq!(numbers, (1..=4).map(|i| format!("CN-2026-{i:06}")).collect::<Vec<_>>());
    assert_eq!(amounts, amounts_sorted(&["1.00", "2.00", "3.00", "4.00"]));
    let out = run(&env, &["invoices", "credit-note", "--id", "INV-2026-000001", "--amount", "4.24", "--reason", "rest"]);
    assert!(out.contains("CN-2026-000005") && out.contains("0.00 USD left to credit"), "{out}");
    env.cleanup().await;
}

fn amounts_sorted(v: &[&str]) -> Vec<Decimal> {
    let mut out: Vec<Decimal> = v.iter().map(|a| d(a)).collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_around_numbering_leave_no_gap() {
    let env = TestEnv::new("numcrash").await;
    scenario(&env).await;
    let ch = env.clickhouse().await;
    let numbering = Numbering::open(&env.js, &format!("{}numbering", env.bucket_prefix)).await.unwrap();
    let series = Series::new("meterline", "inv", "INV-{year}-{seq:06}").unwrap();
    let numbers = |p: &'static str| {
        let ch = ch.clone();
        async move { list_invoices(&ch, p).await.unwrap().into_iter().map(|i| (i.number, i.status)).collect::<Vec<_>>() }
    };

    // Crash after reserving 1..4, before writing: drafts stay, the reservations stay.
    let (ok, _, err) = env.meterline(
        &["close", "--period", "2026-10", "--as-of", "2026-11-25T00:00:00Z"],
        &[("METERLINE_FAILPOINT", "close.after_reserve:1")],
    );
    assert!(!ok && err.contains("failpoint close.after_reserve reached"), "{err}");
    assert!(numbers("2026-10").await.iter().all(|(n, s)| n.is_empty() && *s == 1));
    let snap = numbering.read(&series).await.unwrap();
    assert_eq!((snap.counter.next, snap.counter.pending.len()), (5, 4));
    // The next close reuses them: 1..4, nothing skipped, nothing pending.
    run(&env, &["close", "--period", "2026-10", "--as-of", "2026-11-26T00:00:00Z"]);
    let s = |n: &str| (n.to_string(), 2i8);
    assert_eq!(numbers("2026-10").await, vec![s("INV-2026-000001"), s("INV-2026-000002"), s("INV-2026-000003"), s("INV-2026-000004")]);
    let at: Vec<u32> = list_invoices(&ch, "2026-10").await.unwrap().iter().map(|i| i.status_at).collect();
    assert_eq!(at, vec![1_795_564_800; 4], "dated by the reservation (2026-11-25), not by the second run");
    assert_eq!(numbering.read(&series).await.unwrap().counter, Counter { next: 5, pending: Default::default() });

    // Crash after writing November's finalized headers, before releasing: the next close finds
    // them written, drops the stale reservations and hands out nothing new.
    let (ok, _, err) = env.meterline(
        &["close", "--period", "2026-11", "--as-of", "2026-12-05T00:00:00Z"],
        &[("METERLINE_FAILPOINT", "close.after_finalize_write:1")],
    );
    assert!(!ok && err.contains("failpoint close.after_finalize_write reached"), "{err}");
    assert_eq!(numbering.read(&series).await.unwrap().counter.pending.len(), 4);
    // It died before publishing their `invoice.finalized` events: the next close publishes them
    // from the pending reservations (the outbox) before dropping those.
    let mut finalized = env.client.subscribe(format!("{}.invoice.finalized", env.billing_prefix)).await.unwrap();
    let out = run(&env, &["close", "--period", "2026-11", "--as-of", "2026-12-06T00:00:00Z"]);
    assert!(out.contains("0 finalized now, 4 unchanged"), "{out}");
    assert_eq!(numbers("2026-11").await, vec![s("INV-2026-000005"), s("INV-2026-000006"), s("INV-2026-000007"), s("INV-2026-000008")]);
    let mut got: Vec<String> =
        collect(&mut finalized, 4).await.into_iter().map(|(_, e)| e["invoice_number"].as_str().unwrap().to_owned()).collect();
    got.sort();
    assert_eq!(got, ["INV-2026-000005", "INV-2026-000006", "INV-2026-000007", "INV-2026-000008"]);
    // December is finalized in January 2027: the sequence goes on under the new year.
    let out = run(&env, &["close", "--period", "2026-12", "--as-of", "2027-01-05T00:00:00Z"]);
    assert!(out.contains("numbers INV-2027-000009 to INV-2027-000012"), "{out}");
    assert_eq!(numbering.read(&series).await.unwrap().counter, Counter { next: 13, pending: Default::default() });
    // Every finalization is in the billing stream exactly once: 4 for each of three periods.
    let mut stream = env.js.get_stream(&env.billing_stream).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 12);
    env.cleanup().await;
}
