//! The consume loop: pull → validate → dedup → dead letters and segments durable → ack.
//!
//! Invariant (nothing lost): a message is acked only after every event in it is durable, either
//! in a ledger segment (fsynced), in the dead-letter stream, or republished to its own partition
//! (JetStream publish acks). A crash anywhere before the ack means redelivery; the dedup index,
//! rebuilt from the ledger, then drops the events that were already written (counted once).
//!
//! Each owned partition runs its own worker: a lease ([`crate::lease`]), a consumer, a dedup
//! index and a three-stage pipeline. A receiver task fills batch k+2 while batch k+1 is
//! prepared (decoded, deduplicated and encoded on blocking threads, in parallel halves when
//! large) and batch k is made durable and acked; one cumulative ack (`AckPolicy::All`) per batch
//! follows its fsync. The write stage takes batches one at a time in stream order, so an ack
//! never covers a message whose events are not durable: everything before it was written and
//! acked first. The channels between the stages hold one batch each, so memory is bounded by
//! about five batches.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::Message;
use async_nats::jetstream;
use chrono::Utc;
use futures::future::try_join_all;
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use meterline_schemas::catalog::Catalog;
use meterline_schemas::period::PeriodLabel;

use crate::config::IngestConfig;
use crate::dedup::{DedupIndex, horizon_start};
use crate::dlq::{self, DeadLetter};
use crate::error::{Error, Result};
use crate::lease;
use crate::partition::PartitionSet;
use crate::pull::{PullOptions, PullStream};
use crate::segment::{Ledger, RebuildReport, Segment, build_segments};
use crate::streams::{ensure_consumer, ensure_streams};
use crate::validate::{AcceptedRef, CallChecks, Deadlines, Refused, Rerouted, Route, Validator};

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
    /// Events republished to the partition owning their customer.
    pub rerouted: AtomicU64,
    /// Of the events written, those that arrived after their period's deadline.
    pub late: AtomicU64,
    /// Ledger rows written (one per event and meter).
    pub rows: AtomicU64,
    /// Segments written.
    pub segments: AtomicU64,
    /// Segment bytes written.
    pub bytes: AtomicU64,
    /// Messages delivered but not yet acked, summed over partitions (consumer lag is
    /// `pending`).
    pub pending: AtomicU64,
    /// Ack latency: time from JetStream storing a message to its ack, per batch.
    pub ack_latency: crate::metrics::LatencyHistogram,
    /// Whether the ledger store is failing right now (1) or not (0).
    pub ledger_down: AtomicU64,
    /// Nanoseconds spent decoding, deduplicating and encoding batches (on worker threads).
    pub prepare_nanos: AtomicU64,
    /// Nanoseconds spent making batches durable (dead letters, segment writes and fsyncs) and
    /// acking them.
    pub write_nanos: AtomicU64,
}

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop once every owned partition is drained.
    pub until_idle: bool,
    /// Partitions to own (default: all of `ingest.partitions`).
    pub partitions: Option<PartitionSet>,
    /// The billing grace window: events arriving after their period's end plus this are counted
    /// as late (`None`: not checked). They are kept like any other; the next close bills them.
    pub grace: Option<Duration>,
    /// Newer catalogs as they are stored ([`crate::reload::spawn`]); each applies from the next
    /// batch on. `None`: the catalog given to [`run`] is used throughout.
    pub catalog_updates: Option<tokio::sync::watch::Receiver<Arc<Catalog>>>,
}

/// Summary of a run.
#[derive(Debug, Clone)]
pub struct IngestReport {
    /// Dedup index rebuild at start (summed over partitions).
    pub rebuild: RebuildReport,
    /// Messages acked.
    pub messages: u64,
    /// Events written to the ledger.
    pub valid: u64,
    /// Events dead-lettered.
    pub invalid: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Events republished to their own partition.
    pub rerouted: u64,
    /// Of the events written, those past their period's deadline (billed as adjustments).
    pub late: u64,
    /// Segments written.
    pub segments: u64,
    /// Time spent consuming (after the rebuild).
    pub elapsed: Duration,
}

/// The validator of `catalog`: its meters, call-record checks and (with a grace window) deadlines.
fn validator_for(catalog: &Catalog, grace: Option<Duration>) -> Validator {
    let validator = Validator::new(catalog.meters_by_event_type()).with_call_checks(CallChecks::new(catalog));
    match grace {
        Some(grace) => validator.with_deadlines(Deadlines::new(catalog, grace)),
        None => validator,
    }
}

/// Runs ingest until `shutdown` is cancelled or, with `until_idle`, until every owned partition
/// is drained (no message for `idle_timeout_ms`, nothing pending and nothing awaiting ack).
pub async fn run(
    js: &jetstream::Context,
    cfg: &IngestConfig,
    ledger: &Ledger,
    catalog: &Catalog,
    opts: RunOptions,
    counters: Arc<IngestCounters>,
    shutdown: CancellationToken,
) -> Result<IngestReport> {
    let (usage, _dlq) = ensure_streams(js, cfg).await?;
    let owned = opts.partitions.clone().unwrap_or_else(|| PartitionSet::all(cfg.partitions));
    owned.check(cfg.partitions).map_err(Error::Config)?;
    let leases = lease::bucket(js, &cfg.consumer, cfg.lease_secs).await?;
    let (validators, validator) = tokio::sync::watch::channel(Arc::new(validator_for(catalog, opts.grace)));
    let started = Instant::now();
    let stop_all = shutdown.child_token();
    if let Some(mut updates) = opts.catalog_updates.clone() {
        let (stop, grace) = (stop_all.clone(), opts.grace);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    changed = updates.changed() => if changed.is_err() { return },
                }
                let catalog = updates.borrow_and_update().clone();
                validators.send_replace(Arc::new(validator_for(&catalog, grace)));
            }
        });
    }
    let mut workers = tokio::task::JoinSet::new();
    for partition in owned.0.iter().copied() {
        let w = Worker {
            js: js.clone(),
            usage: usage.clone(),
            cfg: cfg.clone(),
            ledger: ledger.clone(),
            validator: validator.clone(),
            counters: counters.clone(),
            partition,
            until_idle: opts.until_idle,
        };
        let (stop, leases) = (stop_all.clone(), leases.clone());
        workers.spawn(async move { w.run(leases, stop).await });
    }
    let mut rebuild = RebuildReport::default();
    let mut first_error = None;
    while let Some(joined) = workers.join_next().await {
        match joined.map_err(|e| Error::Ledger(format!("partition worker panicked: {e}"))).and_then(|r| r) {
            Ok(r) => {
                rebuild.segments += r.segments;
                rebuild.keys += r.keys;
                rebuild.quarantined.extend(r.quarantined);
            }
            Err(e) => {
                tracing::error!(error = %e, "partition worker failed; stopping the others");
                stop_all.cancel();
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(IngestReport {
        rebuild,
        messages: counters.messages.load(Ordering::Relaxed),
        valid: counters.valid.load(Ordering::Relaxed),
        invalid: counters.invalid.load(Ordering::Relaxed),
        duplicates: counters.duplicates.load(Ordering::Relaxed),
        rerouted: counters.rerouted.load(Ordering::Relaxed),
        late: counters.late.load(Ordering::Relaxed),
        segments: counters.segments.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    })
}

struct Worker {
    js: jetstream::Context,
    usage: jetstream::stream::Stream,
    cfg: IngestConfig,
    ledger: Ledger,
    /// The validator of the catalog in use (replaced when the catalog changes).
    validator: tokio::sync::watch::Receiver<Arc<Validator>>,
    counters: Arc<IngestCounters>,
    partition: u32,
    until_idle: bool,
}

/// A batch of messages and the events estimated in it.
struct Batch {
    messages: Vec<Message>,
    /// Events in them, estimated (an upper bound): for reserving memory.
    events: usize,
}

impl Worker {
    async fn run(self, leases: jetstream::kv::Store, shutdown: CancellationToken) -> Result<RebuildReport> {
        let p = self.partition;
        let Some(lease) = lease::acquire(&leases, p, self.cfg.lease_secs, &shutdown).await? else {
            return Ok(RebuildReport::default());
        };
        let result = self.run_leased(&lease, &shutdown).await;
        lease.release().await;
        result
    }

    async fn run_leased(&self, lease: &lease::Lease, shutdown: &CancellationToken) -> Result<RebuildReport> {
        let p = self.partition;
        let mut consumer = ensure_consumer(&self.usage, &self.cfg, p).await?;
        let (ledger, horizon) = (self.ledger.clone(), self.cfg.dedup_horizon());
        let (index, rebuild) = tokio::task::spawn_blocking(move || {
            let mut index = DedupIndex::default();
            let report = ledger.rebuild_blocking(p, horizon_start(Utc::now(), horizon), &mut index);
            report.map(|r| (index, r))
        })
        .await
        .map_err(|e| Error::Ledger(format!("rebuild task: {e}")))??;
        tracing::info!(
            partition = p,
            segments = rebuild.segments,
            keys = rebuild.keys,
            months = ?index.loaded_months().iter().map(ToString::to_string).collect::<Vec<_>>(),
            key_bytes = index.heap_bytes(),
            quarantined = rebuild.quarantined.len(),
            "dedup index rebuilt from the ledger"
        );

        // Not `consumer.stream()`: async-nats 0.51 can count a pull that the server has already
        // answered as still open and then stop pulling until its fallback (`crate::pull`).
        let messages = PullStream::start(&self.js, &consumer, pull_options(&self.cfg)).await?;
        let stop = CancellationToken::new();
        let (tx, mut rx) = mpsc::channel::<Batch>(1);
        let receiver = tokio::spawn(receive(messages, tx, self.cfg.clone(), stop.clone()));

        // Two stages overlap: batch k+1 is prepared (decoded, deduplicated, encoded) while batch
        // k is made durable and acked. The write stage takes batches in order, one at a time, so
        // every cumulative ack follows the durability of everything before it.
        let (ptx, mut prx) = mpsc::channel::<Prepared>(1);
        let stages_failed = CancellationToken::new();
        //
        // Up to `PREPARING` batches are prepared at once (batch k+1 is decoded while batch k is
        // deduplicated and encoded), each on its own blocking thread; the dedup index passes
        // from each to the next in stream order (`IndexBaton`), and prepared batches go to the
        // write stage in that order.
        let prepare_stage = async {
            let (first, mut next_index) = tokio::sync::oneshot::channel();
            let _ = first.send(index);
            let mut preparing: std::collections::VecDeque<tokio::task::JoinHandle<Result<Prepared>>> = std::collections::VecDeque::new();
            let mut received_all = false;
            let mut idle_checks = tokio::time::interval(Duration::from_millis(self.cfg.idle_timeout_ms.max(50)));
            let result: Result<()> = loop {
                if received_all && preparing.is_empty() {
                    break Ok(());
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break Ok(()),
                    _ = stages_failed.cancelled() => break Ok(()),
                    _ = lease.lost.cancelled() => break Err(Error::Nats(format!("partition {p}: lease lost"))),
                    // Oldest first: the write stage takes batches in stream order.
                    done = async { preparing.front_mut().expect("guarded by the condition").await }, if !preparing.is_empty() => {
                        preparing.pop_front();
                        match done.map_err(|e| Error::Encoding(format!("batch task: {e}"))).and_then(|r| r) {
                            Ok(prepared) => {
                                if ptx.send(prepared).await.is_err() {
                                    break Ok(());
                                }
                            }
                            Err(e) => break Err(e),
                        }
                    }
                    batch = rx.recv(), if !received_all && preparing.len() < PREPARING => match batch {
                        Some(batch) => {
                            let (pass, take_next) = tokio::sync::oneshot::channel();
                            let take = std::mem::replace(&mut next_index, take_next);
                            preparing.push_back(self.prepare(IndexBaton { take, pass }, batch));
                        }
                        None => received_all = true,
                    },
                    // Drained means nothing pending and nothing awaiting ack: the write stage is
                    // idle too.
                    _ = idle_checks.tick(), if self.until_idle => {
                        if rx.is_empty() && preparing.is_empty() && drained(&mut consumer).await? {
                            break Ok(());
                        }
                    }
                }
            };
            drop(ptx);
            if result.is_err() {
                stages_failed.cancel();
            }
            result
        };
        let write_stage = async {
            let result: Result<()> = loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break Ok(()),
                    _ = stages_failed.cancelled() => break Ok(()),
                    prepared = prx.recv() => match prepared {
                        Some(prepared) => {
                            if let Err(e) = self.write(prepared, &lease.lost, shutdown).await {
                                break Err(e);
                            }
                        }
                        None => break Ok(()),
                    },
                }
            };
            if result.is_err() {
                stages_failed.cancel();
            }
            result
        };
        let (prepared, written) = tokio::join!(prepare_stage, write_stage);
        stop.cancel();
        let _ = receiver.await;
        written.and(prepared).map(|()| rebuild)
    }

    /// Decodes, deduplicates and encodes a batch on a blocking thread. The batch's fresh keys
    /// enter the returned index at once, so the next batch is deduplicated against them before
    /// they are durable: that batch is acked only after this one is durable (the write stage is
    /// in order), and if this one never becomes durable the worker stops and its index is
    /// dropped (the next owner rebuilds it from the ledger).
    fn prepare(&self, baton: IndexBaton, batch: Batch) -> tokio::task::JoinHandle<Result<Prepared>> {
        let route = Route { partition: self.partition, partitions: self.cfg.partitions };
        let (validator, ledger, counters) = (self.validator.borrow().clone(), self.ledger.clone(), self.counters.clone());
        tokio::task::spawn_blocking(move || {
            let t0 = Instant::now();
            let prepared = prepare(&validator, &ledger, route, baton, batch);
            counters.prepare_nanos.fetch_add(nanos(t0.elapsed()), Ordering::Relaxed);
            prepared
        })
    }

    /// Makes a prepared batch durable (dead letters, reroutes, segments) and acks it.
    async fn write(&self, prepared: Prepared, lease_lost: &CancellationToken, shutdown: &CancellationToken) -> Result<()> {
        let t1 = Instant::now();
        let Prepared { ack, message_count, stored, refused, rerouted, segments, duplicates, events, fresh, late } = prepared;
        let c = &self.counters;
        c.events.fetch_add(events, Ordering::Relaxed);

        // Dead letters and rerouted events first (JetStream-acked), then segments (fsynced).
        let letters: Vec<DeadLetter<'_>> =
            refused.iter().map(|(subject, seq, r)| DeadLetter { refused: r, subject: subject.as_str(), stream_seq: *seq }).collect();
        for l in &letters {
            tracing::debug!(reason = %l.refused.error, seq = l.stream_seq, "event dead-lettered");
        }
        if !letters.is_empty() {
            retry_until("dead letters", shutdown, &c.ledger_down, false, || dlq::publish(&self.js, &self.cfg.dlq_subject_prefix, &letters))
                .await?;
        }
        if !rerouted.is_empty() {
            retry_until("reroute", shutdown, &c.ledger_down, false, || reroute(&self.js, &self.cfg.subject_prefix, &rerouted)).await?;
        }
        let mut rows = 0u64;
        for seg in &segments {
            let bytes = retry_until("segment write", shutdown, &c.ledger_down, true, || self.ledger.write(seg)).await?;
            rows += seg.rows as u64;
            c.segments.fetch_add(1, Ordering::Relaxed);
            c.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
            tracing::debug!(segment = %seg.name, rows = seg.rows, bytes, "segment durable");
        }
        drop(segments);
        if rows > 0 {
            meterline_schemas::failpoint::hit("ingest.after_segment");
        }
        if lease_lost.is_cancelled() {
            return Err(Error::Nats(format!("partition {}: lease lost before the ack; not acking", self.partition)));
        }

        // One cumulative ack covers the batch: the message with the highest stream sequence.
        let ack = ack.map(|message| jetstream::Message { message, context: self.js.clone() });
        if let Some(last) = &ack {
            last.ack().await.map_err(|e| Error::Nats(format!("ack: {e}")))?;
        }
        // From the time JetStream stored each message (ns since the epoch) to now.
        let now = Utc::now().timestamp_nanos_opt().map_or(i128::MAX, i128::from);
        c.ack_latency.record_all(stored.iter().map(|&s| Duration::from_nanos(u64::try_from((now - s).max(0)).unwrap_or(u64::MAX))));
        if let Some(info) = ack.as_ref().and_then(|m| m.info().ok()) {
            c.pending.store(info.pending, Ordering::Relaxed);
        }
        c.valid.fetch_add(fresh, Ordering::Relaxed);
        c.invalid.fetch_add(refused.len() as u64, Ordering::Relaxed);
        c.duplicates.fetch_add(duplicates, Ordering::Relaxed);
        c.rerouted.fetch_add(rerouted.len() as u64, Ordering::Relaxed);
        c.late.fetch_add(late, Ordering::Relaxed);
        c.rows.fetch_add(rows, Ordering::Relaxed);
        c.messages.fetch_add(message_count, Ordering::Relaxed);
        c.write_nanos.fetch_add(nanos(t1.elapsed()), Ordering::Relaxed);
        Ok(())
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Fills batches: up to `segment_max_events` events or `batch_max_messages` messages, or whatever
/// arrived within `linger_ms` of the batch's first message.
async fn receive(mut messages: PullStream, tx: mpsc::Sender<Batch>, cfg: IngestConfig, stop: CancellationToken) {
    let idle = Duration::from_millis(cfg.idle_timeout_ms);
    // Room for as many messages as the last batch had: at one event per message a batch is 100k
    // messages of ~180 bytes, and growing the vector by doubling copied each several times.
    let mut last_len = 0;
    loop {
        let mut batch = Vec::with_capacity(last_len);
        let mut events = 0usize;
        let mut deadline: Option<tokio::time::Instant> = None;
        let mut ended = false;
        loop {
            // Messages already received are taken without a timer or a select each (at one event
            // per message those cost as much as the message); the linger deadline and `stop` (a
            // mutex) are then checked every `LINGER_CHECK_EVERY` messages. Only an empty inbox
            // waits, with both.
            let next = match messages.next().now_or_never() {
                Some(next) if (batch.len() + 1) % LINGER_CHECK_EVERY != 0 || !stop.is_cancelled() => Ok(next),
                _ => {
                    let wait = deadline.map_or(idle, |d| d.saturating_duration_since(tokio::time::Instant::now()));
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        next = tokio::time::timeout(wait, messages.next()) => next,
                    }
                }
            };
            match next {
                Ok(Some(Ok(msg))) => {
                    events += estimate_events(&msg.payload);
                    batch.push(msg);
                    let now_due = |d: tokio::time::Instant| batch.len() % LINGER_CHECK_EVERY == 0 && tokio::time::Instant::now() >= d;
                    if events >= cfg.segment_max_events || batch.len() >= cfg.batch_max_messages || deadline.is_some_and(now_due) {
                        break;
                    }
                    deadline.get_or_insert_with(|| tokio::time::Instant::now() + cfg.linger());
                }
                Ok(Some(Err(e))) => {
                    tracing::warn!(error = %e, "jetstream consume error; continuing");
                    if !batch.is_empty() {
                        break;
                    }
                }
                Ok(None) => {
                    ended = true;
                    break;
                }
                Err(_elapsed) => break,
            }
        }
        last_len = batch.len();
        if !batch.is_empty() {
            tokio::select! {
                _ = stop.cancelled() => return,
                sent = tx.send(Batch { messages: batch, events }) => if sent.is_err() { return },
            }
        }
        if ended {
            return;
        }
    }
}

/// While received messages are taken without waiting, the linger deadline and the stop token are
/// checked once per this many.
const LINGER_CHECK_EVERY: usize = 256;

/// A batch message holds many events; count array elements cheaply (upper bound).
fn estimate_events(payload: &[u8]) -> usize {
    if payload.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        // SIMD substring search: this runs over every byte received.
        memchr::memmem::find_iter(payload, b"},").count() + 1
    } else {
        1
    }
}

async fn drained(consumer: &mut jetstream::consumer::PullConsumer) -> Result<bool> {
    let info = consumer.info().await.map_err(Error::nats("consumer info"))?;
    Ok(info.num_pending == 0 && info.num_ack_pending == 0)
}

/// Batches prepared at once (the channels hold one more on each side): two overlap the decoding
/// of batch k+1 with the dedup and encoding of batch k, and each batch's single-threaded tail
/// with the next one's work (measured: 1.28M against 1.08M events/s at 100 events per message).
/// Peak RSS with 10M events and a 10M-key dedup table: 879 MiB (one: 623 MiB). Two fit in the
/// 1 GiB target since the dedup table grows by shard instead of copying itself whole.
const PREPARING: usize = 2;

/// The dedup index, handed from one batch's preparation to the next: each batch deduplicates
/// only after the one before it has inserted its keys, so keys enter the index in stream order,
/// as when batches were prepared one at a time. A batch whose preparation fails drops `pass`,
/// and the next fails too (the worker stops; the next owner rebuilds the index from the ledger).
struct IndexBaton {
    take: tokio::sync::oneshot::Receiver<DedupIndex>,
    pass: tokio::sync::oneshot::Sender<DedupIndex>,
}

/// A batch decoded, deduplicated and encoded, ready to make durable.
struct Prepared {
    /// The message with the highest stream sequence: its ack covers the batch.
    ack: Option<Message>,
    /// Messages in the batch.
    message_count: u64,
    /// When JetStream stored each message (ns since the epoch), for the ack latency.
    stored: Vec<i128>,
    /// (message subject, stream sequence, refusal).
    refused: Vec<(String, u64, Refused)>,
    rerouted: Vec<Rerouted>,
    segments: Vec<Segment>,
    duplicates: u64,
    events: u64,
    fresh: u64,
    late: u64,
}

/// Most messages one pull request asks for.
pub const PULL_MAX_MESSAGES: usize = 10_000;
/// Most bytes one pull request asks for: large batch messages (100 events are ~22 KB) would
/// otherwise make one pull hundreds of megabytes.
pub const PULL_MAX_BYTES: usize = 4 << 20;

/// The pulls of ingest's consumers (the raw benchmark pulls the same way).
pub fn pull_options(cfg: &IngestConfig) -> PullOptions {
    PullOptions {
        max_messages: cfg.segment_max_events.min(cfg.batch_max_messages).clamp(1, PULL_MAX_MESSAGES),
        max_bytes: PULL_MAX_BYTES,
        expires: Duration::from_secs(30),
        heartbeat: Duration::from_secs(5),
    }
}

/// Payload bytes above which a batch is decoded in two halves on two threads.
const PARALLEL_DECODE_BYTES: usize = 256 * 1024;

/// The CPU part of a batch (runs on a blocking thread).
fn prepare(validator: &Validator, ledger: &Ledger, route: Route, baton: IndexBaton, batch: Batch) -> Result<Prepared> {
    let msgs = &batch.messages;
    let bytes: usize = msgs.iter().map(|m| m.payload.len()).sum();
    // `room`: events to reserve for. The first half reserves for the whole batch, so the second
    // half's events are appended without growing it (a copy of the first half's, and fresh pages).
    let decode = |range: std::ops::Range<usize>, room: usize| {
        let mut out = (Vec::with_capacity(room + 1), Vec::new(), Vec::new());
        let mut refused = Vec::new();
        for i in range {
            validator.check_borrowed(&msgs[i].payload, Some(route), &mut out.0, &mut refused, &mut out.2);
            out.1.extend(refused.drain(..).map(|r| (i, r)));
        }
        out
    };
    let (accepted, refused, mut rerouted): (Vec<AcceptedRef<'_>>, Vec<(usize, Refused)>, Vec<Rerouted>) =
        if bytes >= PARALLEL_DECODE_BYTES && msgs.len() >= 2 {
            let mid = msgs.len() / 2;
            let share = batch.events.saturating_mul(msgs.len() - mid) / msgs.len();
            let (a, b) = std::thread::scope(|s| {
                let h = s.spawn(|| decode(mid..msgs.len(), share));
                let a = decode(0..mid, batch.events);
                (a, h.join())
            });
            let mut a = a;
            let b = b.map_err(|_| Error::Encoding("decode thread panicked".into()))?;
            a.0.extend(b.0);
            a.1.extend(b.1);
            a.2.extend(b.2);
            a
        } else {
            decode(0..msgs.len(), batch.events)
        };
    let events = (accepted.len() + refused.len() + rerouted.len()) as u64;

    // Months outside the in-memory horizon (late events) are loaded from the ledger first (once
    // this batch holds the index).
    let load_months = |index: &mut DedupIndex| -> Result<()> {
        let mut report = RebuildReport::default();
        let mut months: Vec<PeriodLabel> = accepted.iter().map(|a| a.month).filter(|m| index.needs_load(*m)).collect();
        months.sort();
        months.dedup();
        for m in months {
            let keys = ledger.month_keys_blocking(route.partition, m, &mut report)?;
            tracing::info!(partition = route.partition, month = %m, keys = keys.len(), "loaded an older month's dedup keys for a late event");
            index.load(m, keys);
        }
        Ok(())
    };

    let seqs: Vec<(u64, i128)> = msgs.iter().map(|m| crate::pull::stored(m).unwrap_or_default()).collect();
    let (first_seq, last_seq) = seqs.iter().filter(|s| s.0 > 0).fold((u64::MAX, 0), |(lo, hi), s| (lo.min(s.0), hi.max(s.0)));
    let ingested_at = Utc::now();

    // Exact dedup against the index and within this batch, in one insert per event: an event is
    // fresh iff its key was not in the index (durable, or in a batch ahead of this one in the
    // write stage) nor earlier in this batch ([`DedupIndex::insert_batch`]).
    //
    // Meanwhile another thread encodes the segments of every accepted event: with no duplicate
    // (the common case) those are exactly the segments of the fresh events (same rows, order,
    // names and time), and are used; with one, they are dropped and the fresh events encoded.
    let all: Vec<&AcceptedRef<'_>> = accepted.iter().collect();
    let dedup = |index: &mut DedupIndex| {
        let keys: Vec<(PeriodLabel, u128)> = accepted.iter().map(|a| (a.month, a.key)).collect();
        index.insert_batch(&keys)
    };
    //
    // The index comes from the batch before this one once it has inserted its keys, and goes on
    // to the next one as soon as this batch's keys are in: the encoding overlaps the wait.
    let with_index = |baton: IndexBaton| -> Result<Vec<bool>> {
        let mut index = baton.take.blocking_recv().map_err(|_| Error::Ledger("the batch before failed; not deduplicating".into()))?;
        load_months(&mut index)?;
        let is_fresh = dedup(&mut index);
        // The next batch is gone only when the worker is stopping.
        let _ = baton.pass.send(index);
        Ok(is_fresh)
    };
    let (is_fresh, speculative) = if all.len() >= SPECULATIVE_ENCODE_EVENTS {
        std::thread::scope(|s| {
            let encode = s.spawn(|| build_segments(route.partition, &all, first_seq, last_seq, ingested_at));
            let is_fresh = with_index(baton);
            (is_fresh, Some(encode.join()))
        })
    } else {
        (with_index(baton), None)
    };
    let is_fresh = is_fresh?;
    let fresh: Vec<&AcceptedRef<'_>> = accepted.iter().zip(&is_fresh).filter_map(|(a, f)| f.then_some(a)).collect();
    let duplicates = (accepted.len() - fresh.len()) as u64;
    let segments = match speculative {
        Some(encoded) if duplicates == 0 => encoded.map_err(|_| Error::Encoding("encode thread panicked".into()))??,
        _ => build_segments(route.partition, &fresh, first_seq, last_seq, ingested_at)?,
    };
    let fresh_count = fresh.len() as u64;
    let late = fresh.iter().filter(|a| a.late).count() as u64;
    drop(fresh);
    drop(all);
    drop(accepted);

    // The write stage needs only the message to ack and the dead letters' origins: the other
    // messages (and their payloads) are freed here, off the async threads.
    let refused: Vec<(String, u64, Refused)> =
        refused.into_iter().map(|(i, r)| (msgs[i].subject.as_str().to_owned(), seqs[i].0, r)).collect();
    let last = (0..msgs.len()).max_by_key(|&i| seqs[i].0);
    let stored: Vec<i128> = seqs.iter().filter(|s| s.0 > 0).map(|s| s.1).collect();
    let mut messages = batch.messages;
    let message_count = messages.len() as u64;
    let ack = last.map(|i| messages.swap_remove(i));
    drop(messages);
    rerouted.shrink_to_fit();
    Ok(Prepared { ack, message_count, stored, refused, rerouted, segments, duplicates, events, fresh: fresh_count, late })
}

/// Accepted events in a batch from which its segments are encoded while it is deduplicated.
const SPECULATIVE_ENCODE_EVENTS: usize = 1024;

/// Republishes events to the subject of the partition owning their customer.
async fn reroute(js: &jetstream::Context, prefix: &str, events: &[Rerouted]) -> Result<()> {
    let mut acks = Vec::with_capacity(events.len());
    for r in events {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("{:032x}", r.key).as_str());
        let ack = js
            .publish_with_headers(format!("{prefix}.events.{}", r.token), headers, r.raw.clone().into())
            .await
            .map_err(|e| Error::Nats(format!("reroute publish: {e}")))?;
        acks.push(ack.into_future());
    }
    try_join_all(acks).await.map_err(|e| Error::Nats(format!("reroute ack: {e}")))?;
    Ok(())
}

/// Retries a transient failure with capped exponential backoff until it succeeds or ingest is
/// stopped; nothing is acked meanwhile, and the receiver stops pulling once its one-batch buffer
/// is full (back-pressure). A permanent failure returns at once.
async fn retry_until<T, F, Fut>(what: &str, shutdown: &CancellationToken, down: &AtomicU64, is_ledger: bool, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut delay = Duration::from_millis(100);
    let mut since: Option<Instant> = None;
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        match f().await {
            Ok(v) => {
                if let Some(t) = since {
                    tracing::warn!(what, attempts = attempt, outage_secs = t.elapsed().as_secs_f64(), "recovered; resuming");
                    if is_ledger {
                        down.store(0, Ordering::Relaxed);
                    }
                }
                return Ok(v);
            }
            Err(e) if e.is_transient() => {
                if since.is_none() || attempt.is_power_of_two() {
                    tracing::warn!(what, attempt, error = %e, "failing; not acking, not pulling, retrying with backoff");
                }
                since.get_or_insert_with(Instant::now);
                if is_ledger {
                    down.store(1, Ordering::Relaxed);
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Err(e),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}
