//! `close` is deterministic and idempotent: closing twice leaves identical rows, and no
//! duplicate rows even when read without `FINAL`.

use clickhouse::Row;
use serde::Deserialize;

use meterline_ingest::segment::Ledger;
use meterline_invoicer::writer::{list_invoices, list_lines};

use crate::common::TestEnv;
use crate::scenario::{CATALOG, messages};

#[derive(Row, Deserialize)]
struct Counts {
    invoices: u64,
    versions: u64,
    lines: u64,
}

/// A clock after October 2026's grace deadline (2026-11-04): closes finalize.
const NOW: &str = "2026-11-25T00:00:00Z";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_twice_writes_identical_rows_once() {
    let env = TestEnv::new("close").await;
    let store = env.catalog(CATALOG).await;
    for m in messages() {
        env.publish(&m).await;
    }
    let catalog = store.load().await.unwrap();
    let _ledger = Ledger::open(&meterline_ingest::LedgerConfig { path: env.ledger_path() }).unwrap();
    let _shutdown = tokio_util::sync::CancellationToken::new();
    env.ingest_until_idle(&catalog).await;

    let ch = env.clickhouse().await;
    let first = env.close(&catalog, "2026-10", NOW).await;
    assert_eq!((first.write.inserted, first.write.unchanged), (4, 0));
    let invoices_1 = list_invoices(&ch, "2026-10").await.unwrap();
    let lines_1 = list_lines(&ch, "2026-10").await.unwrap();

    let second = env.close(&catalog, "2026-10", NOW).await;
    assert_eq!((second.write.inserted, second.write.lines_inserted, second.write.unchanged), (0, 0, 4));
    assert!(second.write.conflicts.is_empty());
    assert_eq!(first.invoices, second.invoices, "the same ledger, catalog and period give identical invoices");
    assert_eq!(list_invoices(&ch, "2026-10").await.unwrap(), invoices_1);
    assert_eq!(list_lines(&ch, "2026-10").await.unwrap(), lines_1);

    // No duplicates even without FINAL: 4 invoices through the view (each has two header
    // versions, draft and finalized), 4 + 4 + 3 + 4 lines.
    let counts: Counts = ch
        .client()
        .query(
            "SELECT (SELECT count() FROM invoices_current) AS invoices, (SELECT count() FROM invoices) AS versions, \
             (SELECT count() FROM invoice_lines) AS lines",
        )
        .fetch_one()
        .await
        .unwrap();
    assert_eq!((counts.invoices, counts.versions, counts.lines), (4, 8, 15));
    env.cleanup().await;
}

#[derive(Row, Deserialize)]
struct One {
    #[serde(with = "meterline_schemas::money::ch_decimal")]
    v: rust_decimal::Decimal,
}

struct Sums {
    revenue: rust_decimal::Decimal,
    revenue_base: rust_decimal::Decimal,
    aged: rust_decimal::Decimal,
}

/// The reporting columns of migration 0007 round-trip through RowBinary on the dev server, and the
/// reporting views add up to the invoices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reporting_columns_and_views() {
    let env = TestEnv::new("reporting").await;
    let store = env.catalog(CATALOG).await;
    for m in messages() {
        env.publish(&m).await;
    }
    let catalog = store.load().await.unwrap();
    let _ledger = Ledger::open(&meterline_ingest::LedgerConfig { path: env.ledger_path() }).unwrap();
    env.ingest_until_idle(&catalog).await;
    let ch = env.clickhouse().await;
    let settings = meterline_invoicer::Settings {
        reporting_currency: Some(meterline_schemas::money::Currency::from_code("USD").unwrap()),
        ..meterline_schemas::money::RoundingMode::HalfEven.into()
    };
    let billing = env.billing_with(settings).await;
    // After the grace deadline: the invoices are finalized, which receivables_ageing counts.
    let opts = meterline_invoicer::CloseOptions { now: "2026-11-05T00:00:00Z".parse().unwrap(), finalize: true };
    let report = meterline_invoicer::close_period(&billing, &env.ledger_path(), &catalog, "2026-10".parse().unwrap(), opts).await.unwrap();
    let mut computed: Vec<_> = report.invoices.iter().map(|i| i.row.clone()).collect();
    computed.sort_by(|a, b| (&a.customer, &a.subscription_id).cmp(&(&b.customer, &b.subscription_id)));
    let stored = list_invoices(&ch, "2026-10").await.unwrap();
    // The lifecycle columns differ (computed rows are drafts, stored ones finalized); every other
    // column, the reporting ones included, round-trips.
    let lifecycle = |r: &meterline_schemas::invoice::InvoiceRow| meterline_schemas::invoice::InvoiceRow {
        status: 0,
        number: String::new(),
        status_at: 0,
        version: 0,
        ..r.clone()
    };
    assert_eq!(stored.iter().map(lifecycle).collect::<Vec<_>>(), computed.iter().map(lifecycle).collect::<Vec<_>>());
    assert!(stored.iter().all(|r| r.status == meterline_schemas::invoice::InvoiceStatus::Finalized as i8));
    assert!(stored.iter().all(|r| r.reporting_currency == "USD"));
    let usd_total: rust_decimal::Decimal = stored.iter().filter(|r| r.currency == "USD").map(|r| r.total).sum();
    let base_total: rust_decimal::Decimal = stored.iter().map(|r| r.total_base).sum();
    assert!(stored.iter().filter(|r| r.currency == "USD").all(|r| r.fx_rate == rust_decimal::Decimal::ONE && r.total_base == r.total));
    // One query each: 18.16 cannot compare Decimal scalar subqueries (Code: 53).
    let one = |sql: &'static str| {
        let c = ch.client().clone();
        async move { c.query(sql).fetch_one::<One>().await.unwrap().v }
    };
    let sums = Sums {
        revenue: one("SELECT sum(total) AS v FROM revenue_daily WHERE currency = 'USD'").await,
        revenue_base: one("SELECT sum(total_base) AS v FROM revenue_daily").await,
        aged: one("SELECT sum(outstanding) AS v FROM receivables_ageing WHERE currency = 'USD'").await,
    };
    assert_eq!((sums.revenue, sums.revenue_base, sums.aged), (usd_total, base_total, usd_total));
    env.cleanup().await;
}

#[derive(Row, Deserialize)]
struct Applied {
    version: u32,
    rows: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_is_idempotent() {
    let env = TestEnv::new("migrate").await; // applied once here
    let again = meterline_schemas::clickhouse::migrate(&env.ch).await.unwrap();
    assert!(again.is_empty(), "nothing left to apply: {again:?}");
    let ch = env.clickhouse().await;
    let applied: Vec<Applied> = ch
        .client()
        .query("SELECT version, count() AS rows FROM schema_migrations GROUP BY version ORDER BY version")
        .fetch_all()
        .await
        .unwrap();
    let got: Vec<(u32, u64)> = applied.iter().map(|a| (a.version, a.rows)).collect();
    assert_eq!(got, vec![(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 1), (7, 1), (8, 1), (9, 1)]);
    env.cleanup().await;
}
