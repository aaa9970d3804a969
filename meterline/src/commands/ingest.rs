//! `meterline ingest`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use meterline_ingest::segment::Ledger;
use meterline_ingest::{IngestCounters, IngestReport};

use crate::cli::IngestArgs;
use crate::config::Config;
use crate::connect;

/// How long ingest waits at shutdown for the mirror to finish the segment it is copying.
const MIRROR_STOP_GRACE: Duration = Duration::from_secs(10);

pub async fn run(cfg: &Config, args: IngestArgs) -> anyhow::Result<()> {
    let shutdown = crate::shutdown::on_interrupt("finishing the current batch and stopping");
    // The mirror reads the ledger on its own schedule; acks never wait for it, and it is only
    // stopped once ingest has returned (see meterline_ingest::mirror).
    let mirror = if cfg.mirror.enabled { Some(super::mirror::spawn(cfg)?) } else { None };
    let result = ingest(cfg, args.until_idle, Arc::new(IngestCounters::default()), shutdown).await;
    if let Some(m) = mirror
        && let Some(r) = m.stop(MIRROR_STOP_GRACE).await
    {
        tracing::info!(segments = r.segments, rows = r.rows, "clickhouse mirror stopped");
    }
    let report = result?;
    crate::output::emit(format!(
        "ingested {} messages: {} events to the ledger, {} duplicates dropped, {} dead-lettered, {} segments ({:.2}s)",
        report.messages,
        report.valid,
        report.duplicates,
        report.invalid,
        report.segments,
        report.elapsed.as_secs_f64()
    ))?;
    Ok(())
}

/// Runs ingest with the stored catalog.
pub async fn ingest(
    cfg: &Config,
    until_idle: bool,
    counters: Arc<IngestCounters>,
    shutdown: CancellationToken,
) -> anyhow::Result<IngestReport> {
    let (client, js) = connect::nats(cfg).await?;
    let catalog = connect::catalog(cfg, &js).await?.load().await?;
    anyhow::ensure!(!catalog.meters.is_empty(), "the catalog has no meters: apply a catalog first (`meterline catalog apply <file>`)");
    let ledger = Ledger::open(&cfg.ledger)?;
    let report = meterline_ingest::run(&js, &cfg.ingest, &ledger, &catalog, until_idle, counters, shutdown).await?;
    client.flush().await?;
    Ok(report)
}
