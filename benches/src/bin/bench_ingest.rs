//! `make bench-ingest`: ingest draining a pre-loaded stream into the durable ledger, beside the
//! raw JetStream consume rate of the same stream with no processing, measured in the same run.
//!
//! ```text
//! bench-ingest load --per-message 1   --events 1000000   # pre-load the stream (own process)
//! bench-ingest raw  --per-message 1                      # raw consume: pull, count, ack per batch
//! bench-ingest run  --per-message 1   --dir .local/bench/ingest/ledger-1
//! bench-ingest report                                    # the table from the JSON results
//! ```
//!
//! Each step is its own process, so each peak RSS (VmHWM) is that step's alone. The raw consumer
//! pulls as ingest does (`pipeline::pull_options` through `pull::PullStream`) and acks
//! cumulatively once per pull-sized batch, like ingest.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use meterline_ingest::segment::Ledger;
use meterline_ingest::{IngestConfig, IngestCounters, LedgerConfig, RunOptions};
use meterline_schemas::catalog::CatalogFile;

const CATALOG: &str = r#"
meters:
  - { key: tokens, event_type: llm.completion, aggregation: SUM, value: tokens, group_by: { model: model } }
"#;

const RESULTS: &str = ".local/bench/ingest";

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| default.to_owned())
}

fn config(per_message: usize) -> IngestConfig {
    IngestConfig {
        stream: format!("BENCH_INGEST_{per_message}"),
        subject_prefix: format!("bench_ingest_{per_message}"),
        dlq_stream: format!("BENCH_INGEST_{per_message}_DLQ"),
        dlq_subject_prefix: format!("bench_ingest_{per_message}_dlq"),
        consumer: format!("bench_ingest_{per_message}"),
        idle_timeout_ms: 2_000,
        metrics_listen: String::new(),
        ..IngestConfig::default()
    }
}

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .unwrap_or(0)
        / 1024
}

fn event(i: u64, customer: u64) -> String {
    let model = ["small", "medium", "large"][(i % 3) as usize];
    let (day, secs) = (1 + (i / 97) % 28, i % 86_400);
    format!(
        r#"{{"specversion":"1.0","id":"ev-{i}","source":"bench/producer","type":"llm.completion","subject":"cust-{customer:04}","time":"2026-10-{day:02}T{:02}:{:02}:{:02}Z","datacontenttype":"application/json","data":{{"tokens":{},"model":"{model}"}}}}"#,
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        i % 5000 + 1
    )
}

fn write_result(name: &str, value: &serde_json::Value) -> anyhow::Result<()> {
    std::fs::create_dir_all(RESULTS)?;
    std::fs::write(Path::new(RESULTS).join(format!("{name}.json")), serde_json::to_vec_pretty(value)?)?;
    Ok(())
}

fn read_result(name: &str) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(Path::new(RESULTS).join(format!("{name}.json"))).ok()?).ok()
}

/// Pre-loads `events` events, `per_message` per message, into a fresh stream.
async fn load(js: &jetstream::Context, cfg: &IngestConfig, per_message: usize, events: u64) -> anyhow::Result<()> {
    let _ = js.delete_stream(&cfg.stream).await;
    let _ = js.delete_stream(&cfg.dlq_stream).await;
    meterline_ingest::streams::ensure_streams(js, cfg).await?;
    let started = Instant::now();
    let mut acks = futures::stream::FuturesUnordered::new();
    let mut i = 0;
    let mut messages = 0u64;
    while i < events {
        let n = (per_message as u64).min(events - i);
        // A batch message holds one customer's events (producers batch per customer).
        let customer = messages % 1000;
        let body = if per_message == 1 {
            event(i, customer)
        } else {
            format!("[{}]", (i..i + n).map(|id| event(id, customer)).collect::<Vec<_>>().join(","))
        };
        let subject = meterline_ingest::partition::publish_subject(&cfg.subject_prefix, &format!("cust-{customer:04}"));
        acks.push(js.publish(subject, body.into()).await?.into_future());
        messages += 1;
        while acks.len() >= 2048 {
            acks.next().await.transpose()?;
        }
        i += n;
    }
    while acks.next().await.transpose()?.is_some() {}
    eprintln!("loaded {events} events in {messages} messages in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Consumes the whole stream with no processing: pull, count events, one cumulative ack per batch.
async fn raw(js: &jetstream::Context, cfg: &IngestConfig, per_message: usize) -> anyhow::Result<(u64, u64, Duration)> {
    let mut s = js.get_stream(&cfg.stream).await?;
    let total = s.info().await?.state.messages;
    let name = format!("{}_raw", cfg.consumer);
    let _ = s.delete_consumer(&name).await;
    let c = s
        .create_consumer(consumer::pull::Config {
            durable_name: Some(name.clone()),
            ack_policy: consumer::AckPolicy::All,
            max_ack_pending: 200_000,
            ..Default::default()
        })
        .await?;
    // The same pulls as ingest, through the same client code.
    let opts = meterline_ingest::pipeline::pull_options(cfg);
    let batch = opts.max_messages;
    let started = Instant::now();
    let mut msgs = meterline_ingest::pull::PullStream::start(js, &c, opts).await?;
    let (mut n, mut events) = (0u64, 0u64);
    let mut last = None;
    while n < total {
        let m = msgs.next().await.context("stream ended")??;
        // Count the events in the message the cheap way ingest estimates them.
        events += if m.payload.first() == Some(&b'[') { m.payload.windows(2).filter(|w| w == b"},").count() as u64 + 1 } else { 1 };
        n += 1;
        if n % batch as u64 == 0 {
            msgs.ackable(m).ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        } else {
            last = Some(m);
        }
    }
    if let Some(m) = last {
        msgs.ackable(m).ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let elapsed = started.elapsed();
    s.delete_consumer(&name).await?;
    let _ = per_message;
    Ok((n, events, elapsed))
}

#[allow(clippy::float_arithmetic, clippy::cast_precision_loss)] // throughput figures, not money
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Ingest's warnings (a consume error, a missed heartbeat) go to stderr; `METERLINE_LOG` as in
    // `meterline` and `loadtest`.
    let filter = std::env::var("METERLINE_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let args: Vec<String> = std::env::args().collect();
    let cmd = args.get(1).map(String::as_str).unwrap_or("report");
    let per_message: usize = arg(&args, "--per-message", "1").parse()?;
    let url = std::env::var("METERLINE__NATS__URL").unwrap_or_else(|_| "nats://127.0.0.1:14222".into());
    let cfg = config(per_message);
    match cmd {
        "load" => {
            let events: u64 = arg(&args, "--events", "1000000").parse()?;
            let client = async_nats::connect(url.as_str()).await?;
            load(&jetstream::new(client.clone()), &cfg, per_message, events).await?;
            client.flush().await?;
        }
        "raw" => {
            let client = async_nats::connect(url.as_str()).await?;
            let (messages, events, elapsed) = raw(&jetstream::new(client.clone()), &cfg, per_message).await?;
            let rate = events as f64 / elapsed.as_secs_f64();
            eprintln!(
                "raw consume: {events} events in {messages} messages in {:.2}s = {rate:.0} events/s, peak RSS {} MiB",
                elapsed.as_secs_f64(),
                peak_rss_mib()
            );
            write_result(
                &format!("raw-{per_message}"),
                &serde_json::json!({ "messages": messages, "events": events, "secs": elapsed.as_secs_f64(), "events_per_sec": rate, "peak_rss_mib": peak_rss_mib() }),
            )?;
        }
        "run" => {
            let dir = PathBuf::from(arg(&args, "--dir", &format!("{RESULTS}/ledger-{per_message}")));
            let _ = std::fs::remove_dir_all(&dir);
            let client = async_nats::connect(url.as_str()).await?;
            let js = jetstream::new(client.clone());
            // A fresh consumer each run, so the whole stream is drained again.
            let s = js.get_stream(&cfg.stream).await?;
            let _ = s.delete_consumer(&meterline_ingest::streams::consumer_name(&cfg, 0)).await;
            let _ = js.delete_key_value(format!("{}_leases", cfg.consumer)).await;
            let catalog = CatalogFile::parse(CATALOG, "yaml").map_err(|e| anyhow::anyhow!(e))?.validate(&Default::default())?;
            let ledger = Ledger::open(&LedgerConfig { path: dir.clone() })?;
            let expected_messages = s.clone().info().await?.state.messages;
            let counters = Arc::new(IngestCounters::default());
            let stop = CancellationToken::new();
            let started = Instant::now();
            let task = {
                let (js, cfg, ledger, counters, stop) = (js.clone(), cfg.clone(), ledger.clone(), counters.clone(), stop.clone());
                tokio::spawn(
                    async move { meterline_ingest::run(&js, &cfg, &ledger, &catalog, RunOptions::default(), counters, stop).await },
                )
            };
            // Done when every message is acked, i.e. all its events durable; polled every 2 ms.
            while counters.messages.load(std::sync::atomic::Ordering::Relaxed) < expected_messages {
                if task.is_finished() {
                    task.await??;
                    anyhow::bail!("ingest stopped early");
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let secs = started.elapsed().as_secs_f64();
            let stage = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e9;
            let (prepare_secs, write_secs) = (stage(&counters.prepare_nanos), stage(&counters.write_nanos));
            eprintln!("stages: prepare {prepare_secs:.2}s, write+ack {write_secs:.2}s (of {secs:.2}s wall)");
            stop.cancel();
            let report = task.await??;
            client.flush().await?;
            let events = report.valid + report.duplicates + report.invalid;
            let rate = events as f64 / secs;
            eprintln!(
                "meterline ingest: {events} events ({} to the ledger, {} segments) in {secs:.2}s = {rate:.0} events/s, peak RSS {} MiB",
                report.valid,
                report.segments,
                peak_rss_mib()
            );
            write_result(
                &format!("run-{per_message}"),
                &serde_json::json!({ "events": events, "valid": report.valid, "segments": report.segments, "secs": secs, "prepare_secs": prepare_secs, "write_secs": write_secs, "events_per_sec": rate, "peak_rss_mib": peak_rss_mib() }),
            )?;
        }
        "report" => {
            let mut md = String::from(
                "| events per message | raw JetStream consume (events/s) | Meterline ingest to durable ledger (events/s) | ratio | ingest peak RSS | target |\n\
                 | ---: | ---: | ---: | ---: | ---: | --- |\n",
            );
            let mut rows = Vec::new();
            for (pm, target) in [(1, "≥ 300k/s, ratio ≥ 0.7"), (100, "≥ 1.5M/s, ratio ≥ 0.3")] {
                let (Some(raw), Some(run)) = (read_result(&format!("raw-{pm}")), read_result(&format!("run-{pm}"))) else { continue };
                let (r, m) = (raw["events_per_sec"].as_f64().unwrap_or(0.0), run["events_per_sec"].as_f64().unwrap_or(0.0));
                md.push_str(&format!("| {pm} | {:.0} | {:.0} | {:.2} | {} MiB | {target} |\n", r, m, m / r.max(1e-9), run["peak_rss_mib"]));
                rows.push(serde_json::json!({ "per_message": pm, "raw": raw, "run": run }));
            }
            print!("{md}");
            if let Some(path) = args.windows(2).find(|w| w[0] == "--json").map(|w| PathBuf::from(&w[1])) {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&path, serde_json::to_vec_pretty(&serde_json::json!({ "markdown": md, "rows": rows }))?)?;
            }
        }
        other => anyhow::bail!("unknown command {other:?}: load | raw | run | report"),
    }
    Ok(())
}
