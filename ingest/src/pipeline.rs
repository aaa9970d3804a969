//! The consume loop: pull → validate → dedup → dead letters and segments durable → ack.
//!
//! Invariant (nothing lost): a message is acked only after every event in it is durable, either
//! in a ledger segment (fsynced) or in the dead-letter stream (JetStream publish ack). A crash
//! anywhere before the acks means redelivery; the dedup index, rebuilt from the ledger, then
//! drops the events that were already written (counted once).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, Message};
use chrono::Utc;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use meterline_schemas::catalog::Catalog;

use crate::config::IngestConfig;
use crate::dedup::DedupIndex;
use crate::dlq::{self, DeadLetter};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::segment::{Ledger, RebuildReport, build_segments};
use crate::streams::{ensure_consumer, ensure_streams};
use crate::validate::{Accepted, Refused, Validator};

/// Live counters, readable while ingest runs (progress bars, metrics).
#[derive(Debug, Default)]
pub struct IngestCounters {
    /// Messages acked.
    pub messages: AtomicU64,
    /// Events decoded (valid, invalid and duplicate).
    pub events: AtomicU64,
    /// Events written to the ledger.
    pub valid: AtomicU64,
    /// Events sent to the dead-letter stream.
    pub invalid: AtomicU64,
    /// Events dropped as duplicates of durable ones.
    pub duplicates: AtomicU64,
    /// Ledger rows written (one per event and meter).
    pub rows: AtomicU64,
    /// Segments written.
    pub segments: AtomicU64,
    /// Segment bytes written.
    pub bytes: AtomicU64,
}

/// Summary of a run.
#[derive(Debug, Clone)]
pub struct IngestReport {
    /// Dedup index rebuild at start.
    pub rebuild: RebuildReport,
    /// Messages acked.
    pub messages: u64,
    /// Events written to the ledger.
    pub valid: u64,
    /// Events dead-lettered.
    pub invalid: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Segments written.
    pub segments: u64,
    /// Time spent consuming (after the rebuild).
    pub elapsed: Duration,
}

/// Runs ingest until `shutdown` is cancelled or, with `until_idle`, until the stream is drained
/// (no message for `idle_timeout_ms`, nothing pending and nothing awaiting ack).
pub async fn run(
    js: &jetstream::Context,
    cfg: &IngestConfig,
    ledger: &Ledger,
    catalog: &Catalog,
    until_idle: bool,
    counters: Arc<IngestCounters>,
    shutdown: CancellationToken,
) -> Result<IngestReport> {
    let (usage, _dlq) = ensure_streams(js, cfg).await?;
    let mut consumer = ensure_consumer(&usage, cfg).await?;
    let mut index = DedupIndex::default();
    let rebuild = ledger.rebuild(&mut index).await?;
    tracing::info!(
        segments = rebuild.segments,
        keys = rebuild.keys,
        quarantined = rebuild.quarantined.len(),
        "dedup index rebuilt from the ledger"
    );
    let validator = Validator::new(catalog.meters_by_event_type());
    let started = Instant::now();

    let batch_size = cfg.segment_max_events.min(10_000);
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(batch_size)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .map_err(Error::nats("consume"))?;
    let idle = Duration::from_millis(cfg.idle_timeout_ms);
    loop {
        let mut batch: Vec<Message> = Vec::new();
        let mut events_in_batch = 0usize;
        let mut deadline: Option<tokio::time::Instant> = None;
        let mut stop = false;
        loop {
            let wait = match deadline {
                Some(d) => d.saturating_duration_since(tokio::time::Instant::now()),
                None => idle,
            };
            tokio::select! {
                _ = shutdown.cancelled() => { stop = true; break; }
                next = tokio::time::timeout(wait, messages.next()) => match next {
                    Ok(Some(Ok(msg))) => {
                        events_in_batch += estimate_events(&msg.payload);
                        batch.push(msg);
                        deadline.get_or_insert_with(|| tokio::time::Instant::now() + cfg.linger());
                        if events_in_batch >= cfg.segment_max_events { break; }
                    }
                    Ok(Some(Err(e))) => {
                        tracing::warn!(error = %e, "jetstream consume error; continuing");
                        if batch.is_empty() { break; }
                    }
                    Ok(None) => { stop = true; break; }
                    Err(_elapsed) => break,
                },
            }
        }
        if !batch.is_empty() {
            process(js, cfg, ledger, &validator, &mut index, &batch, &counters).await?;
        } else if until_idle && drained(&mut consumer).await? {
            break;
        }
        if stop {
            break;
        }
    }
    js_flush(js).await;
    Ok(IngestReport {
        rebuild,
        messages: counters.messages.load(Ordering::Relaxed),
        valid: counters.valid.load(Ordering::Relaxed),
        invalid: counters.invalid.load(Ordering::Relaxed),
        duplicates: counters.duplicates.load(Ordering::Relaxed),
        segments: counters.segments.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    })
}

async fn js_flush(_js: &jetstream::Context) {
    // Acks are plain publishes on the shared client; the caller flushes the client before exit.
}

/// A batch message holds many events; count array elements cheaply (upper bound).
fn estimate_events(payload: &[u8]) -> usize {
    if payload.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') { payload.windows(2).filter(|w| w == b"},").count() + 1 } else { 1 }
}

async fn drained(consumer: &mut jetstream::consumer::PullConsumer) -> Result<bool> {
    let info = consumer.info().await.map_err(Error::nats("consumer info"))?;
    Ok(info.num_pending == 0 && info.num_ack_pending == 0)
}

async fn process(
    js: &jetstream::Context,
    cfg: &IngestConfig,
    ledger: &Ledger,
    validator: &Validator,
    index: &mut DedupIndex,
    batch: &[Message],
    counters: &IngestCounters,
) -> Result<()> {
    let mut accepted: Vec<Accepted> = Vec::new();
    let mut refused: Vec<Refused> = Vec::new();
    let mut letters_at: Vec<(usize, usize, u64)> = Vec::new(); // (message idx, refused range start, seq)
    let mut first_seq = u64::MAX;
    let mut last_seq = 0;
    for (i, msg) in batch.iter().enumerate() {
        let seq = msg.info().map(|m| m.stream_sequence).unwrap_or_default();
        first_seq = first_seq.min(seq);
        last_seq = last_seq.max(seq);
        let before = refused.len();
        validator.check(&msg.payload, &mut accepted, &mut refused);
        if refused.len() > before {
            letters_at.push((i, before, seq));
        }
    }
    counters.events.fetch_add((accepted.len() + refused.len()) as u64, Ordering::Relaxed);

    // Exact dedup: against durable keys, and within this batch.
    let mut fresh: Vec<&Accepted> = Vec::with_capacity(accepted.len());
    let mut seen = std::collections::HashSet::with_capacity(accepted.len());
    let mut duplicates = 0u64;
    for a in &accepted {
        if index.contains(a.key) || !seen.insert(a.key) {
            duplicates += 1;
        } else {
            fresh.push(a);
        }
    }

    // Dead letters first (JetStream-acked), then segments (fsynced); only then ack the messages.
    let mut letters = Vec::with_capacity(refused.len());
    for (k, &(msg_idx, start, seq)) in letters_at.iter().enumerate() {
        let end = letters_at.get(k + 1).map_or(refused.len(), |n| n.1);
        for r in &refused[start..end] {
            letters.push(DeadLetter { refused: r, subject: batch[msg_idx].subject.as_str(), stream_seq: seq });
        }
    }
    for l in &letters {
        tracing::debug!(reason = %l.refused.error, seq = l.stream_seq, "event dead-lettered");
    }
    retry("dead letters", || dlq::publish(js, &cfg.dlq_subject_prefix, &letters)).await?;

    let segments = build_segments(&fresh, first_seq, last_seq, Utc::now())?;
    let mut rows = 0u64;
    for seg in &segments {
        let bytes = retry("segment write", || ledger.write(seg)).await?;
        rows += seg.batch.num_rows() as u64;
        counters.segments.fetch_add(1, Ordering::Relaxed);
        counters.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        tracing::debug!(segment = %seg.name, rows = seg.batch.num_rows(), bytes, "segment durable");
    }
    index.extend(fresh.iter().map(|a| a.key));
    if !segments.is_empty() {
        failpoint::hit("ingest.after_segment");
    }

    for msg in batch {
        msg.ack().await.map_err(|e| Error::Nats(format!("ack: {e}")))?;
    }
    counters.valid.fetch_add(fresh.len() as u64, Ordering::Relaxed);
    counters.invalid.fetch_add(refused.len() as u64, Ordering::Relaxed);
    counters.duplicates.fetch_add(duplicates, Ordering::Relaxed);
    counters.rows.fetch_add(rows, Ordering::Relaxed);
    counters.messages.fetch_add(batch.len() as u64, Ordering::Relaxed);
    Ok(())
}

/// Retries a transient failure with capped exponential backoff (nothing is acked meanwhile);
/// gives up on a permanent one.
async fn retry<T, F, Fut>(what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut delay = Duration::from_millis(100);
    for attempt in 1.. {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && attempt < 10 => {
                tracing::warn!(what, attempt, error = %e, "transient failure; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns")
}
