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

/// Publishes every non-empty line of `path` to `subject`; returns the number of messages.
pub async fn publish_file(js: &jetstream::Context, subject: &str, path: &Path, in_flight: usize, published: Arc<AtomicU64>) -> Result<u64> {
    let file = tokio::fs::File::open(path).await.map_err(|e| Error::Input { path: path.display().to_string(), message: e.to_string() })?;
    let mut lines = tokio::io::BufReader::with_capacity(1 << 20, file).lines();
    let mut pending = FuturesUnordered::new();
    let mut count = 0u64;
    while let Some(line) = lines.next_line().await.map_err(|e| Error::Input { path: path.display().to_string(), message: e.to_string() })? {
        if line.trim().is_empty() {
            continue;
        }
        let mut headers = HeaderMap::new();
        if let Ok(ev) = decode_event(&line) {
            headers.insert("Nats-Msg-Id", msg_id(&ev.source, &ev.id).as_str());
        }
        let ack = js
            .publish_with_headers(subject.to_owned(), headers, Bytes::from(line))
            .await
            .map_err(|e| Error::Nats(format!("publish: {e}")))?;
        pending.push(ack.into_future());
        count += 1;
        while pending.len() >= in_flight {
            if let Some(r) = pending.next().await {
                r.map_err(|e| Error::Nats(format!("publish ack: {e}")))?;
                published.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    while let Some(r) = pending.next().await {
        r.map_err(|e| Error::Nats(format!("publish ack: {e}")))?;
        published.fetch_add(1, Ordering::Relaxed);
    }
    Ok(count)
}
