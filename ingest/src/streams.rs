//! The usage stream, the dead-letter stream and the durable ingest consumer.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};

use crate::config::IngestConfig;
use crate::error::{Error, Result};

/// Creates the usage and dead-letter streams when missing (file storage, limits retention).
pub async fn ensure_streams(js: &jetstream::Context, cfg: &IngestConfig) -> Result<(stream::Stream, stream::Stream)> {
    let usage = ensure_stream(js, &cfg.stream, &cfg.subject_prefix, cfg.duplicate_window_secs).await?;
    let dlq = ensure_stream(js, &cfg.dlq_stream, &cfg.dlq_subject_prefix, cfg.duplicate_window_secs).await?;
    Ok((usage, dlq))
}

async fn ensure_stream(js: &jetstream::Context, name: &str, subject_prefix: &str, duplicate_window_secs: u64) -> Result<stream::Stream> {
    js.get_or_create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec![format!("{subject_prefix}.>")],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(duplicate_window_secs),
        ..Default::default()
    })
    .await
    .map_err(|e| Error::Nats(format!("stream {name}: {e}")))
}

/// The durable pull consumer with explicit acks. `max_ack_pending` leaves room for two full
/// segments in flight, since messages stay unacked until their segment is durable.
pub async fn ensure_consumer(usage: &stream::Stream, cfg: &IngestConfig) -> Result<consumer::PullConsumer> {
    let max_ack_pending = i64::try_from(cfg.segment_max_events.saturating_mul(2)).unwrap_or(i64::MAX).max(1_000);
    usage
        .get_or_create_consumer(
            &cfg.consumer,
            consumer::pull::Config {
                durable_name: Some(cfg.consumer.clone()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(cfg.ack_wait_secs),
                max_ack_pending,
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| Error::Nats(format!("consumer {}: {e}", cfg.consumer)))
}
