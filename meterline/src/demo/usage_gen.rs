//! Synthetic usage for the demo, written as NDJSON CloudEvents, with its ground truth.
//!
//! Mix: API requests (55%), LLM completions (30%), storage readings (10%), realtime connection
//! peaks (5%), spread over the period with a skewed customer distribution (a few large
//! customers, a long tail). Mixed in: 2% exact duplicates re-sent later, 0.1% invalid events of
//! five kinds, 0.5% late events (times inside the period, sent after everything else) and 1%
//! events of the next month (they land in the next month's ledger and are not billed now).

use std::io::{BufWriter, Write};
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};

use meterline_schemas::catalog::Catalog;
use meterline_schemas::period::PeriodLabel;

/// What the generator wrote, for checking the pipeline against.
#[derive(Debug, Clone, Default)]
pub struct Truth {
    /// Lines in the file (one event each).
    pub lines: u64,
    /// Distinct valid events, all of which must reach the ledger exactly once.
    pub expected_ledger_events: u64,
    /// Exact re-sends of earlier events (alone, or wrapped in a one-event batch array).
    pub duplicates: u64,
    /// Invalid events (must reach the dead-letter stream).
    pub invalid: u64,
    /// Valid events sent after all others, dated inside the period.
    pub late: u64,
    /// Valid events dated in the next month.
    pub next_month: u64,
}

const ENDPOINTS: &[&str] = &["/v1/search", "/v1/orders", "/v1/users", "/v1/reports", "/v1/upload"];
const MODELS: &[&str] = &["small", "medium", "large"];
const REGIONS: &[&str] = &["us-east", "eu-west", "ap-northeast"];

/// Writes about `n` events for `label` to `path`.
pub fn generate(catalog: &Catalog, label: PeriodLabel, n: usize, seed: u64, path: &Path) -> anyhow::Result<Truth> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let customers: Vec<&str> = catalog.customers.keys().map(String::as_str).collect();
    anyhow::ensure!(!customers.is_empty(), "the demo catalog has no customers");
    // Zipf-like weights: customer k gets weight 1/(k+1)^0.8 (cumulative, in fixed point).
    let mut cumulative = Vec::with_capacity(customers.len());
    let mut total = 0u64;
    for k in 0..customers.len() {
        total += weight(k);
        cumulative.push(total);
    }
    let (start, end) = label.cycle(1);
    let span_ms = (end - start).num_milliseconds();
    let next_end = label.next().cycle(1).1;
    let next_span_ms = (next_end - end).num_milliseconds() / 10;

    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut truth = Truth::default();
    let mut recent: Vec<String> = Vec::with_capacity(4096);
    let mut late: Vec<String> = Vec::new();
    for i in 0..n {
        let roll = rng.u32(..10_000);
        if roll < 10 {
            writeln!(out, "{}", invalid_event(&mut rng, i, start))?;
            truth.invalid += 1;
            truth.lines += 1;
            continue;
        }
        let next_month = roll >= 9_900;
        let time = if next_month {
            end + chrono::Duration::milliseconds(rng.i64(0..next_span_ms))
        } else {
            start + chrono::Duration::milliseconds(rng.i64(0..span_ms))
        };
        let draw = rng.u64(..total);
        let customer = customers[cumulative.partition_point(|c| *c <= draw)];
        let line = event(&mut rng, i, customer, time);
        truth.expected_ledger_events += 1;
        if next_month {
            truth.next_month += 1;
        }
        if (10..60).contains(&roll) && !next_month {
            late.push(line);
            truth.late += 1;
            continue;
        }
        writeln!(out, "{line}")?;
        truth.lines += 1;
        if recent.len() < 4096 {
            recent.push(line);
        } else {
            let slot = rng.usize(..recent.len());
            recent[slot] = line;
        }
        if rng.u32(..100) < 2 {
            // Half the re-sends repeat the single message (JetStream's duplicate window drops
            // them at publish); half wrap the event in a batch array, as a producer retrying a
            // batch would, which only ingest's exact dedup can catch.
            let dup = &recent[rng.usize(..recent.len())];
            if rng.bool() {
                writeln!(out, "{dup}")?;
            } else {
                writeln!(out, "[{dup}]")?;
            }
            truth.duplicates += 1;
            truth.lines += 1;
        }
    }
    for line in &late {
        writeln!(out, "{line}")?;
        truth.lines += 1;
    }
    out.flush()?;
    Ok(truth)
}

#[allow(clippy::float_arithmetic)] // load shape only; never money
fn weight(k: usize) -> u64 {
    (1_000_000.0 / ((k + 1) as f64).powf(0.8)) as u64 + 1
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn event(rng: &mut fastrand::Rng, i: usize, customer: &str, time: DateTime<Utc>) -> String {
    let kind = rng.u32(..100);
    let (source, ty, data) = if kind < 55 {
        (
            "demo/api-gateway",
            "api.request",
            format!(r#"{{"endpoint":"{}","user_id":"u-{}","status":200}}"#, ENDPOINTS[rng.usize(..ENDPOINTS.len())], rng.u32(..250)),
        )
    } else if kind < 85 {
        ("demo/llm", "llm.completion", format!(r#"{{"model":"{}","tokens":{}}}"#, MODELS[rng.usize(..MODELS.len())], rng.u32(50..4000)))
    } else if kind < 95 {
        (
            "demo/storage",
            "storage.usage",
            format!(r#"{{"region":"{}","gb_hours":{}.{:03}}}"#, REGIONS[rng.usize(..REGIONS.len())], rng.u32(..200), rng.u32(..1000)),
        )
    } else {
        ("demo/realtime", "realtime.connections", format!(r#"{{"connections":{}}}"#, rng.u32(1..500)))
    };
    format!(
        r#"{{"specversion":"1.0","id":"evt-{i:09}","source":"{source}","type":"{ty}","subject":"{customer}","time":"{}","data":{data}}}"#,
        ts(time)
    )
}

fn invalid_event(rng: &mut fastrand::Rng, i: usize, start: DateTime<Utc>) -> String {
    let t = ts(start + chrono::Duration::hours(1));
    match rng.u32(..5) {
        0 => format!(
            r#"{{"specversion":"1.0","id":"bad-{i}","source":"demo/llm","type":"llm.completion","time":"{t}","data":{{"model":"small","tokens":10}}}}"#
        ),
        1 => format!(
            r#"{{"specversion":"1.0","id":"bad-{i}","source":"demo/llm","type":"llm.completion","subject":"cust-00001","time":"31/10/2026","data":{{"tokens":10}}}}"#
        ),
        2 => format!(
            r#"{{"specversion":"1.0","id":"bad-{i}","source":"demo/llm","type":"llm.completion","subject":"cust-00001","time":"{t}","data":{{"tokens":"lots"}}}}"#
        ),
        3 => format!(
            r#"{{"specversion":"1.0","id":"bad-{i}","source":"demo/x","type":"video.minutes","subject":"cust-00001","time":"{t}","data":{{"minutes":3}}}}"#
        ),
        _ => format!(
            r#"{{"specversion":"0.3","id":"bad-{i}","source":"demo/api-gateway","type":"api.request","subject":"cust-00001","time":"{t}","data":{{}}}}"#
        ),
    }
}
