//! RowBinary encoding of invoice lines by the `clickhouse` crate.
//!
//! The crate's RowBinary serializer is private; rows are encoded by its `Insert` as they are
//! written. So the benchmark runs the crate's real insert path (serialize each `InvoiceLineRow`,
//! LZ4-compress the chunks, stream them over HTTP) against the crate's own mock server
//! (`clickhouse::test::Mock`, feature `test-util`) on loopback, which accepts the body and
//! answers 200 without decoding it. No ClickHouse server is involved, so this is the client
//! side's ceiling per row; a second benchmark inserts the same number of narrow rows (one
//! `u64`) to separate per-row encoding from per-request overhead.

use clickhouse::Row;
use clickhouse::test::{Mock, handlers};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use meterline_schemas::invoice::InvoiceLineRow;

#[derive(Row, Serialize, Deserialize)]
struct Narrow {
    n: u64,
}

fn line(i: u64) -> InvoiceLineRow {
    InvoiceLineRow {
        invoice_id: uuid::Uuid::from_u128(u128::from(i / 10)),
        line_no: u32::try_from(i % 10).unwrap_or_default() + 1,
        kind: 2,
        customer: format!("c{:06}", i / 10),
        period: "2026-10".into(),
        period_start: 1_790_812_800,
        currency: "USD".into(),
        description: "LLM tokens (model=large)".into(),
        meter: "llm_tokens".into(),
        quantity: Decimal::new(1_234_567 + i64::try_from(i).unwrap_or_default(), 0),
        event_count: 321,
        price_model: "graduated".into(),
        plan: "growth".into(),
        plan_version: 2,
        amount: Decimal::new(46_913, 2),
        amount_unrounded: "469.1334".into(),
        rounding_mode: "half_even".into(),
        breakdown: r#"{"tiers":[{"up_to":"1000000","quantity":"1000000","unit_price":"0","amount":"0"},{"up_to":null,"quantity":"234567","unit_price":"0.000002","amount":"0.469134"}]}"#.into(),
        segments: vec!["month=2026-10/seg-p000-000000000001-000000100000-0123456789abcdef.parquet".into()],
        version: 1,
    }
}

fn bench(c: &mut Criterion) {
    const N: u64 = 10_000;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let _runtime = rt.enter();
    let mock = Mock::new();
    let client = clickhouse::Client::default().with_url(mock.url());
    let rows: Vec<InvoiceLineRow> = (0..N).map(line).collect();
    let mut g = c.benchmark_group("rowbinary");
    g.sample_size(20);
    g.throughput(Throughput::Elements(N));
    g.bench_function("invoice lines through Insert (mock server)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let _ = mock.add(handlers::record::<InvoiceLineRow>());
                let mut ins = client.insert::<InvoiceLineRow>("invoice_lines").await.expect("insert");
                for r in &rows {
                    ins.write(r).await.expect("write");
                }
                ins.end().await.expect("end");
            })
        })
    });
    g.bench_function("narrow u64 rows through Insert (mock server)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let _ = mock.add(handlers::record::<Narrow>());
                let mut ins = client.insert::<Narrow>("narrow").await.expect("insert");
                for n in 0..N {
                    ins.write(&Narrow { n }).await.expect("write");
                }
                ins.end().await.expect("end");
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
