//! `bench-close`: closing a period of 100k customers (about a million invoice lines) into
//! ClickHouse, stage by stage, beside the raw ceiling measured in the same run: a plain INSERT
//! of the same rows (same tables' structure, already built) through the same `clickhouse` crate.
//!
//! ```text
//! bench-close --customers 100000 --events 4000000 --extra-meters 4 --dir .local/bench/close \
//!             --database lt_bench_close --json .local/bench/results/bench-close.json
//! ```
//! The stages are those of `meterline_invoicer::close_period` (rate, credits, build, write), timed
//! one by one; the database is the run's own (dropped and re-created).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use meterline_benches::synth::{catalog, generate, peak_rss_mib};
use meterline_invoicer::{CreditUsage, build_invoices};
use meterline_schemas::clickhouse::{ClickHouse, ClickHouseConfig, Secret, quote_ident};
use meterline_schemas::invoice::{InvoiceLineRow, InvoiceRow};
use meterline_schemas::money::RoundingMode;
use meterline_schemas::period::PeriodLabel;

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.windows(2).find(|w| w[0] == name).map_or_else(|| default.to_owned(), |w| w[1].clone())
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn per_s(n: u64, d: Duration) -> u64 {
    u64::try_from(u128::from(n) * 1000 / d.as_millis().max(1)).unwrap_or(u64::MAX)
}

async fn insert<T: clickhouse::RowOwned + clickhouse::RowWrite>(c: &clickhouse::Client, table: &str, rows: &[&T]) -> anyhow::Result<()> {
    let mut ins = c.insert::<T>(table).await?;
    for r in rows {
        ins.write(*r).await?;
    }
    ins.end().await?;
    Ok(())
}

#[allow(clippy::print_stdout)]
fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let customers: usize = arg(&args, "--customers", "100000").parse()?;
    let events: usize = arg(&args, "--events", "4000000").parse()?;
    let extra: usize = arg(&args, "--extra-meters", "4").parse()?;
    let dir = PathBuf::from(arg(&args, "--dir", ".local/bench/close"));
    let database = arg(&args, "--database", "lt_bench_close");
    anyhow::ensure!(database.starts_with("lt_"), "--database must start with lt_ (it is dropped)");
    let json = arg(&args, "--json", ".local/bench/results/bench-close.json");
    let label: PeriodLabel = "2026-10".parse()?;

    let t = Instant::now();
    generate(&dir, events, customers, extra)?;
    eprintln!("ledger ready in {:.1?}", t.elapsed());
    let catalog = catalog(customers, extra)?;
    let cfg = ClickHouseConfig {
        url: std::env::var("METERLINE__CLICKHOUSE__URL").unwrap_or_else(|_| "http://127.0.0.1:18123".into()),
        database: database.clone(),
        user: "default".into(),
        password: Secret::new(std::env::var("METERLINE__CLICKHOUSE__PASSWORD").unwrap_or_default()),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        meterline_schemas::clickhouse::drop_database(&cfg).await?;
        meterline_schemas::clickhouse::migrate(&cfg).await?;
        let ch = ClickHouse::connect(&cfg).await?;
        let rss_before = peak_rss_mib();

        // The close, stage by stage (the same calls as close_period).
        let t0 = Instant::now();
        let rated = meterline_rater::rate_period(&dir, &catalog, label).await?;
        let rate = t0.elapsed();
        let t1 = Instant::now();
        let credits = CreditUsage::load_before(&ch, &catalog, label).await?;
        let credits_t = t1.elapsed();
        let t2 = Instant::now();
        let invoices = build_invoices(&rated, &catalog, label, RoundingMode::HalfEven, &credits)?;
        let build = t2.elapsed();
        let t3 = Instant::now();
        // The draft write (finalization, numbering in NATS KV, is not part of this benchmark).
        let (written, _) = meterline_invoicer::writer::write_drafts(&ch, &label.to_string(), &invoices).await?;
        let write = t3.elapsed();
        let close = t0.elapsed();
        let n_inv = invoices.len() as u64;
        let lines: Vec<&InvoiceLineRow> = invoices.iter().flat_map(|i| i.lines.iter()).collect();
        let headers: Vec<&InvoiceRow> = invoices.iter().map(|i| &i.row).collect();
        let n_lines = lines.len() as u64;
        anyhow::ensure!(written.inserted == invoices.len(), "expected every invoice inserted, got {written:?}");

        // The raw ceiling: the same rows, already built, into tables of the same structure.
        let c = ch.client();
        let db = quote_ident(&database);
        for (raw, of) in [("raw_invoice_lines", "invoice_lines"), ("raw_invoices", "invoices")] {
            c.query(&format!("CREATE TABLE {db}.{raw} AS {db}.{of}")).execute().await.with_context(|| format!("create {raw}"))?;
        }
        let t4 = Instant::now();
        insert(c, "raw_invoice_lines", &lines).await?;
        insert(c, "raw_invoices", &headers).await?;
        let ceiling = t4.elapsed();
        let rss = peak_rss_mib();

        let rows = n_lines + n_inv;
        let md = format!(
            "{customers} customers, {events} ledger events ({} meters), period {label}; {} build, ClickHouse database `{database}`.\n\n\
| what | rows | wall time | rows/s | invoices/s |\n| --- | ---: | ---: | ---: | ---: |\n\
| **Meterline close** (rate → build → idempotent write) | {rows} ({n_inv} invoices + {n_lines} lines) | **{} ms** | {} | **{}** |\n\
| raw ceiling: plain INSERT of the same rows, no building | {rows} | {} ms | {} | {} |\n\
| close ÷ ceiling | | {}.{:02}× | | |\n\n\
Stages of the close: rate (DataFusion over the ledger) {} ms · credits {} ms · build (pricing, fees, tax, rounding, ids, hashes) {} ms · write (idempotency reads + inserts) {} ms. \
The write alone is {}.{:02}× the raw INSERT. Peak RSS {} MiB ({} MiB before the close).\n",
            catalog.meters.len(),
            if cfg!(debug_assertions) { "debug" } else { "release" },
            ms(close),
            per_s(rows, close),
            per_s(n_inv, close),
            ms(ceiling),
            per_s(rows, ceiling),
            per_s(n_inv, ceiling),
            ms(close) / ms(ceiling).max(1),
            ms(close) * 100 / ms(ceiling).max(1) % 100,
            ms(rate),
            ms(credits_t),
            ms(build),
            ms(write),
            ms(write) / ms(ceiling).max(1),
            ms(write) * 100 / ms(ceiling).max(1) % 100,
            rss,
            rss_before,
        );
        println!("{md}");
        let out = serde_json::json!({
            "customers": customers, "events": events, "invoices": n_inv, "lines": n_lines,
            "close_ms": ms(close), "rate_ms": ms(rate), "credits_ms": ms(credits_t), "build_ms": ms(build), "write_ms": ms(write),
            "ceiling_ms": ms(ceiling), "rows_per_s": per_s(rows, close), "invoices_per_s": per_s(n_inv, close),
            "ceiling_rows_per_s": per_s(rows, ceiling), "peak_rss_mib": rss,
            "build": if cfg!(debug_assertions) { "debug" } else { "release" }, "markdown": md,
        });
        let path = PathBuf::from(&json);
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(&path, serde_json::to_string_pretty(&out)? + "\n")?;
        anyhow::Ok(())
    })
}
