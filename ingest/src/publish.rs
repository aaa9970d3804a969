//! Publishing CloudEvents files (NDJSON: one event or one batch array per line) to the usage
//! stream, with up to `in_flight` publishes awaiting their JetStream ack.
//!
//! Each message gets `Nats-Msg-Id` = the event's dedup key, so JetStream drops quick producer
//! retries itself; exact dedup at ingest covers the rest. Lines that are not valid events are
//! published as they are: ingest dead-letters them with the reason, so nothing is dropped here.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::HeaderMap;
use async_nats::jetstream;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::io::AsyncBufReadExt;

use meterline_schemas::event::decode_event;
use meterline_schemas::ledger::msg_id;

use crate::error::{Error, Result};
use crate::partition::{publish_subject, unrouted_subject};

/// What a publish run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// Messages published and acked by JetStream.
    pub messages: u64,
    /// Of those, messages JetStream recognised as duplicates (same `Nats-Msg-Id` within its
    /// duplicate window) and did not store again.
    pub duplicates: u64,
}

/// Publishes every non-empty line of `path` to the usage stream: a single event to
/// `<prefix>.events.<customer token>` ([`crate::partition`]); a batch array or an undecodable line
/// to [`unrouted_subject`] (ingest reroutes or dead-letters what is in it).
pub async fn publish_file(
    js: &jetstream::Context,
    prefix: &str,
    path: &Path,
    in_flight: usize,
    published: Arc<AtomicU64>,
) -> Result<PublishReport> {
    let file = tokio::fs::File::open(path).await.map_err(|e| Error::Input { path: path.display().to_string(), message: e.to_string() })?;
    let mut lines = tokio::io::BufReader::with_capacity(1 << 20, file).lines();
    let mut pending = FuturesUnordered::new();
    let mut report = PublishReport::default();
    while let Some(line) = lines.next_line().await.map_err(|e| Error::Input { path: path.display().to_string(), message: e.to_string() })? {
        if line.trim().is_empty() {
            continue;
        }
        let mut headers = HeaderMap::new();
        let subject = match decode_event(&line) {
            Ok(ev) => {
                headers.insert("Nats-Msg-Id", msg_id(&ev.source, &ev.id).as_str());
                publish_subject(prefix, &ev.subject)
            }
            Err(_) => unrouted_subject(prefix),
        };
        let ack = js.publish_with_headers(subject, headers, Bytes::from(line)).await.map_err(|e| Error::Nats(format!("publish: {e}")))?;
        pending.push(ack.into_future());
        report.messages += 1;
        while pending.len() >= in_flight {
            if let Some(r) = pending.next().await {
                let ack = r.map_err(|e| Error::Nats(format!("publish ack: {e}")))?;
                report.duplicates += u64::from(ack.duplicate);
                published.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    while let Some(r) = pending.next().await {
        let ack = r.map_err(|e| Error::Nats(format!("publish ack: {e}")))?;
        report.duplicates += u64::from(ack.duplicate);
        published.fetch_add(1, Ordering::Relaxed);
    }
    Ok(report)
}
