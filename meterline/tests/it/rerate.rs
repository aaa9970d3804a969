//! Late usage after a close: re-rating reports the difference, and neither rerate nor a second
//! close touches the finalized invoice.

use rust_decimal::Decimal;

use meterline_ingest::segment::Ledger;
use meterline_invoicer::rerate::rerate;
use meterline_invoicer::writer::{list_invoices, list_lines};
use meterline_schemas::money::RoundingMode;

use crate::common::{TestEnv, event};
use crate::scenario::{CATALOG, messages};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_usage_shows_in_rerate_and_leaves_invoices_alone() {
    let env = TestEnv::new("rerate").await;
    let store = env.catalog(CATALOG).await;
    let catalog = store.load().await.unwrap();
    let _ledger = Ledger::open(&meterline_ingest::LedgerConfig { path: env.ledger_path() }).unwrap();
    let ingest = || async {
        let _token = tokio_util::sync::CancellationToken::new();
        env.ingest_until_idle(&catalog).await
    };
    for m in messages() {
        env.publish(&m).await;
    }
    ingest().await;
    let ch = env.clickhouse().await;
    let period = "2026-10".parse().unwrap();
    env.close(&catalog, "2026-10", "2026-11-25T00:00:00Z").await;
    let before = (list_invoices(&ch, "2026-10").await.unwrap(), list_lines(&ch, "2026-10").await.unwrap());

    let clean = rerate(&ch, &env.ledger_path(), &catalog, period, RoundingMode::HalfEven, None).await.unwrap();
    assert_eq!((clean.unchanged, clean.differences.len(), clean.not_invoiced.len()), (4, 0, 0));

    // Late: one more call for alice and 5000 tokens for bob, dated in October, after the close.
    env.publish(&event("late-1", "api.request", "alice", "2026-10-15T00:00:00Z", "{}")).await;
    env.publish(&event("late-2", "llm.completion", "bob", "2026-10-20T00:00:00Z", r#"{"tokens":5000}"#)).await;
    ingest().await;

    let r = rerate(&ch, &env.ledger_path(), &catalog, period, RoundingMode::HalfEven, None).await.unwrap();
    // alice: calls 3 → 4: 0.03 → 0.04; subtotal 13.29, tax 0.963525 → 0.96: the tax line's
    //        base (its quantity) changed, its amount did not, and rerate shows both.
    // bob: tokens 12345 → 17345 × 0.0001 = 1.7345 → 1.73 (was 1.23); subtotal 9.23,
    //      tax 9.23 × 0.19 = 1.7537 → 1.75 (was 1.66).
    let diffs: Vec<(&str, &str, Decimal, Decimal, Decimal)> =
        r.differences.iter().map(|d| (d.customer.as_str(), d.description.as_str(), d.invoiced_amount, d.rerated_amount, d.delta)).collect();
    let d = |s: &str| Decimal::from_str_exact(s).unwrap();
    assert_eq!(
        diffs,
        vec![
            ("alice", "calls", d("0.03"), d("0.04"), d("0.01")),
            ("alice", "CA sales tax", d("0.96"), d("0.96"), d("0.00")),
            ("bob", "tokens", d("1.23"), d("1.73"), d("0.50")),
            ("bob", "USt 19%", d("1.66"), d("1.75"), d("0.09")),
        ]
    );
    assert_eq!(r.unchanged, 2);
    let only_bob = rerate(&ch, &env.ledger_path(), &catalog, period, RoundingMode::HalfEven, Some("bob")).await.unwrap();
    assert_eq!((only_bob.differences.len(), only_bob.unchanged), (2, 0));

    // A second close never rewrites a finalized invoice: it reports the conflicts.
    let again = env.close(&catalog, "2026-10", "2026-11-25T00:00:00Z").await;
    assert_eq!((again.write.inserted, again.write.unchanged, again.write.conflicts.len()), (0, 2, 2));
    assert_eq!((list_invoices(&ch, "2026-10").await.unwrap(), list_lines(&ch, "2026-10").await.unwrap()), before);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_spend_follows_new_usage() {
    let env = TestEnv::new("spend").await;
    env.catalog(CATALOG).await;
    for m in messages() {
        env.publish(&m).await;
    }
    let (ok, out, err) = env.meterline(&["ingest", "--until-idle"], &[]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = env.meterline(&["spend", "--period", "2026-10"], &[]);
    assert!(ok && out.contains("current spend of 4 subscriptions"), "{out}{err}");
    let ch = env.clickhouse().await;
    let spend = |rows: Vec<meterline_schemas::invoice::SpendRow>| -> Vec<(String, Decimal, Decimal, Decimal)> {
        rows.into_iter().map(|r| (r.customer, r.fees, r.usage_amount, r.subtotal)).collect()
    };
    let d = |s: &str| Decimal::from_str_exact(s).unwrap();
    // Pre-tax parts of the scenario's invoices (see scenario.rs for the arithmetic).
    assert_eq!(
        spend(meterline_invoicer::spend::read(&ch, "2026-10").await.unwrap()),
        vec![
            ("alice".to_string(), d("10.00"), d("3.28"), d("13.28")),
            ("bob".to_string(), d("5.00"), d("3.73"), d("8.73")),
            ("chiyo".to_string(), d("1000"), d("10"), d("1010")),
            ("dan".to_string(), d("5.16"), d("0.01"), d("5.17")),
        ]
    );
    env.publish(&event("late-1", "api.request", "alice", "2026-10-15T00:00:00Z", "{}")).await;
    let (ok, out, err) = env.meterline(&["ingest", "--until-idle"], &[]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = env.meterline(&["spend", "--period", "2026-10"], &[]);
    assert!(ok, "{out}{err}");
    let rows = spend(meterline_invoicer::spend::read(&ch, "2026-10").await.unwrap());
    assert_eq!(rows[0], ("alice".to_string(), d("10.00"), d("3.29"), d("13.29")), "the newest refresh wins");
    env.cleanup().await;
}
