//! `bench-rate`: the full rating of a period over a large synthetic ledger, beside the same
//! GROUP BY as a plain DataFusion query over the same files (the engine's own ceiling).
//!
//! ```text
//! bench-rate generate --events 100000000 --customers 100000 --dir .local/bench/rate
//! bench-rate run --dir .local/bench/rate            # in a fresh process, so peak RSS is the run's
//! bench-rate breakdown --dir .local/bench/rate      # each aggregate query timed on its own
//! ```
//! `make bench-rate` does both. Output: a markdown table (events, wall time, events/s, ratio to
//! the plain query, peak RSS).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use arrow::array::{ArrayRef, Decimal128Builder, FixedSizeBinaryBuilder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder};
use chrono::{TimeZone, Utc};
use datafusion::arrow::datatypes::DataType;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use meterline_schemas::catalog::{Catalog, CatalogFile};
use meterline_schemas::ledger;

const ROWS_PER_FILE: usize = 1_000_000;
const METERS: [&str; 5] = ["api_calls", "llm_tokens", "storage_gb_hours", "active_users", "peak_connections"];

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.windows(2).find(|w| w[0] == name).map_or_else(|| default.to_owned(), |w| w[1].clone())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(arg(&args, "--dir", ".local/bench/rate"));
    let customers: usize = arg(&args, "--customers", "100000").parse()?;
    match args.get(1).map(String::as_str) {
        Some("generate") => generate(&dir, arg(&args, "--events", "100000000").parse()?, customers),
        Some("run") => run(&dir, customers),
        Some("breakdown") => breakdown(&dir, customers),
        _ => anyhow::bail!("usage: bench-rate generate|run|breakdown [--events N] [--customers N] [--dir DIR]"),
    }
}

/// Writes `events` ledger rows in files of a million rows, on every core.
fn generate(dir: &Path, events: usize, customers: usize) -> anyhow::Result<()> {
    let marker = dir.join(format!("generated-{events}-{customers}"));
    if marker.exists() {
        eprintln!("{} already holds {events} events for {customers} customers", dir.display());
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let month = dir.join("month=2026-10");
    std::fs::create_dir_all(&month)?;
    let files = events.div_ceil(ROWS_PER_FILE);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let t = Instant::now();
    std::thread::scope(|s| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|w| {
                let month = month.clone();
                s.spawn(move || -> anyhow::Result<()> {
                    for f in (w..files).step_by(threads) {
                        let rows = ROWS_PER_FILE.min(events - f * ROWS_PER_FILE);
                        write_file(&month, f, rows, customers)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("generator thread panicked"))??;
        }
        Ok(())
    })?;
    std::fs::write(&marker, "")?;
    eprintln!("generated {events} rows in {files} files in {:.1}s", t.elapsed().as_secs_f64());
    Ok(())
}

fn write_file(month: &Path, f: usize, rows: usize, customers: usize) -> anyhow::Result<()> {
    let mut rng = fastrand::Rng::with_seed(f as u64);
    let segment = format!("month=2026-10/seg-{f:06}.parquet");
    let start = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).single().context("date")?.timestamp_micros();
    let span = 31 * 86_400 * 1_000_000i64;
    let mut key = FixedSizeBinaryBuilder::with_capacity(rows, 16);
    let (mut id, mut source, mut customer, mut meter) =
        (StringBuilder::new(), StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
    let mut time = TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC");
    let mut value = Decimal128Builder::with_capacity(rows).with_precision_and_scale(38, 9)?;
    let (mut unique, mut group, mut seg, mut data) =
        (StringBuilder::new(), StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
    let mut ingested = TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC");
    for r in 0..rows {
        key.append_value(rng.u128(..).to_be_bytes())?;
        id.append_value(format!("e{f}-{r}"));
        source.append_value("bench");
        // Skewed: a quarter of the events from 1% of the customers.
        let c = if rng.u8(..4) == 0 { rng.usize(..customers.div_ceil(100)) } else { rng.usize(..customers) };
        customer.append_value(format!("c{c:06}"));
        let m = rng.usize(..METERS.len());
        meter.append_value(METERS[m]);
        time.append_value(start + rng.i64(0..span));
        match m {
            0 => {
                value.append_null();
                unique.append_null();
                group.append_value(format!(r#"{{"endpoint":"/v1/e{}"}}"#, rng.u8(..5)));
            }
            1 => {
                value.append_value(i128::from(rng.u32(50..4000)) * 1_000_000_000);
                unique.append_null();
                group.append_value(["{\"model\":\"small\"}", "{\"model\":\"medium\"}", "{\"model\":\"large\"}"][rng.usize(..3)]);
            }
            2 => {
                value.append_value(i128::from(rng.u32(..200_000)) * 1_000_000);
                unique.append_null();
                group.append_value(["{\"region\":\"us\"}", "{\"region\":\"eu\"}"][rng.usize(..2)]);
            }
            3 => {
                value.append_null();
                unique.append_value(format!("u{}", rng.u16(..500)));
                group.append_value("");
            }
            _ => {
                value.append_value(i128::from(rng.u32(1..500)) * 1_000_000_000);
                unique.append_null();
                group.append_value("");
            }
        }
        seg.append_value(&segment);
        ingested.append_value(start + span);
        data.append_value("{}");
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(key.finish()),
        Arc::new(id.finish()),
        Arc::new(source.finish()),
        Arc::new(customer.finish()),
        Arc::new(meter.finish()),
        Arc::new(time.finish()),
        Arc::new(value.finish()),
        Arc::new(unique.finish()),
        Arc::new(group.finish()),
        Arc::new(seg.finish()),
        Arc::new(ingested.finish()),
        Arc::new(data.finish()),
    ];
    let batch = RecordBatch::try_new(ledger::schema(), columns)?;
    let file = std::fs::File::create(month.join(format!("seg-{f:06}.parquet")))?;
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props))?;
    w.write(&batch)?;
    w.close()?;
    Ok(())
}

fn catalog(customers: usize) -> anyhow::Result<Catalog> {
    let mut yaml = String::from(
        r#"
meters:
  - { key: api_calls, event_type: api, aggregation: COUNT, group_by: { endpoint: endpoint } }
  - { key: llm_tokens, event_type: llm, aggregation: SUM, value: tokens, group_by: { model: model } }
  - { key: storage_gb_hours, event_type: storage, aggregation: SUM, value: gb_hours, group_by: { region: region } }
  - { key: active_users, event_type: api, aggregation: UNIQUE_COUNT, value: user }
  - { key: peak_connections, event_type: rt, aggregation: MAX, value: connections }
tax_rates:
  - { jurisdiction: US-CA, name: CA, rate: "0.0725" }
plans:
  - key: bench
    versions:
      - version: 1
        currency: USD
        recurring_fee: "49"
        prices:
          - { meter: api_calls, model: per_unit, unit_price: "0.0004" }
          - { meter: llm_tokens, model: graduated, tiers: [ { up_to: "1000000", unit_price: "0" }, { up_to: null, unit_price: "0.000002" } ] }
          - { meter: storage_gb_hours, model: volume, tiers: [ { up_to: "1000", unit_price: "0.0002" }, { up_to: null, unit_price: "0.0001" } ] }
          - { meter: active_users, model: per_unit, unit_price: "0.5" }
          - { meter: peak_connections, model: per_unit, unit_price: "0.02" }
customers:
"#,
    );
    for c in 0..customers {
        yaml.push_str(&format!("  - {{ key: c{c:06}, name: C{c}, currency: USD, jurisdiction: US-CA }}\n"));
    }
    yaml.push_str("subscriptions:\n");
    for c in 0..customers {
        yaml.push_str(&format!(
            "  - {{ id: s{c:06}, customer: c{c:06}, plan: bench, plan_version: 1, start: \"2026-01-01T00:00:00Z\", anchor_day: 1 }}\n"
        ));
    }
    let file = CatalogFile::parse(&yaml, "yaml").map_err(|e| anyhow::anyhow!(e))?;
    Ok(file.validate(&Catalog::default())?)
}

/// Peak resident set size of this process, from /proc (Linux).
fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .map_or(0, |kib| kib / 1024)
}

#[allow(clippy::float_arithmetic, clippy::print_stdout)] // throughput figures, not money
fn run(dir: &Path, customers: usize) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let events: u64 = std::fs::read_dir(dir)?
        .flatten()
        .find_map(|e| e.file_name().to_str()?.strip_prefix("generated-")?.split('-').next()?.parse().ok())
        .context("no generated ledger here: run `bench-rate generate` first")?;
    let catalog = catalog(customers)?;
    let label = "2026-10".parse()?;
    let root = dir.canonicalize()?;

    // The ceilings: plain DataFusion GROUP BYs over the same files, without windows or pricing.
    // "simple" has the cheap aggregates only; "same" computes every aggregate the rating needs.
    const SIMPLE: &str =
        "SELECT customer, meter, sum(value), count(*), min(value), max(value) FROM ledger WHERE month = '2026-10' GROUP BY customer, meter";
    const SAME: &str = "SELECT customer, meter, sum(value), count(*), min(value), max(value), min(segment), max(segment), \
        count(DISTINCT unique_value), last_value(value ORDER BY event_time, event_id) FROM ledger WHERE month = '2026-10' GROUP BY customer, meter";
    let root_ref = &root;
    let plain = move |sql: &'static str| async move {
        let root = root_ref;
        let ctx = SessionContext::new_with_config(
            SessionConfig::new().with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get())),
        );
        let opts = ParquetReadOptions::default().table_partition_cols(vec![("month".to_string(), DataType::Utf8)]);
        ctx.register_parquet("ledger", &format!("{}/", root.display()), opts).await?;
        Ok::<usize, anyhow::Error>(ctx.sql(sql).await?.collect().await?.iter().map(RecordBatch::num_rows).sum())
    };
    let t = Instant::now();
    let groups = rt.block_on(plain(SIMPLE))?;
    let simple = t.elapsed().as_secs_f64();
    eprintln!("plain GROUP BY, cheap aggregates: {simple:.2}s ({groups} groups)");
    let t = Instant::now();
    rt.block_on(plain(SAME))?;
    let same = t.elapsed().as_secs_f64();
    eprintln!("plain GROUP BY, the rating's aggregates: {same:.2}s");
    let t = Instant::now();
    let rated = rt.block_on(meterline_rater::rate_period(&root, &catalog, label))?;
    let ours = t.elapsed().as_secs_f64();
    let lines: usize = rated.iter().map(|r| r.usage.len()).sum();
    eprintln!("Meterline rating: {ours:.2}s ({} subscriptions, {lines} usage lines)", rated.len());
    let rss = peak_rss_mib();
    println!("| what | events | wall time | events/s | Meterline ÷ this | peak RSS (process) |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| plain DataFusion GROUP BY: sum, count, min, max | {events} | {simple:.2} s | {:.0} | {:.2}× | |",
        events as f64 / simple,
        ours / simple
    );
    println!(
        "| plain DataFusion GROUP BY: the same aggregates as the rating (ceiling) | {events} | {same:.2} s | {:.0} | {:.2}× | |",
        events as f64 / same,
        ours / same
    );
    println!(
        "| Meterline full rating: windows, {} subscriptions, {lines} priced lines | {events} | {ours:.2} s | {:.0} | 1.00× | {rss} MiB |",
        rated.len(),
        events as f64 / ours
    );
    Ok(())
}

/// Times each aggregate query of the rating on its own, to see where the time goes.
fn breakdown(dir: &Path, customers: usize) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let root = dir.canonicalize()?;
    let t = Instant::now();
    let cat = catalog(customers)?;
    eprintln!("catalog: {:.2}s", t.elapsed().as_secs_f64());
    let windows: Vec<meterline_rater::aggregate::SubWindow> = cat
        .subscriptions
        .values()
        .map(|s| meterline_rater::aggregate::SubWindow {
            subscription: s.id.clone(),
            customer: s.customer.clone(),
            start: Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).single().expect("date"),
            end: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().expect("date"),
        })
        .collect();
    for (u, l) in [(vec![], vec![]), (vec!["active_users".to_string()], vec![]), (vec![], vec!["peak_connections".to_string()])] {
        let t = Instant::now();
        let n = rt.block_on(meterline_rater::aggregate::aggregate(&root, &windows, &u, &l))?.len();
        eprintln!("aggregate u={u:?} l={l:?}: {:.2}s ({n})", t.elapsed().as_secs_f64());
    }
    let t = Instant::now();
    rt.block_on(meterline_rater::rate_period(&root, &cat, "2026-10".parse()?))?;
    eprintln!("rate_period: {:.2}s", t.elapsed().as_secs_f64());
    Ok(())
}
