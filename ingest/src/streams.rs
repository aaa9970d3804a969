//! The usage stream (partitioned by subject mapping), the dead-letter stream and the durable
//! per-partition consumers.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};

use crate::config::IngestConfig;
use crate::error::{Error, Result};
use crate::partition;

/// Creates the usage and dead-letter streams when missing (file storage, limits retention).
///
/// The usage stream captures `<prefix>.events.<token>`, and its subject transform stores each
/// message as `<prefix>.p.<partition>` ([`crate::partition`]).
pub async fn ensure_streams(js: &jetstream::Context, cfg: &IngestConfig) -> Result<(stream::Stream, stream::Stream)> {
    let (subjects, src, dest) = partition::stream_subjects(&cfg.subject_prefix, cfg.partitions);
    let usage = ensure_stream(
        js,
        stream::Config {
            name: cfg.stream.clone(),
            subjects,
            subject_transform: Some(stream::SubjectTransform { source: src, destination: dest }),
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(cfg.duplicate_window_secs),
            ..Default::default()
        },
    )
    .await?;
    let dlq = ensure_stream(
        js,
        stream::Config {
            name: cfg.dlq_stream.clone(),
            subjects: vec![format!("{}.>", cfg.dlq_subject_prefix)],
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(cfg.duplicate_window_secs),
            ..Default::default()
        },
    )
    .await?;
    Ok((usage, dlq))
}

async fn ensure_stream(js: &jetstream::Context, config: stream::Config) -> Result<stream::Stream> {
    let name = config.name.clone();
    js.get_or_create_stream(config).await.map_err(|e| Error::Nats(format!("stream {name}: {e}")))
}

/// Messages a partition's consumer may have awaiting an ack. They stay unacked until their
/// segment is durable, and the pipeline holds about six batches (one filling, one waiting, two
/// being prepared, one waiting to be written, one being written) of at most `batch_max_messages`
/// messages; at least twice `segment_max_events`, as before that limit existed.
pub fn max_ack_pending(cfg: &IngestConfig) -> i64 {
    let batches = cfg.batch_max_messages.saturating_mul(6).max(cfg.segment_max_events.saturating_mul(2));
    i64::try_from(batches).unwrap_or(i64::MAX).max(1_000)
}

/// Name of a partition's durable consumer.
pub fn consumer_name(cfg: &IngestConfig, partition: u32) -> String {
    format!("{}-p{partition}", cfg.consumer)
}

/// The partition's durable pull consumer, acknowledged cumulatively (`AckPolicy::All`: one ack
/// per batch covers every message delivered before it).
///
/// Messages still awaiting ack belong to a previous owner that stopped without acking (a crash:
/// the partition lease guarantees nobody else is working on them). With cumulative acks, acking a
/// later message would ack those too, unprocessed; so the consumer is recreated to start right
/// after its ack floor, and they are delivered again at once (their events already in the ledger
/// are dropped by dedup). Everything at or below the ack floor is durable.
pub async fn ensure_consumer(usage: &stream::Stream, cfg: &IngestConfig, partition: u32) -> Result<consumer::PullConsumer> {
    let name = consumer_name(cfg, partition);
    let err = |what: &'static str| {
        let name = name.clone();
        move |e: &dyn std::fmt::Display| Error::Nats(format!("consumer {name}: {what}: {e}"))
    };
    let (max_ack_pending, ack_wait) = (max_ack_pending(cfg), Duration::from_secs(cfg.ack_wait_secs));
    let mut deliver_policy = consumer::DeliverPolicy::All;
    if let Ok(mut existing) = usage.get_consumer::<consumer::pull::Config>(&name).await {
        let info = existing.info().await.map_err(|e| err("info")(&e))?;
        if info.num_ack_pending == 0 && info.config.ack_policy == consumer::AckPolicy::All {
            if info.config.max_ack_pending == max_ack_pending && info.config.ack_wait == ack_wait {
                return Ok(existing);
            }
            // Settings changed since the consumer was made (a new `ack_wait_secs`, batch sizes):
            // both can be edited in place, keeping where the consumer is.
            let current = <consumer::pull::Config as consumer::FromConsumer>::try_from_consumer_config(info.config.clone())
                .map_err(|e| err("read config")(&e))?;
            let config = consumer::pull::Config { max_ack_pending, ack_wait, ..current };
            tracing::info!(consumer = %name, max_ack_pending, ack_wait_secs = cfg.ack_wait_secs, "updating the consumer's settings");
            return usage.update_consumer(config).await.map_err(|e| err("update")(&e));
        }
        let floor = info.ack_floor.stream_sequence;
        tracing::warn!(
            consumer = %name,
            unacked = info.num_ack_pending,
            ack_floor = floor,
            "messages delivered to a previous owner were never acked; restarting the consumer after its ack floor"
        );
        usage.delete_consumer(&name).await.map_err(|e| err("delete")(&e))?;
        if floor > 0 {
            deliver_policy = consumer::DeliverPolicy::ByStartSequence { start_sequence: floor + 1 };
        }
    }
    usage
        .create_consumer(consumer::pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: partition::consumer_filter(&cfg.subject_prefix, partition, cfg.partitions).unwrap_or_default(),
            ack_policy: consumer::AckPolicy::All,
            ack_wait,
            max_ack_pending,
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| err("create")(&e))
}
