//! `meterline events publish`.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use crate::cli::EventsCommand;
use crate::config::Config;
use crate::connect;

#[allow(clippy::float_arithmetic)] // throughput figure, not money
pub async fn run(cfg: &Config, cmd: EventsCommand) -> anyhow::Result<()> {
    let EventsCommand::Publish { file, in_flight } = cmd;
    let (client, js) = connect::nats(cfg).await?;
    meterline_ingest::streams::ensure_streams(&js, &cfg.ingest).await?;
    let t = Instant::now();
    let r = meterline_ingest::publish::publish_file(&js, &cfg.ingest.subject_prefix, &file, in_flight.max(1), Arc::new(AtomicU64::new(0)))
        .await?;
    client.flush().await?;
    let secs = t.elapsed().as_secs_f64();
    crate::output::emit(format!(
        "published {} messages from {} to {}.events.* in {secs:.2}s ({:.0} msg/s); {} were duplicates JetStream already had",
        r.messages,
        file.display(),
        cfg.ingest.subject_prefix,
        r.messages as f64 / secs.max(1e-9),
        r.duplicates
    ))?;
    Ok(())
}
