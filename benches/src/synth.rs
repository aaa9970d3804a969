//! A synthetic ledger for the macro-benchmarks (`bench-rate`, `bench-close`): Parquet files in the
//! ledger's own schema, written on every core, and the catalog that prices them.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use arrow::array::{ArrayRef, Decimal128Builder, FixedSizeBinaryBuilder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder};
use chrono::{TimeZone, Utc};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use meterline_schemas::catalog::{Catalog, CatalogFile};
use meterline_schemas::ledger;

/// Ledger rows per file.
pub const ROWS_PER_FILE: usize = 1_000_000;
/// The five meters every synthetic ledger has.
pub const METERS: [&str; 5] = ["api_calls", "llm_tokens", "storage_gb_hours", "active_users", "peak_connections"];

/// Writes `events` ledger rows in files of a million rows, on every core.
pub fn generate(dir: &Path, events: usize, customers: usize, extra_meters: usize) -> anyhow::Result<()> {
    let marker = dir.join(format!("generated-{events}-{customers}-{extra_meters}"));
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
                        write_file(&month, f, rows, customers, extra_meters)?;
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

/// Writes segment `f` (`seg-{f:06}.parquet`) of `rows` synthetic rows into the month directory.
pub fn write_file(month: &Path, f: usize, rows: usize, customers: usize, extra_meters: usize) -> anyhow::Result<()> {
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
        let m = rng.usize(..METERS.len() + extra_meters);
        match METERS.get(m) {
            Some(name) => meter.append_value(name),
            None => meter.append_value(format!("extra_{m}")),
        }
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
            4 => {
                value.append_value(i128::from(rng.u32(1..500)) * 1_000_000_000);
                unique.append_null();
                group.append_value("");
            }
            _ => {
                value.append_value(i128::from(rng.u32(1..1000)) * 1_000_000);
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

/// The catalog of the synthetic ledger: one plan pricing every meter, `customers` customers with one
/// subscription each; `extra_meters` SUM meters `extra_5`, `extra_6`, … beyond the five.
pub fn catalog(customers: usize, extra_meters: usize) -> anyhow::Result<Catalog> {
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
"#,
    );
    // Extra meters go in before `tax_rates`, extra prices at the end of the plan's prices.
    let mut extra_m = String::new();
    let mut extra_p = String::new();
    for k in METERS.len()..METERS.len() + extra_meters {
        extra_m.push_str(&format!("  - {{ key: extra_{k}, event_type: x{k}, aggregation: SUM, value: v }}\n"));
        extra_p.push_str(&format!("          - {{ meter: extra_{k}, model: per_unit, unit_price: \"0.001\" }}\n"));
    }
    let yaml_meters_end = yaml.find("tax_rates:").unwrap_or(0);
    yaml.insert_str(yaml_meters_end, &extra_m);
    yaml.push_str(&extra_p);
    yaml.push_str("customers:\n");
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
/// CPU time (user + system) of this process so far, in seconds: unlike wall time, it hardly
/// changes when other processes share the cores.
#[allow(clippy::float_arithmetic)] // a measurement, not money
pub fn cpu_secs() -> f64 {
    // /proc/self/stat fields 14 and 15 (utime, stime) in clock ticks; after the ")" of the
    // command name they are the 12th and 13th.
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            Some(rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    ticks as f64 / 100.0
}

/// Resets the peak RSS (`VmHWM`) to the current RSS (Linux `clear_refs` 5), so the next
/// [`peak_rss_mib`] is the peak of what runs after this call.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .map_or(0, |kib| kib / 1024)
}
