//! `close` is deterministic and idempotent: closing twice leaves identical rows, and no
//! duplicate rows even when read without `FINAL`.

use clickhouse::Row;
use serde::Deserialize;

use meterline_ingest::IngestCounters;
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
    let ledger = Ledger::open(&meterline_ingest::LedgerConfig { path: env.ledger_path() }).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    meterline_ingest::run(
        &env.js,
        &env.ingest,
        &ledger,
        &catalog,
        meterline_ingest::RunOptions { until_idle: true, partitions: None },
        std::sync::Arc::new(IngestCounters::default()),
        shutdown,
    )
    .await
    .unwrap();

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
    assert_eq!(got, vec![(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 1), (8, 1)]);
    env.cleanup().await;
}
