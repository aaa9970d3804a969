//! Ingest settings (`[ingest]` and `[ledger]` in `meterline.toml`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Streams, consumer and batching.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// JetStream stream receiving usage events.
    pub stream: String,
    /// Subject prefix: the stream captures `<prefix>.>`, `events publish` sends to `<prefix>.events`.
    pub subject_prefix: String,
    /// Dead-letter stream.
    pub dlq_stream: String,
    /// Dead-letter subject prefix: dead letters go to `<prefix>.<field>`.
    pub dlq_subject_prefix: String,
    /// Durable pull consumer name.
    pub consumer: String,
    /// Ledger rows per segment at most; a segment is written when reached.
    pub segment_max_events: usize,
    /// Messages per batch (and so per segment) at most; a segment is written when reached.
    /// A batch's messages stay unacked until its segment is durable, and JetStream's work per
    /// message grows with the messages awaiting an ack: at one event per message, batches of 100k
    /// messages cost nats-server 15–20 % more CPU than batches of 20k, and ingest 10 % of its
    /// rate (docs/PERFORMANCE.md). Batches of larger messages reach `segment_max_events` first.
    #[serde(default = "default_batch_max_messages")]
    pub batch_max_messages: usize,
    /// Longest wait for a segment to fill before it is written anyway (ms).
    pub linger_ms: u64,
    /// JetStream ack wait (s): unacked messages are redelivered after this.
    pub ack_wait_secs: u64,
    /// With `--until-idle`: how long without messages counts as idle (ms).
    pub idle_timeout_ms: u64,
    /// JetStream duplicate window for `Nats-Msg-Id` (s); exact dedup does not depend on it.
    pub duplicate_window_secs: u64,
    /// Partitions of the usage stream (fixed for the stream's life; see [`crate::partition`]).
    pub partitions: u32,
    /// Partition lease lifetime (s): how long a crashed worker on another host blocks its
    /// partitions.
    pub lease_secs: u64,
    /// Dedup keys of event months newer than this many days stay in memory; older months are
    /// read from the ledger when a late event for them arrives.
    pub dedup_horizon_days: u32,
    /// Prometheus metrics endpoint of `meterline ingest` (`GET /metrics`, API key required);
    /// empty to disable.
    pub metrics_listen: String,
}

fn default_batch_max_messages() -> usize {
    20_000
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            stream: "USAGE".into(),
            subject_prefix: "usage".into(),
            dlq_stream: "USAGE_DLQ".into(),
            dlq_subject_prefix: "usage_dlq".into(),
            consumer: "ingest".into(),
            segment_max_events: 100_000,
            batch_max_messages: default_batch_max_messages(),
            linger_ms: 500,
            ack_wait_secs: 30,
            idle_timeout_ms: 1_000,
            duplicate_window_secs: 120,
            partitions: 1,
            lease_secs: 15,
            dedup_horizon_days: 45,
            metrics_listen: "127.0.0.1:9464".into(),
        }
    }
}

impl IngestConfig {
    /// Subject a producer publishes an event of `customer` to.
    pub fn publish_subject(&self, customer: &str) -> String {
        crate::partition::publish_subject(&self.subject_prefix, customer)
    }

    /// The dedup horizon.
    pub fn dedup_horizon(&self) -> Duration {
        Duration::from_secs(u64::from(self.dedup_horizon_days) * 86_400)
    }

    /// Linger as a duration.
    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms)
    }

    /// Checks values that would make ingest misbehave.
    pub fn validate(&self) -> Result<(), String> {
        for (field, v) in [("ingest.stream", &self.stream), ("ingest.dlq_stream", &self.dlq_stream), ("ingest.consumer", &self.consumer)] {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                return Err(format!("{field} = {v:?}: use letters, digits, '_' or '-'"));
            }
        }
        for (field, v) in [("ingest.subject_prefix", &self.subject_prefix), ("ingest.dlq_subject_prefix", &self.dlq_subject_prefix)] {
            if v.is_empty() || v.contains([' ', '*', '>']) || v.ends_with('.') {
                return Err(format!("{field} = {v:?}: must be a plain subject like \"usage\""));
            }
        }
        if self.subject_prefix == self.dlq_subject_prefix || self.dlq_subject_prefix.starts_with(&format!("{}.", self.subject_prefix)) {
            return Err(format!("ingest.dlq_subject_prefix = {:?} must not overlap ingest.subject_prefix", self.dlq_subject_prefix));
        }
        if self.segment_max_events == 0 {
            return Err("ingest.segment_max_events = 0: must be at least 1".into());
        }
        if self.batch_max_messages == 0 {
            return Err("ingest.batch_max_messages = 0: must be at least 1".into());
        }
        if self.partitions == 0 || self.partitions > crate::partition::MAX_PARTITIONS {
            return Err(format!("ingest.partitions = {}: must be 1..={}", self.partitions, crate::partition::MAX_PARTITIONS));
        }
        if self.lease_secs < 3 {
            return Err(format!("ingest.lease_secs = {}: must be at least 3", self.lease_secs));
        }
        if self.ack_wait_secs == 0 {
            return Err("ingest.ack_wait_secs = 0: must be at least 1".into());
        }
        Ok(())
    }
}

/// Where ledger segments are written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    /// A local directory (created when missing). Object-store URLs (`s3://…`) are planned.
    pub path: PathBuf,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig { path: PathBuf::from(".local/ledger") }
    }
}

/// The ClickHouse mirror of the ledger (`[mirror]`): see [`crate::mirror`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// Run the mirror as a background task of `meterline ingest`. `meterline mirror` runs it
    /// regardless. Run one mirror per ClickHouse database (see the module doc).
    pub enabled: bool,
    /// Pause between passes over the ledger (ms); also the first retry delay after a failure,
    /// doubled per failed attempt up to [`crate::mirror::MAX_BACKOFF`].
    pub interval_ms: u64,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        MirrorConfig { enabled: true, interval_ms: 1_000 }
    }
}

impl MirrorConfig {
    /// The interval as a duration.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    /// Checks values.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval_ms == 0 {
            return Err("mirror.interval_ms = 0: must be at least 1".into());
        }
        Ok(())
    }
}
