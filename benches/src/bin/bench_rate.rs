//! `bench-rate`: the full rating of a period over a large synthetic ledger, beside the same
//! GROUP BY as a plain DataFusion query over the same files (the engine's own ceiling).
//!
//! ```text
//! bench-rate generate --events 100000000 --customers 100000 --dir .local/bench/rate
//! bench-rate run --dir .local/bench/rate            # in a fresh process, so peak RSS is the run's
//! bench-rate breakdown --dir .local/bench/rate      # each aggregate query timed on its own
//! bench-rate spend --events 10000000 --new 100000   # incremental current spend refresh
//! ```
//! `make bench-rate` does both. Output: a markdown table (events, wall time, events/s, ratio to
//! the plain query, peak RSS).

use std::path::{Path, PathBuf};

use std::time::Instant;

use anyhow::Context as _;
use arrow::array::RecordBatch;
use chrono::{TimeZone, Utc};
use datafusion::arrow::datatypes::DataType;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};

use meterline_benches::synth::{cpu_secs, generate, peak_rss_mib, reset_peak_rss};
use meterline_schemas::catalog::Catalog;

fn catalog(customers: usize) -> anyhow::Result<Catalog> {
    meterline_benches::synth::catalog(customers, 0)
}

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.windows(2).find(|w| w[0] == name).map_or_else(|| default.to_owned(), |w| w[1].clone())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(arg(&args, "--dir", ".local/bench/rate"));
    let customers: usize = arg(&args, "--customers", "100000").parse()?;
    match args.get(1).map(String::as_str) {
        Some("generate") => generate(&dir, arg(&args, "--events", "100000000").parse()?, customers, 0),
        Some("run") => run(&dir, customers, args.windows(2).find(|w| w[0] == "--json").map(|w| PathBuf::from(&w[1]))),
        Some("breakdown") => breakdown(&dir, customers),
        Some("spend") => spend(
            &PathBuf::from(arg(&args, "--dir", ".local/bench/spend")),
            arg(&args, "--events", "10000000").parse()?,
            arg(&args, "--new", "100000").parse()?,
            customers,
        ),
        _ => anyhow::bail!("usage: bench-rate generate|run|breakdown|spend [--events N] [--new N] [--customers N] [--dir DIR]"),
    }
}

#[allow(clippy::float_arithmetic, clippy::print_stdout)] // throughput figures, not money
fn run(dir: &Path, customers: usize, json: Option<PathBuf>) -> anyhow::Result<()> {
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
    // Meterline first, so its peak RSS is its own; the peak is reset before each plain query.
    let (t, c) = (Instant::now(), cpu_secs());
    let rated = rt.block_on(meterline_rater::rate_period(&root, &catalog, label))?;
    let (ours, ours_cpu) = (t.elapsed().as_secs_f64(), cpu_secs() - c);
    let lines: usize = rated.iter().map(|r| r.usage.len()).sum();
    let rss = peak_rss_mib();
    eprintln!("Meterline rating: {ours:.2}s, {ours_cpu:.2} CPU-s, {rss} MiB ({} subscriptions, {lines} usage lines)", rated.len());
    let subs = rated.len();
    drop(rated);
    reset_peak_rss();
    let (t, c) = (Instant::now(), cpu_secs());
    let groups = rt.block_on(plain(SIMPLE))?;
    let (simple, simple_cpu) = (t.elapsed().as_secs_f64(), cpu_secs() - c);
    let simple_rss = peak_rss_mib();
    eprintln!("plain GROUP BY, cheap aggregates: {simple:.2}s, {simple_cpu:.2} CPU-s, {simple_rss} MiB ({groups} groups)");
    reset_peak_rss();
    let (t, c) = (Instant::now(), cpu_secs());
    rt.block_on(plain(SAME))?;
    let (same, same_cpu) = (t.elapsed().as_secs_f64(), cpu_secs() - c);
    let same_rss = peak_rss_mib();
    eprintln!("plain GROUP BY, the rating's aggregates: {same:.2}s, {same_cpu:.2} CPU-s, {same_rss} MiB");
    let md = format!(
        "| what | events | wall time | CPU time | events/s | Meterline ÷ this (wall) | Meterline ÷ this (CPU) | peak RSS |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n\
         | plain DataFusion GROUP BY: sum, count, min, max (ceiling) | {events} | {simple:.2} s | {simple_cpu:.2} s | {:.0} | {:.2}× | {:.2}× | {simple_rss} MiB |\n\
         | plain DataFusion GROUP BY: the same aggregates as the rating | {events} | {same:.2} s | {same_cpu:.2} s | {:.0} | {:.2}× | {:.2}× | {same_rss} MiB |\n\
         | **Meterline full rating**: windows, {subs} subscriptions, {lines} priced lines | {events} | **{ours:.2} s** | {ours_cpu:.2} s | {:.0} | 1.00× | 1.00× | {rss} MiB |\n",
        events as f64 / simple,
        ours / simple,
        ours_cpu / simple_cpu,
        events as f64 / same,
        ours / same,
        ours_cpu / same_cpu,
        events as f64 / ours
    );
    print!("{md}");
    if let Some(path) = json {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let v = serde_json::json!({
            "markdown": md, "events": events, "plain_simple_secs": simple, "plain_same_secs": same,
            "rating_secs": ours, "subscriptions": subs, "lines": lines, "peak_rss_mib": rss,
            "plain_simple_cpu_secs": simple_cpu, "plain_same_cpu_secs": same_cpu, "rating_cpu_secs": ours_cpu,
            "plain_simple_peak_rss_mib": simple_rss, "plain_same_peak_rss_mib": same_rss,
        });
        std::fs::write(&path, serde_json::to_vec_pretty(&v)?)?;
    }
    Ok(())
}

/// Current spend, incrementally: a refresher reads a ledger of `events` rows (the first refresh
/// reads every segment), then one segment of `new` rows arrives and the next refresh reads only
/// it and prices every subscription again; both timed, beside a full read of the grown ledger.
/// The new segment is removed afterwards, so the generated ledger stays as generated.
#[allow(clippy::float_arithmetic, clippy::print_stdout)] // measurements, not money
fn spend(dir: &Path, events: usize, new: usize, customers: usize) -> anyhow::Result<()> {
    use meterline_invoicer::spend::{Refresher, compute};
    use meterline_schemas::money::RoundingMode;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    generate(dir, events, customers, 0)?;
    let root = dir.canonicalize()?;
    let cat = catalog(customers)?;
    let label = "2026-10".parse()?;
    let now = Utc.with_ymd_and_hms(2026, 10, 31, 0, 0, 0).single().context("date")?;
    let mut refresher = Refresher::default();
    let (t, c) = (Instant::now(), cpu_secs());
    let rows = rt.block_on(refresher.compute(&root, &cat, Some(label), now, RoundingMode::HalfEven))?;
    let (first, first_cpu, first_read) = (t.elapsed().as_secs_f64(), cpu_secs() - c, refresher.last_read);
    let month = root.join("month=2026-10");
    let f = events.div_ceil(meterline_benches::synth::ROWS_PER_FILE) + 1_000;
    let added = month.join(format!("seg-{f:06}.parquet"));
    meterline_benches::synth::write_file(&month, f, new, customers, 0)?;
    let result = (|| -> anyhow::Result<String> {
        let (t, c) = (Instant::now(), cpu_secs());
        let after = rt.block_on(refresher.compute(&root, &cat, Some(label), now, RoundingMode::HalfEven))?;
        let (inc, inc_cpu, inc_read, priced) = (t.elapsed().as_secs_f64(), cpu_secs() - c, refresher.last_read, refresher.last_changed);
        let (t, c) = (Instant::now(), cpu_secs());
        let full = rt.block_on(compute(&root, &cat, label, RoundingMode::HalfEven))?;
        let (whole, whole_cpu) = (t.elapsed().as_secs_f64(), cpu_secs() - c);
        let key = |r: &meterline_schemas::invoice::SpendRow| (r.subscription_id.clone(), r.subtotal, r.ledger_rows);
        anyhow::ensure!(after.iter().map(key).eq(full.iter().map(key)), "incremental spend differs from a full read");
        let grown: u64 = after.iter().map(|r| r.ledger_rows).sum::<u64>() - rows.iter().map(|r| r.ledger_rows).sum::<u64>();
        Ok(format!(
            "| what | segments read | wall time | CPU time |\n| --- | ---: | ---: | ---: |\n\
             | first refresh: {events} events, {} subscriptions | {first_read} | {first:.2} s | {first_cpu:.2} s |\n\
             | next refresh after {new} new events ({grown} in windows; {priced} subscriptions priced again) | {inc_read} | **{inc:.2} s** | {inc_cpu:.2} s |\n\
             | full read of the grown ledger (what each refresh cost before) | all | {whole:.2} s | {whole_cpu:.2} s |\n",
            rows.len()
        ))
    })();
    std::fs::remove_file(&added)?;
    print!("{}", result?);
    Ok(())
}

/// Times each aggregate query of the rating on its own, to see where the time goes.
#[allow(clippy::float_arithmetic)] // measurements, not money
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
        let (t, c) = (Instant::now(), cpu_secs());
        let n = rt.block_on(meterline_rater::aggregate::aggregate(&root, &windows, &u, &l))?.len();
        eprintln!("aggregate u={u:?} l={l:?}: {:.2}s, {:.2} CPU-s ({n})", t.elapsed().as_secs_f64(), cpu_secs() - c);
    }
    let (t, c) = (Instant::now(), cpu_secs());
    rt.block_on(meterline_rater::rate_period(&root, &cat, "2026-10".parse()?))?;
    eprintln!("rate_period: {:.2}s, {:.2} CPU-s", t.elapsed().as_secs_f64(), cpu_secs() - c);
    Ok(())
}
