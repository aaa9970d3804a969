//! `meterline ingest`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use meterline_ingest::apikeys::ApiKeyStore;
use meterline_ingest::segment::Ledger;
use meterline_ingest::{IngestCounters, IngestReport, RunOptions};

use crate::cli::IngestArgs;
use crate::config::Config;
use crate::connect;

/// How long ingest waits at shutdown for the mirror to finish the segment it is copying.
const MIRROR_STOP_GRACE: Duration = Duration::from_secs(10);

pub async fn run(cfg: &Config, args: IngestArgs) -> anyhow::Result<()> {
    let shutdown = crate::shutdown::on_interrupt("finishing the current batch and stopping");
    let grace = Some(Duration::from_secs(u64::from(cfg.billing.grace_hours) * 3600));
    let opts = RunOptions { until_idle: args.until_idle, partitions: args.partitions, grace, catalog_updates: None };
    // The mirror reads the ledger on its own schedule; acks never wait for it, and it is only
    // stopped once ingest has returned (see meterline_ingest::mirror).
    let mirror = if cfg.mirror.enabled { Some(super::mirror::spawn(cfg)?) } else { None };
    let mirror_counters = mirror.as_ref().map(|m| m.counters.clone());
    let result = ingest(cfg, opts, Arc::new(IngestCounters::default()), mirror_counters, shutdown).await;
    if let Some(m) = mirror
        && let Some(r) = m.stop(MIRROR_STOP_GRACE).await
    {
        tracing::info!(segments = r.segments, rows = r.rows, "clickhouse mirror stopped");
    }
    let report = result?;
    crate::output::emit(format!(
        "ingested {} messages: {} events to the ledger, {} duplicates dropped, {} dead-lettered, {} rerouted, {} late, {} segments ({:.2}s)",
        report.messages,
        report.valid,
        report.duplicates,
        report.invalid,
        report.rerouted,
        report.late,
        report.segments,
        report.elapsed.as_secs_f64()
    ))?;
    Ok(())
}

/// Runs ingest with the stored catalog, and its metrics endpoint when configured (with the
/// mirror's series when `mirror` is given).
pub async fn ingest(
    cfg: &Config,
    mut opts: RunOptions,
    counters: Arc<IngestCounters>,
    mirror: Option<Arc<meterline_ingest::mirror::MirrorCounters>>,
    shutdown: CancellationToken,
) -> anyhow::Result<IngestReport> {
    let (client, js) = connect::nats(cfg).await?;
    let store = connect::catalog(cfg, &js).await?;
    let catalog = store.load().await?;
    anyhow::ensure!(!catalog.meters.is_empty(), "the catalog has no meters: apply a catalog first (`meterline catalog apply <file>`)");
    // Catalog changes apply while ingest runs, from the next batch on.
    let reloader = shutdown.child_token();
    opts.catalog_updates = Some(meterline_ingest::reload::spawn(store, Arc::new(catalog.clone()), reloader.clone()));
    let ledger = Ledger::open(&cfg.ledger)?;
    let metrics = if cfg.ingest.metrics_listen.is_empty() {
        None
    } else {
        let keys = ApiKeyStore::open(&js, &cfg.catalog.bucket_prefix).await?;
        let listener = tokio::net::TcpListener::bind(cfg.ingest.metrics_listen.as_str()).await.with_context(|| {
            format!("cannot listen on ingest.metrics_listen = {} (set it to \"\" to disable metrics)", cfg.ingest.metrics_listen)
        })?;
        tracing::info!(addr = %listener.local_addr()?, "metrics on GET /metrics (API key required)");
        let app = meterline_ingest::metrics::router(counters.clone(), mirror, keys);
        let stop = shutdown.child_token();
        let server = tokio::spawn(meterline_ingest::http::serve(listener, app, stop.clone(), Duration::from_secs(1)));
        Some((stop, server))
    };
    let report = meterline_ingest::run(&js, &cfg.ingest, &ledger, &catalog, opts, counters, shutdown).await;
    reloader.cancel();
    if let Some((stop, server)) = metrics {
        stop.cancel();
        let _ = server.await;
    }
    client.flush().await?;
    Ok(report?)
}
