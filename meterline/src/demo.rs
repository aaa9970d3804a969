//! `meterline demo`: the whole pipeline, end to end, on local services and synthetic data.
//!
//! Runs in its own namespace (stream `DEMO_USAGE`, buckets `demo_catalog_*`, database
//! `meterline_demo`, ledger under `--out`), which it resets first, so it can run any number of
//! times next to real data. Steps: services up → migrate → catalog → events file → publish →
//! ingest → close → summary read back from ClickHouse → one rendered invoice per customer locale.

mod catalog_gen;
mod summary;
mod usage_gen;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use meterline_ingest::IngestCounters;
use meterline_schemas::catalog::Catalog;
use meterline_schemas::period::PeriodLabel;

use crate::cli::DemoArgs;
use crate::config::Config;
use crate::progress::Progress;
use crate::{commands, connect};

/// Timing of one stage.
#[derive(Debug, Clone)]
pub struct Stage {
    pub name: &'static str,
    pub items: u64,
    pub unit: &'static str,
    pub time: Duration,
}

pub async fn run(mut cfg: Config, args: DemoArgs) -> anyhow::Result<()> {
    let label: PeriodLabel = args.period.parse()?;
    anyhow::ensure!(args.customers >= 1, "--customers must be at least 1");
    if !args.no_services {
        start_services()?;
    }
    namespace(&mut cfg, &args.out);
    std::fs::create_dir_all(&args.out).with_context(|| format!("create {}", args.out.display()))?;
    eprintln!(
        "==> resetting the demo namespace (stream {}, database {}, ledger {})",
        cfg.ingest.stream,
        cfg.clickhouse.database,
        cfg.ledger.path.display()
    );
    reset(&cfg).await?;
    meterline_schemas::clickhouse::migrate(&cfg.clickhouse).await?;

    let mut stages = Vec::new();

    eprintln!("==> catalog: {} customers", args.customers);
    let file = catalog_gen::generate(args.customers, label, args.seed);
    let catalog_path = args.out.join("catalog.yaml");
    std::fs::write(&catalog_path, serde_norway::to_string(&file)?)?;
    let (client, js) = connect::nats(&cfg).await?;
    let store = connect::catalog(&cfg, &js).await?;
    store.apply(&file).await?;
    let catalog: Catalog = store.load().await?;

    eprintln!("==> generating about {} usage events for {label}", args.events);
    let events_path = args.out.join("events.ndjson");
    let t = Instant::now();
    let truth = usage_gen::generate(&catalog, label, args.events, args.seed, &events_path)?;
    stages.push(Stage { name: "generate", items: truth.lines, unit: "events", time: t.elapsed() });

    eprintln!("==> publishing {} to stream {}", events_path.display(), cfg.ingest.stream);
    meterline_ingest::streams::ensure_streams(&js, &cfg.ingest).await?;
    let published = Arc::new(AtomicU64::new(0));
    let bar = Progress::start("publish", truth.lines, published.clone());
    let t = Instant::now();
    let published = meterline_ingest::publish::publish_file(&js, &cfg.ingest.subject_prefix, &events_path, 2048, published.clone()).await?;
    client.flush().await?;
    bar.finish(published.messages);
    stages.push(Stage { name: "publish", items: published.messages, unit: "events", time: t.elapsed() });
    let n = published.messages - published.duplicates;

    eprintln!("==> ingesting into the ledger at {}", cfg.ledger.path.display());
    let counters = Arc::new(IngestCounters::default());
    let bar = Progress::start("ingest", n, counters_messages(&counters));
    let opts = meterline_ingest::RunOptions { until_idle: true, ..Default::default() };
    let report = commands::ingest(&cfg, opts, counters.clone(), None, CancellationToken::new()).await?;
    bar.finish(report.messages);
    // Idle detection waits `idle_timeout` after the last message; report the working time.
    let ingest_time = report.elapsed.saturating_sub(Duration::from_millis(cfg.ingest.idle_timeout_ms));
    stages.push(Stage { name: "ingest", items: report.messages, unit: "events", time: ingest_time });

    eprintln!("==> closing period {label}");
    // The demo period lies in the past: its grace deadline has passed, so the close finalizes.
    let close = commands::close(&cfg, label, meterline_invoicer::CloseOptions { now: chrono::Utc::now(), finalize: false }).await?;
    stages.push(Stage { name: "rate", items: close.rows_rated, unit: "ledger rows", time: close.rate_time });
    stages.push(Stage { name: "write", items: close.invoices.len() as u64, unit: "invoices", time: close.write_time });

    let ch = connect::clickhouse(&cfg).await?;
    let invoices = meterline_invoicer::writer::list_invoices(&ch, &label.to_string()).await?;
    let dlq_count = js.get_stream(&cfg.ingest.dlq_stream).await?.info().await?.state.messages;
    let segments = meterline_ingest::segment::Ledger::open(&cfg.ledger)?.list().await?.len();
    summary::print(&summary::Summary {
        label,
        seed: args.seed,
        stages: &stages,
        truth: &truth,
        published: &published,
        ingest: &report,
        invoices: &invoices,
        catalog: &catalog,
        ledger: &cfg.ledger.path,
        segments,
        dlq_stream: &cfg.ingest.dlq_stream,
        dlq_count,
        out: &args.out,
        ch_database: &cfg.clickhouse.database,
    });
    anyhow::ensure!(
        report.valid == truth.expected_ledger_events && report.invalid == truth.invalid,
        "ledger holds {} events and {} were dead-lettered, but the generator produced {} distinct valid and {} invalid events",
        report.valid,
        report.invalid,
        truth.expected_ledger_events,
        truth.invalid
    );
    let docs = args.out.join("invoices");
    eprintln!("==> rendering one invoice per customer locale (HTML and PDF) to {}", docs.display());
    for file in commands::render_samples(&cfg, &label.to_string(), &docs).await? {
        eprintln!("    {}", file.display());
    }
    Ok(())
}

fn counters_messages(c: &Arc<IngestCounters>) -> Arc<AtomicU64> {
    // Progress follows acked messages; share the counter through a small forwarding task.
    let out = Arc::new(AtomicU64::new(0));
    let (c, o) = (c.clone(), out.clone());
    tokio::spawn(async move {
        loop {
            o.store(c.messages.load(Ordering::Relaxed), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    out
}

/// Points every setting at the demo's own namespace.
fn namespace(cfg: &mut Config, out: &Path) {
    cfg.ingest.stream = "DEMO_USAGE".into();
    cfg.ingest.subject_prefix = "demo_usage".into();
    cfg.ingest.dlq_stream = "DEMO_USAGE_DLQ".into();
    cfg.ingest.dlq_subject_prefix = "demo_usage_dlq".into();
    cfg.ingest.consumer = "demo-ingest".into();
    cfg.catalog.bucket_prefix = "demo_catalog_".into();
    cfg.billing.events_stream = "DEMO_BILLING".into();
    cfg.billing.events_subject_prefix = "demo_billing".into();
    cfg.clickhouse.database = "meterline_demo".into();
    cfg.ledger.path = out.join("ledger");
}

async fn reset(cfg: &Config) -> anyhow::Result<()> {
    let (client, js) = connect::nats(cfg).await?;
    for s in [&cfg.ingest.stream, &cfg.ingest.dlq_stream, &cfg.billing.events_stream] {
        let _ = js.delete_stream(s).await;
    }
    for kind in
        ["meters", "plans", "customers", "subscriptions", "tax_rates", "coupons", "credit_grants", "rate_tables", "fx_rates", "numbering"]
    {
        let _ = js.delete_key_value(format!("{}{kind}", cfg.catalog.bucket_prefix)).await;
    }
    client.flush().await?;
    if cfg.ledger.path.exists() {
        std::fs::remove_dir_all(&cfg.ledger.path).with_context(|| format!("remove {}", cfg.ledger.path.display()))?;
    }
    meterline_schemas::clickhouse::drop_database(&cfg.clickhouse).await.context("drop the demo database")?;
    Ok(())
}

fn start_services() -> anyhow::Result<()> {
    let script = Path::new("deploy/local/services.sh");
    if !script.exists() {
        eprintln!("==> {} not found here; assuming NATS and ClickHouse are running", script.display());
        return Ok(());
    }
    eprintln!("==> starting local services ({} up)", script.display());
    let status = std::process::Command::new("bash").arg(script).arg("up").status().context("run deploy/local/services.sh")?;
    anyhow::ensure!(status.success(), "deploy/local/services.sh up failed ({status})");
    Ok(())
}
