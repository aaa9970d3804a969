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
        due_at: 0,
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

/// One row of `receivables_ageing` (migration 0010).
#[derive(Debug, PartialEq, Row, Deserialize)]
struct Ageing {
    customer: String,
    currency: String,
    invoices: u64,
    #[serde(with = "meterline_schemas::money::ch_decimal")]
    not_yet_due: rust_decimal::Decimal,
    #[serde(with = "meterline_schemas::money::ch_decimal")]
    due_1_30: rust_decimal::Decimal,
    #[serde(with = "meterline_schemas::money::ch_decimal")]
    due_31_60: rust_decimal::Decimal,
    #[serde(with = "meterline_schemas::money::ch_decimal")]
    due_61_90: rust_decimal::Decimal,
    #[serde(with = "meterline_schemas::money::ch_decimal")]
    due_over_90: rust_decimal::Decimal,
    #[serde(with = "meterline_schemas::money::ch_decimal")]
    outstanding: rust_decimal::Decimal,
}

#[derive(Row, Deserialize)]
struct DueAt {
    customer: String,
    status: String,
    due_at: String,
}

#[derive(Row, Deserialize)]
struct Today {
    days: u32,
}

fn dec(s: &str) -> rust_decimal::Decimal {
    rust_decimal::Decimal::from_str_exact(s).unwrap()
}

fn secs(rfc3339: &str) -> u32 {
    u32::try_from(chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp()).unwrap()
}

/// Migration 0010 on the dev server: drafts carry a provisional due date (cycle end + terms),
/// finalization dates them from the finalization day with the customer's terms (or the billing
/// default), a payment keeps the date and leaves the ageing; `receivables_ageing` puts each
/// open invoice into its bucket by UTC days past due, with the bounds of docs/CLICKHOUSE.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_dates_and_receivables_ageing() {
    use meterline_schemas::invoice::InvoiceStatus::{Draft, Finalized, Paid, Uncollectible, Void};
    use meterline_schemas::invoice::{InvoiceRow, InvoiceStatus};

    let env = TestEnv::new("due_dates").await;
    // alice: the default (net 30); bob net 10, chiyo net 45, dan net 0.
    let catalog_text = CATALOG
        .replace("jurisdiction: DE, locale: de-DE }", "jurisdiction: DE, locale: de-DE, payment_terms_days: 10 }")
        .replace("jurisdiction: JP, locale: ja-JP }", "jurisdiction: JP, locale: ja-JP, payment_terms_days: 45 }")
        .replace(
            "name: Dan LLC, currency: USD, jurisdiction: US-CA }",
            "name: Dan LLC, currency: USD, jurisdiction: US-CA, payment_terms_days: 0 }",
        );
    assert_eq!(catalog_text.matches("payment_terms_days").count(), 3);
    let store = env.catalog(&catalog_text).await;
    for m in messages() {
        env.publish(&m).await;
    }
    let catalog = store.load().await.unwrap();
    let _ledger = Ledger::open(&meterline_ingest::LedgerConfig { path: env.ledger_path() }).unwrap();
    env.ingest_until_idle(&catalog).await;
    let ch = env.clickhouse().await;
    let billing = env.billing().await; // [billing] payment_terms_days = 30
    let ledger = env.ledger_path();
    let close = |now: &'static str| {
        let opts = meterline_invoicer::CloseOptions { now: now.parse().unwrap(), finalize: false };
        meterline_invoicer::close_period(&billing, &ledger, &catalog, "2026-10".parse().unwrap(), opts)
    };
    let due_dates = |rows: &[InvoiceRow]| -> Vec<(String, u32)> { rows.iter().map(|r| (r.customer.clone(), r.due_at)).collect() };

    // Inside the grace window: drafts, issued at the cycle end 2026-11-01, due provisionally.
    let report = close("2026-11-02T00:00:00Z").await.unwrap();
    assert_eq!(report.drafts, 4);
    let drafts = list_invoices(&ch, "2026-10").await.unwrap();
    assert_eq!(
        due_dates(&drafts),
        vec![
            ("alice".to_owned(), secs("2026-12-01T00:00:00Z")),
            ("bob".to_owned(), secs("2026-11-11T00:00:00Z")),
            ("chiyo".to_owned(), secs("2026-12-16T00:00:00Z")),
            ("dan".to_owned(), secs("2026-11-01T00:00:00Z")),
        ]
    );

    // After the deadline (2026-11-04): finalized at 09:30 on 2026-11-05, due from that day.
    let report = close("2026-11-05T09:30:00Z").await.unwrap();
    assert_eq!(report.finalized.len(), 4);
    let finalized = list_invoices(&ch, "2026-10").await.unwrap();
    assert!(finalized.iter().all(|r| r.status == Finalized as i8));
    assert!(finalized.iter().all(|r| r.status_at == secs("2026-11-05T09:30:00Z") && r.issued_at == secs("2026-11-01T00:00:00Z")));
    assert_eq!(
        due_dates(&finalized),
        vec![
            ("alice".to_owned(), secs("2026-12-05T00:00:00Z")),
            ("bob".to_owned(), secs("2026-11-15T00:00:00Z")),
            ("chiyo".to_owned(), secs("2026-12-20T00:00:00Z")),
            ("dan".to_owned(), secs("2026-11-05T00:00:00Z")),
        ]
    );
    // A close after finalization changes nothing: the due dates are not recomputed.
    let again = close("2026-11-25T00:00:00Z").await.unwrap();
    assert_eq!((again.finalized.len(), again.write.unchanged), (0, 4));
    assert_eq!(due_dates(&list_invoices(&ch, "2026-10").await.unwrap()), due_dates(&finalized));

    // Paying dan's invoice keeps its due date and takes it out of the receivables.
    let dan = finalized.iter().find(|r| r.customer == "dan").unwrap();
    let paid = meterline_invoicer::lifecycle::transition(&billing, &dan.number, Paid, "wire", "2026-11-20T00:00:00Z".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(paid.due_at, secs("2026-11-05T00:00:00Z"));
    let stored: Vec<DueAt> = ch
        .client()
        .query("SELECT customer, toString(status) AS status, toString(due_at) AS due_at FROM invoices_current ORDER BY customer")
        .fetch_all()
        .await
        .unwrap();
    let stored: Vec<(&str, &str, &str)> = stored.iter().map(|r| (r.customer.as_str(), r.status.as_str(), r.due_at.as_str())).collect();
    assert_eq!(
        stored,
        vec![
            ("alice", "finalized", "2026-12-05 00:00:00"),
            ("bob", "finalized", "2026-11-15 00:00:00"),
            ("chiyo", "finalized", "2026-12-20 00:00:00"),
            ("dan", "paid", "2026-11-05 00:00:00"),
        ]
    );
    let ageing = |customers: &'static str| {
        let c = ch.client().clone();
        async move {
            c.query(&format!("SELECT ?fields FROM receivables_ageing WHERE customer IN ({customers}) ORDER BY customer, currency"))
                .fetch_all::<Ageing>()
                .await
                .unwrap()
        }
    };
    // Which bucket these fall into depends on today; what is open does not: alice 14.24 USD,
    // bob 10.39 EUR, chiyo 1111 JPY, dan paid.
    let open = ageing("'alice', 'bob', 'chiyo', 'dan'").await;
    let outstanding: Vec<(&str, &str, u64, rust_decimal::Decimal)> =
        open.iter().map(|a| (a.customer.as_str(), a.currency.as_str(), a.invoices, a.outstanding)).collect();
    assert_eq!(outstanding, vec![("alice", "USD", 1, dec("14.24")), ("bob", "EUR", 1, dec("10.39")), ("chiyo", "JPY", 1, dec("1111"))]);
    assert!(open.iter().all(|a| a.not_yet_due + a.due_1_30 + a.due_31_60 + a.due_61_90 + a.due_over_90 == a.outstanding));

    // The bucket bounds, with headers due relative to the server's today (UTC): one invoice
    // per bound, amounts in powers of two so every bucket's sum names its members.
    let today: Today = ch.client().query("SELECT toUInt32(toDate(now(), 'UTC')) AS days").fetch_one().await.unwrap();
    let midnight = today.days * 86_400;
    let template = finalized.iter().find(|r| r.customer == "alice").unwrap().clone();
    let header = |n: u128, status: InvoiceStatus, days_past_due: i64, total: &str, version: u64| InvoiceRow {
        invoice_id: uuid::Uuid::from_u128(0xa9e0_0000 + n),
        subscription_id: format!("sub-ageing-{n}"),
        number: format!("INV-AGEING-{n}"),
        customer: "ageing".into(),
        status: status as i8,
        total: dec(total),
        due_at: u32::try_from(i64::from(midnight) - days_past_due * 86_400).unwrap(),
        version,
        ..template.clone()
    };
    let rows = vec![
        header(1, Finalized, -1, "1.00", 2),   // due tomorrow: not yet due
        header(2, Finalized, 0, "2.00", 2),    // due today: not yet due
        header(3, Finalized, 1, "4.00", 2),    // 1 day past due
        header(4, Finalized, 30, "8.00", 2),   // 30
        header(5, Finalized, 31, "16.00", 2),  // 31
        header(6, Finalized, 60, "32.00", 2),  // 60
        header(7, Finalized, 61, "64.00", 2),  // 61
        header(8, Finalized, 90, "128.00", 2), // 90
        header(9, Finalized, 91, "256.00", 2), // 91
        // Not receivable: a draft, paid, void and written-off invoices, nothing to pay, and an
        // invoice whose finalized version was superseded by its payment.
        header(10, Draft, 100, "1000.00", 1),
        header(11, Paid, 100, "1000.00", 3),
        header(12, Void, 100, "1000.00", 3),
        header(13, Uncollectible, 100, "1000.00", 3),
        header(14, Finalized, 100, "0.00", 2),
        header(15, Finalized, 100, "1000.00", 2),
        header(15, Paid, 100, "1000.00", 3),
    ];
    let mut insert = ch.client().insert::<InvoiceRow>("invoices").await.unwrap();
    for r in &rows {
        insert.write(r).await.unwrap();
    }
    insert.end().await.unwrap();
    // A header written the way rows before migration 0010 were (no due_at): it reads its
    // issued_at (the column's DEFAULT), issued 45 days ago, so 45 days past due.
    ch.client()
        .query(&format!(
            "INSERT INTO invoices (invoice_id, subscription_id, customer, period, period_start, period_end, currency, plan, \
             plan_version, subtotal, tax, total, line_count, status, number, status_at, lines_version, revision, content_hash, \
             issued_at, version) VALUES ('00000000-0000-0000-0000-0000a9e00063', 'sub-ageing-old', 'ageing', '2026-10', \
             '2026-10-01 00:00:00', '2026-11-01 00:00:00', 'USD', 'basic', 1, 0.50, 0, 0.50, 1, 'finalized', 'INV-OLD', \
             toDateTime({issued}), 1, 0, 1, toDateTime({issued}), 2)",
            issued = midnight - 45 * 86_400
        ))
        .execute()
        .await
        .unwrap();
    let old: Today = ch
        .client()
        .query("SELECT toUInt32(due_at) - toUInt32(issued_at) AS days FROM invoices_current WHERE subscription_id = 'sub-ageing-old'")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(old.days, 0, "a row without due_at is due on issue");
    assert_eq!(
        ageing("'ageing'").await,
        vec![Ageing {
            customer: "ageing".into(),
            currency: "USD".into(),
            invoices: 10,
            not_yet_due: dec("3.00"),   // 1 + 2 (due tomorrow, due today)
            due_1_30: dec("12.00"),     // 4 + 8 (1 and 30 days)
            due_31_60: dec("48.50"),    // 16 + 32 (31 and 60 days) + 0.50 (the pre-0010 row, 45 days)
            due_61_90: dec("192.00"),   // 64 + 128 (61 and 90 days)
            due_over_90: dec("256.00"), // 91 days
            outstanding: dec("511.50"),
        }]
    );
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
    assert_eq!(got, vec![(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 1), (7, 1), (8, 1), (9, 1), (10, 1), (11, 1)]);
    env.cleanup().await;
}
