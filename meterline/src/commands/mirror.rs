//! `meterline mirror [--once]`, and the mirror as a background task of `meterline ingest`.

use std::time::Duration;

use anyhow::Context as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use meterline_ingest::mirror::{Mirror, MirrorReport};
use meterline_ingest::segment::Ledger;

use crate::cli::MirrorArgs;
use crate::config::Config;
use crate::connect;
use crate::output::emit;

pub async fn run(cfg: &Config, args: MirrorArgs) -> anyhow::Result<()> {
    let ledger = Ledger::open(&cfg.ledger)?;
    if args.once {
        let ch = connect::clickhouse(cfg).await?;
        let report = Mirror::new(ledger, ch).catch_up().await.with_context(|| {
            format!("mirror into ClickHouse database {} (are its tables there? `meterline migrate`)", cfg.clickhouse.database)
        })?;
        emit(summary(&report))?;
        anyhow::ensure!(report.skipped.is_empty(), "segments that could not be mirrored: {:?}", report.skipped);
        return Ok(());
    }
    let shutdown = crate::shutdown::on_interrupt("finishing the current segment and stopping the mirror");
    let report = Mirror::connecting(ledger, cfg.clickhouse.clone()).run_until_cancelled(cfg.mirror.interval(), shutdown).await;
    emit(summary(&report))?;
    Ok(())
}

fn summary(r: &MirrorReport) -> String {
    format!(
        "mirrored {} segments, {} rows inserted ({} resumed after an interrupted pass, {} skipped)",
        r.segments,
        r.rows,
        r.resumed,
        r.skipped.len()
    )
}

/// The mirror running beside another command, with its own cancellation: the command never
/// awaits it while working, and stops it at the end with [`Background::stop`].
#[derive(Debug)]
pub struct Background {
    cancel: CancellationToken,
    handle: JoinHandle<MirrorReport>,
    /// Its live counters (for the metrics endpoint).
    pub counters: std::sync::Arc<meterline_ingest::mirror::MirrorCounters>,
}

/// Starts the mirror as a background task. It connects to ClickHouse on its own schedule, so an
/// unreachable ClickHouse never delays or fails the caller.
pub fn spawn(cfg: &Config) -> anyhow::Result<Background> {
    let mut mirror = Mirror::connecting(Ledger::open(&cfg.ledger)?, cfg.clickhouse.clone());
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    let interval = cfg.mirror.interval();
    let counters = mirror.counters();
    let handle = tokio::spawn(async move { mirror.run_until_cancelled(interval, token).await });
    Ok(Background { cancel, handle, counters })
}

impl Background {
    /// Asks the mirror to stop after its current segment and waits up to `grace`; after that it
    /// is aborted (safe: the next run finds any half-done segment, see `meterline_ingest::mirror`).
    pub async fn stop(self, grace: Duration) -> Option<MirrorReport> {
        self.cancel.cancel();
        let abort = self.handle.abort_handle();
        match tokio::time::timeout(grace, self.handle).await {
            Ok(Ok(report)) => Some(report),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "clickhouse mirror task failed");
                None
            }
            Err(_) => {
                tracing::warn!(grace_secs = grace.as_secs(), "clickhouse mirror did not stop in time; aborted (the next run resumes)");
                abort.abort();
                None
            }
        }
    }
}
