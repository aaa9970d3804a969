//! One load-test run: open-loop sending over NATS or HTTP, in-process ingest, and the two observers.
//!
//! **Transports.** `nats` publishes each event to JetStream directly, as a producer with a NATS
//! connection does. `http` starts Meterline's HTTP ingest in-process ([`crate::http`]) and sends
//! each event as its own `POST /v1/events`; the 202 comes after JetStream's ack and carries the
//! stream sequence, so everything below applies unchanged. Either way at most `in_flight` sends
//! await their answer; beyond that an event is counted as saturated, not sent.
//!
//! **Events per message.** With `--events-per-message N` (NATS only) the sender carries due
//! events in JetStream messages of `N` (a JSON array, as high-volume producers send them):
//! consecutive events of one partition, each message sent when its last event is due
//! ([`crate::batch`] says why this grouping keeps both measurements exact). The schedule and the
//! mix stay per event, and so do the latencies: each event's count from its *own* scheduled time,
//! so the time it waited in the producer's buffer is part of them. `--in-flight` then bounds
//! messages awaiting their ack, and a message that finds no room saturates all its events.
//!
//! **Raw ceiling.** Before the run (and before ingest starts), [`crate::raw`] measures plain
//! JetStream publishing of the same events on the same server: the most acks per second, and
//! publish → ack latency at the run's offered rate. The report puts them beside the run's figures.
//!
//! **Publish → durable.** Ingest acks a partition's messages cumulatively (`AckPolicy::All`),
//! only after their segment is fsynced (or their dead letter is acked). Every publish ack gives
//! the message's stream sequence, and its customer gives its partition; a poller reads each
//! partition consumer's ack floor every `poll_ms`, and a message is durable at the first poll
//! whose floor reaches its sequence, and with it every event it carries. This is exact about *which* events are durable, and late by
//! at most one poll interval plus one request round trip about *when* (5 ms by default).
//!
//! **Publish → current spend.** A task runs the same refresh as `meterline spend`
//! ([`meterline_invoicer::spend::Refresher`]: rate the open period, reading only the ledger
//! segments not read yet, and insert into ClickHouse `current_spend`) back to back,
//! `spend_interval_ms` apart. Each valid event is one
//! ledger row of its customer (one meter per event type), and a partition's events reach the
//! ledger in stream order, so when a refresh reports `k` ledger rows for a customer, that
//! customer's first `k` valid events (by stream sequence, then place in their message: a
//! message's events reach the ledger in one segment) are visible from the moment the insert
//! returned. Resolution: the refresh's own duration plus the interval. An event's answer can come
//! back after a refresh already showed it (over HTTP the 202 crosses the server, and ingest may
//! write a late-arriving event of a batch at once): a refresh that shows more rows than events
//! known keeps the surplus with its time, and the next answers of that customer take those times.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer};
use chrono::Utc;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use meterline_ingest::partition::{customer_token, partition_of, publish_subject};
use meterline_ingest::segment::Ledger;
use meterline_ingest::{IngestConfig, IngestCounters, LedgerConfig, RunOptions};
use meterline_schemas::clickhouse::{ClickHouse, ClickHouseConfig};
use meterline_schemas::money::RoundingMode;
use meterline_schemas::period::PeriodLabel;

use crate::batch::{Batcher, MAX_EVENTS_PER_MESSAGE};
use crate::error::{Error, Result};
use crate::http::{Accepted, HttpTarget, Refused};
use crate::mix::{Generated, Kind, Mix, MixShares, customer_key};
use crate::raw::RawOptions;
use crate::report::{Errors, IngestCounts, Latency, RunReport, histogram};
use crate::schedule::{Schedule, latency_ns};

/// How events reach JetStream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// Publish to JetStream directly.
    #[default]
    Nats,
    /// `POST /v1/events` to Meterline's HTTP ingest, started in-process; one event per request.
    Http,
}

impl Transport {
    /// `nats` or `http`, as in reports.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Nats => "nats",
            Transport::Http => "http",
        }
    }
}

/// Everything a run needs; every name is the run's own, so it runs next to real data.
#[derive(Debug, Clone)]
pub struct Options {
    /// How events are sent.
    pub transport: Transport,
    /// NATS server.
    pub nats_url: String,
    /// ClickHouse connection and the run's own database (dropped and re-created at start).
    pub clickhouse: ClickHouseConfig,
    /// The run's own ledger directory (emptied at start).
    pub ledger: PathBuf,
    /// The run's usage stream; also its subject prefix. Its dead letters go to `<stream>_dlq`,
    /// its consumers are `<stream>_ingest-p<n>`.
    pub stream: String,
    /// Offered load, events/s.
    pub rate: u64,
    /// Events per JetStream message (1: one message per event; more only over NATS).
    pub events_per_message: u64,
    /// At most this many events.
    pub events: Option<u64>,
    /// At most this long.
    pub duration: Duration,
    /// Customers (and subscriptions).
    pub customers: u32,
    /// Seed of the mix.
    pub seed: u64,
    /// Shares of duplicates, late and invalid events.
    pub shares: MixShares,
    /// Messages awaiting their JetStream ack (or HTTP answer) at most; beyond, their events count
    /// as saturated.
    pub in_flight: usize,
    /// Partitions of the stream (one ingest worker each).
    pub partitions: u32,
    /// Ingest `linger_ms`.
    pub linger_ms: u64,
    /// Ingest `segment_max_events`.
    pub segment_max_events: usize,
    /// Measure publish → current spend.
    pub spend: bool,
    /// Pause between spend refreshes, ms.
    pub spend_interval_ms: u64,
    /// Ack-floor poll interval, ms.
    pub poll_ms: u64,
    /// How long to wait after the last send for everything to be observed.
    pub drain_timeout: Duration,
    /// Show a live progress line.
    pub progress: bool,
    /// Seconds of each raw measurement before the run (0: none).
    pub raw_secs: u64,
    /// Measure the raw ceiling (most publish acks per second) before the run, besides the raw
    /// publish → ack latency at the run's rate.
    pub raw_ceiling: bool,
}

impl Options {
    /// The ingest configuration of the run.
    pub fn ingest_config(&self) -> IngestConfig {
        IngestConfig {
            stream: self.stream.clone(),
            subject_prefix: self.stream.clone(),
            dlq_stream: format!("{}_dlq", self.stream),
            dlq_subject_prefix: format!("{}_dlq", self.stream),
            consumer: format!("{}_ingest", self.stream),
            segment_max_events: self.segment_max_events,
            linger_ms: self.linger_ms,
            partitions: self.partitions,
            metrics_listen: String::new(),
            ..IngestConfig::default()
        }
    }

    /// The raw measurements' options: the run's mix and limits, its stream's configuration.
    pub fn raw_options(&self) -> RawOptions {
        let cfg = self.ingest_config();
        RawOptions {
            stream: self.stream.clone(),
            partitions: cfg.partitions,
            duplicate_window_secs: cfg.duplicate_window_secs,
            seed: self.seed,
            shares: self.shares,
            customers: self.customers,
            in_flight: self.in_flight,
            events_per_message: self.events_per_message,
            duration: Duration::from_secs(self.raw_secs),
        }
    }

    /// Checks the options.
    pub fn validate(&self) -> Result<()> {
        if !self.stream.starts_with("lt_") {
            return Err(Error::Setup(format!("--stream {:?}: load-test names start with lt_ (the run deletes them)", self.stream)));
        }
        if !self.clickhouse.database.starts_with("lt_") {
            return Err(Error::Setup(format!(
                "--database {:?}: load-test names start with lt_ (the run drops it)",
                self.clickhouse.database
            )));
        }
        if self.rate == 0 || self.in_flight == 0 || self.customers == 0 {
            return Err(Error::Setup("--rate, --in-flight and --customers must be at least 1".into()));
        }
        if !(1..=MAX_EVENTS_PER_MESSAGE).contains(&self.events_per_message) {
            return Err(Error::Setup(format!(
                "--events-per-message {}: must be between 1 and {MAX_EVENTS_PER_MESSAGE}",
                self.events_per_message
            )));
        }
        if self.events_per_message > 1 && self.transport != Transport::Nats {
            return Err(Error::Setup(format!(
                "--events-per-message {}: batch messages need --transport nats (over {} every event is its own request)",
                self.events_per_message,
                self.transport.name()
            )));
        }
        self.shares.validate().map_err(Error::Setup)?;
        self.ingest_config().validate().map_err(Error::Setup)
    }
}

/// What the observers share.
struct Tracker {
    /// Per partition: (stream sequence, place in the message) → scheduled ns, for the events of
    /// stored messages not yet seen durable.
    durable: Vec<BTreeMap<(u64, u32), u64>>,
    /// Per customer: (stream sequence, place in the message) → scheduled ns, for valid events not
    /// yet seen in spend.
    spend: Vec<BTreeMap<(u64, u32), u64>>,
    /// Per customer: ledger rows already seen in spend.
    spend_seen: Vec<u64>,
    ack: Histogram<u64>,
    durable_h: Histogram<u64>,
    spend_h: Histogram<u64>,
    sent: u64,
    /// Messages acked by JetStream (or answered 202).
    messages: u64,
    failed: u64,
    /// HTTP: failures by status (or `transport`).
    failed_by_status: BTreeMap<String, u64>,
    /// HTTP: invalid events refused with 400 (expected: they are not valid CloudEvents).
    refused_invalid: u64,
    js_duplicates: u64,
    /// Per customer: when spend showed rows of events whose ack (or 202) had not been collected
    /// yet (ns since start). Over HTTP the 202 can come back after ingest wrote the event and a
    /// refresh showed it; the event's own answer then takes the oldest of these times. Left over
    /// at the end: rows spend showed that no stored event accounts for (should stay empty).
    spend_early: Vec<VecDeque<u64>>,
}

fn lock(t: &Mutex<Tracker>) -> MutexGuard<'_, Tracker> {
    t.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn record(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record((ns / 1000).max(1));
}

/// A send awaiting its answer: the JetStream ack, or the HTTP 202 (which follows it).
struct InFlight {
    answer: BoxFuture<'static, std::result::Result<Accepted, Refused>>,
    /// The message's events, in their order in it.
    events: Vec<SentEvent>,
    _permit: OwnedSemaphorePermit,
}

/// An event of a sent message.
struct SentEvent {
    scheduled_ns: u64,
    customer: u32,
    kind: Kind,
    /// Whether spend will show it once its message is stored: a valid event, or the first copy
    /// of one that is stored (see the sender).
    in_spend: bool,
}

/// A due event waiting for its message.
struct Due {
    scheduled_ns: u64,
    g: Generated,
}

fn nanos_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Deletes the run's streams, lease bucket and ledger, and re-creates its ClickHouse database.
async fn reset(js: &jetstream::Context, opts: &Options, cfg: &IngestConfig) -> Result<()> {
    for s in [&cfg.stream, &cfg.dlq_stream] {
        let _ = js.delete_stream(s).await;
    }
    let _ = js.delete_key_value(format!("{}_leases", cfg.consumer)).await;
    if opts.ledger.exists() {
        std::fs::remove_dir_all(&opts.ledger)
            .map_err(|e| Error::Io { path: opts.ledger.display().to_string(), message: format!("remove: {e}") })?;
    }
    if opts.spend {
        meterline_schemas::clickhouse::drop_database(&opts.clickhouse).await?;
        meterline_schemas::clickhouse::migrate(&opts.clickhouse).await?;
    }
    Ok(())
}

/// Runs once at `opts.rate` and reports.
pub async fn run_once(opts: &Options) -> Result<RunReport> {
    opts.validate()?;
    let cfg = opts.ingest_config();
    let client = async_nats::ConnectOptions::new()
        .name("meterline-loadtest")
        .connect(opts.nats_url.as_str())
        .await
        .map_err(|e| Error::Nats(format!("connect {}: {e}", opts.nats_url)))?;
    let js = jetstream::new(client.clone());
    reset(&js, opts, &cfg).await?;
    let (usage, _) = meterline_ingest::streams::ensure_streams(&js, &cfg).await?;

    // The raw ceiling, on the same server, before anything of Meterline runs.
    let (raw_ceiling, raw_ack) = if opts.raw_secs > 0 {
        let o = opts.raw_options();
        let ceiling = if opts.raw_ceiling { Some(crate::raw::ceiling(&client, &o).await?) } else { None };
        (ceiling, Some(crate::raw::ack_latency(&client, &o, opts.rate).await?))
    } else {
        (None, None)
    };
    let http = match opts.transport {
        Transport::Http => Some(HttpTarget::start(&opts.nats_url, &opts.stream, &cfg.subject_prefix).await?),
        Transport::Nats => None,
    };

    let label = PeriodLabel::containing(Utc::now());
    let period_start = label.cycle(1).0;
    let catalog = crate::catalog::build(opts.customers, period_start)?;
    let ledger = Ledger::open(&LedgerConfig { path: opts.ledger.clone() })?;
    let ch = if opts.spend { Some(ClickHouse::connect(&opts.clickhouse).await?) } else { None };

    // Ingest, in-process, on the run's own stream and ledger.
    let stop = CancellationToken::new();
    let counters = Arc::new(IngestCounters::default());
    let ingest = {
        let (js, cfg, ledger, catalog, counters, stop) =
            (js.clone(), cfg.clone(), ledger.clone(), catalog.clone(), counters.clone(), stop.clone());
        tokio::spawn(async move { meterline_ingest::run(&js, &cfg, &ledger, &catalog, RunOptions::default(), counters, stop).await })
    };
    let mut consumers = Vec::new();
    for p in 0..opts.partitions {
        let name = meterline_ingest::streams::consumer_name(&cfg, p);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(c) = usage.get_consumer::<consumer::pull::Config>(&name).await {
                consumers.push(c);
                break;
            }
            if ingest.is_finished() || Instant::now() > deadline {
                stop.cancel();
                let why = match ingest.await {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".into(),
                };
                return Err(Error::Setup(format!("ingest did not create consumer {name}: {why}")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let partition_of_customer: Vec<usize> =
        (0..opts.customers).map(|c| partition_of(&customer_token(&customer_key(c)), opts.partitions) as usize).collect();
    let tracker = Arc::new(Mutex::new(Tracker {
        durable: vec![BTreeMap::new(); opts.partitions as usize],
        spend: vec![BTreeMap::new(); opts.customers as usize],
        spend_seen: vec![0; opts.customers as usize],
        ack: histogram(),
        durable_h: histogram(),
        spend_h: histogram(),
        sent: 0,
        messages: 0,
        failed: 0,
        failed_by_status: BTreeMap::new(),
        refused_invalid: 0,
        js_duplicates: 0,
        spend_early: vec![VecDeque::new(); opts.customers as usize],
    }));
    let start = Instant::now();
    let observers = CancellationToken::new();

    // Collector: publish acks (or 202 answers) → stream sequences.
    let (tx, mut rx) = mpsc::unbounded_channel::<InFlight>();
    let collector = {
        let (tracker, pc) = (tracker.clone(), partition_of_customer.clone());
        let spend = opts.spend;
        let over_http = http.is_some();
        tokio::spawn(async move {
            let mut pending = FuturesUnordered::new();
            let mut open = true;
            while open || !pending.is_empty() {
                tokio::select! {
                    next = rx.recv(), if open => match next {
                        Some(f) => {
                            let InFlight { answer, events, _permit } = f;
                            pending.push(async move { let r = answer.await; (r, events, _permit) });
                        }
                        None => open = false,
                    },
                    Some((r, events, permit)) = pending.next(), if !pending.is_empty() => {
                        drop(permit);
                        let now = nanos_since(start);
                        let mut t = lock(&tracker);
                        let t = &mut *t;
                        match r {
                            Ok(ack) => {
                                t.sent += events.len() as u64;
                                t.messages += 1;
                                for (place, e) in events.iter().enumerate() {
                                    record(&mut t.ack, latency_ns(e.scheduled_ns, now));
                                    if ack.duplicate {
                                        t.js_duplicates += 1;
                                        continue;
                                    }
                                    let key = (ack.sequence, u32::try_from(place).unwrap_or(u32::MAX));
                                    t.durable[pc[e.customer as usize]].insert(key, e.scheduled_ns);
                                    if spend && e.in_spend {
                                        let c = e.customer as usize;
                                        match t.spend_early[c].pop_front() {
                                            // Spend already showed it, before its answer came back.
                                            Some(seen_at) => record(&mut t.spend_h, latency_ns(e.scheduled_ns, seen_at)),
                                            None => {
                                                t.spend[c].insert(key, e.scheduled_ns);
                                            }
                                        }
                                    }
                                }
                            }
                            // Over HTTP an event that is not a valid CloudEvent is refused with 400
                            // (over NATS, ingest dead-letters it): expected, not an error. HTTP
                            // sends one event per request.
                            Err(Refused::Status(400)) if events.len() == 1 && events[0].kind == Kind::Invalid => t.refused_invalid += 1,
                            Err(e) => {
                                t.failed += events.len() as u64;
                                if over_http {
                                    *t.failed_by_status.entry(e.key()).or_default() += events.len() as u64;
                                }
                                tracing::debug!(error = ?e, events = events.len(), "send failed");
                            }
                        }
                    }
                }
            }
        })
    };

    // Durable observer: consumer ack floors.
    let poller = {
        let (tracker, stop) = (tracker.clone(), observers.clone());
        let every = Duration::from_millis(opts.poll_ms.max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                for (p, c) in consumers.iter_mut().enumerate() {
                    let Ok(info) = c.info().await else { continue };
                    let floor = info.ack_floor.stream_sequence;
                    let now = nanos_since(start);
                    let mut t = lock(&tracker);
                    let rest = t.durable[p].split_off(&(floor + 1, 0));
                    let done = std::mem::replace(&mut t.durable[p], rest);
                    for scheduled in done.into_values() {
                        record(&mut t.durable_h, latency_ns(scheduled, now));
                    }
                }
            }
        })
    };

    // Spend observer: back-to-back refreshes of current_spend.
    let refreshes = Arc::new(AtomicU64::new(0));
    let refresh_max_ms = Arc::new(AtomicU64::new(0));
    let spender = ch.map(|ch| {
        let (tracker, stop, catalog, root) = (tracker.clone(), observers.clone(), catalog.clone(), ledger.root().to_path_buf());
        let (refreshes, refresh_max_ms) = (refreshes.clone(), refresh_max_ms.clone());
        let every = Duration::from_millis(opts.spend_interval_ms);
        tokio::spawn(async move {
            // Incremental, as `meterline spend --every` runs: each refresh reads the new segments.
            let mut refresher = meterline_invoicer::spend::Refresher::default();
            loop {
                let t0 = Instant::now();
                match refresher.refresh(&ch, &root, &catalog, Some(label), RoundingMode::HalfEven).await {
                    Ok(rows) => {
                        let now = nanos_since(start);
                        refreshes.fetch_add(1, Ordering::Relaxed);
                        refresh_max_ms.fetch_max(u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
                        let mut t = lock(&tracker);
                        let t = &mut *t;
                        for row in rows {
                            let Some(c) = row.customer.strip_prefix("lt-cust-").and_then(|n| n.parse::<usize>().ok()) else { continue };
                            let Some(seen) = t.spend_seen.get_mut(c) else { continue };
                            while *seen < row.ledger_rows {
                                match t.spend[c].pop_first() {
                                    Some((_, scheduled)) => record(&mut t.spend_h, latency_ns(scheduled, now)),
                                    None => t.spend_early[c].push_back(now),
                                }
                                *seen += 1;
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "spend refresh failed"),
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        })
    });

    // Progress line.
    let generated = Arc::new(AtomicU64::new(0));
    let schedule = Schedule::new(opts.rate);
    let total = opts.events.unwrap_or(u64::MAX).min(schedule.events_in(opts.duration));
    let bar = opts.progress.then(|| {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
                .expect("constant template is valid")
                .progress_chars("=> "),
        );
        bar
    });
    let per_message = opts.events_per_message;
    let progress = bar.clone().map(|bar| {
        let (tracker, generated, stop) = (tracker.clone(), generated.clone(), observers.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                let t = lock(&tracker);
                let waiting: usize = t.durable.iter().map(BTreeMap::len).sum();
                let secs = start.elapsed().as_millis().max(1);
                bar.set_position(generated.load(Ordering::Relaxed));
                bar.set_message(format!(
                    "acked {} in {} msgs ({} ev/msg, {} msg/s) | durable p99 {} ms ({} waiting) | spend p99 {} ms | failed {}",
                    t.sent,
                    t.messages,
                    per_message,
                    u128::from(t.messages) * 1000 / secs,
                    t.durable_h.value_at_quantile(0.99) / 1000,
                    waiting,
                    t.spend_h.value_at_quantile(0.99) / 1000,
                    t.failed
                ));
            }
        })
    });

    // The open-loop sender. Its own context, so that `--in-flight` and not async-nats' default
    // cap (5,000 publishes awaiting their ack) is the limit that binds.
    let publisher = crate::raw::publisher(&client, opts.in_flight);
    let mut mix = Mix::new(opts.seed, opts.shares, opts.customers, &format!("loadtest/{}", Utc::now().timestamp_micros()));
    let mut sender = Sender {
        publisher,
        http: http.as_ref(),
        prefix: &cfg.subject_prefix,
        tx: &tx,
        tracker: &tracker,
        permits: Arc::new(Semaphore::new(opts.in_flight)),
        batched: opts.events_per_message > 1,
        unstored: HashSet::new(),
        saturated: 0,
    };
    // Events due are carried in messages of `events_per_message`, one open message per
    // partition; a message leaves when its last event is due (`crate::batch`).
    let mut batcher = Batcher::new(usize::try_from(opts.events_per_message).unwrap_or(usize::MAX), opts.partitions as usize);
    let mut max_lag_ns = 0u64;
    let mut i = 0u64;
    while i < total {
        let due = start + schedule.offset(i);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        let now_ns = nanos_since(start);
        let upto = schedule.due_by(now_ns).min(total);
        let wall = Utc::now();
        while i < upto {
            let scheduled_ns = schedule.offset_ns(i);
            max_lag_ns = max_lag_ns.max(now_ns.saturating_sub(scheduled_ns));
            let g = mix.next(i, wall, period_start);
            i += 1;
            let partition = partition_of_customer[g.customer as usize];
            if let Some(message) = batcher.push(partition, Due { scheduled_ns, g }) {
                sender.send(message).await;
            }
        }
        generated.store(i, Ordering::Relaxed);
    }
    // The messages not yet full, now that no more events come.
    for message in batcher.flush() {
        sender.send(message).await;
    }
    let saturated = sender.saturated;
    drop(sender);
    drop(tx);
    let _ = collector.await;
    let send_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX).max(1);

    // Drain: wait until every stored message is durable and every valid event is in spend.
    let deadline = Instant::now() + opts.drain_timeout;
    loop {
        {
            let t = lock(&tracker);
            let durable_left: usize = t.durable.iter().map(BTreeMap::len).sum();
            let spend_left: usize = t.spend.iter().map(BTreeMap::len).sum();
            if durable_left == 0 && spend_left == 0 {
                break;
            }
        }
        if Instant::now() > deadline || ingest.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    observers.cancel();
    let _ = poller.await;
    if let Some(s) = spender {
        let _ = s.await;
    }
    if let Some(p) = progress {
        let _ = p.await;
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(h) = http {
        h.stop().await;
    }
    stop.cancel();
    match ingest.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(e.into()),
        Err(e) => return Err(Error::Setup(format!("ingest task: {e}"))),
    }
    client.flush().await.map_err(|e| Error::Nats(format!("flush: {e}")))?;

    let t = lock(&tracker);
    let c = &counters;
    Ok(RunReport {
        target: opts.transport.name().into(),
        in_flight: opts.in_flight as u64,
        build: if cfg!(debug_assertions) { "debug" } else { "release" }.into(),
        offered_rate: opts.rate,
        events: i,
        sent: t.sent,
        send_ms,
        achieved_rate: t.sent * 1000 / send_ms,
        max_send_lag_us: max_lag_ns / 1000,
        events_per_message: opts.events_per_message,
        messages: t.messages,
        message_rate: t.messages * 1000 / send_ms,
        mix: mix.counts(),
        jetstream_duplicates: t.js_duplicates,
        ingest: IngestCounts {
            valid: c.valid.load(Ordering::Relaxed),
            invalid: c.invalid.load(Ordering::Relaxed),
            duplicates: c.duplicates.load(Ordering::Relaxed),
            segments: c.segments.load(Ordering::Relaxed),
        },
        publish_ack: Latency::of(&t.ack),
        refused_invalid: t.refused_invalid,
        failed_by_status: t.failed_by_status.clone(),
        raw_ceiling,
        raw_ack,
        durable: Latency::of(&t.durable_h),
        spend: Latency::of(&t.spend_h),
        spend_refreshes: refreshes.load(Ordering::Relaxed),
        spend_refresh_max_ms: refresh_max_ms.load(Ordering::Relaxed),
        errors: Errors {
            saturated,
            publish_failed: t.failed,
            durable_unobserved: t.durable.iter().map(|m| m.len() as u64).sum(),
            spend_unobserved: t.spend.iter().map(|m| m.len() as u64).sum::<u64>()
                + t.spend_early.iter().map(|q| q.len() as u64).sum::<u64>(),
        },
    })
}

/// The sending side of a run: sends a message (one event, or a batch) and hands its answer to
/// the collector.
struct Sender<'a> {
    publisher: jetstream::Context,
    http: Option<&'a HttpTarget>,
    prefix: &'a str,
    tx: &'a mpsc::UnboundedSender<InFlight>,
    tracker: &'a Mutex<Tracker>,
    permits: Arc<Semaphore>,
    /// More than one event per message.
    batched: bool,
    /// Batched: dedup keys of valid events of which no copy was handed to JetStream (their
    /// message was saturated or its publish failed). A duplicate of one of them is the first
    /// copy to be stored, and spend will show it; any other duplicate ingest drops.
    unstored: HashSet<String>,
    /// Events not sent because `in_flight` messages awaited their answer.
    saturated: u64,
}

impl Sender<'_> {
    async fn send(&mut self, message: Vec<Due>) {
        let n = message.len() as u64;
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.saturated += n;
            self.not_stored(&message);
            return;
        };
        if let Some(h) = self.http {
            // One event per request: `Options::validate` refuses more over HTTP.
            if let Some(Due { scheduled_ns, g }) = message.into_iter().next() {
                let answer = Box::pin(h.send(g.body));
                let events = vec![SentEvent { scheduled_ns, customer: g.customer, kind: g.kind, in_spend: g.kind != Kind::Invalid }];
                let _ = self.tx.send(InFlight { answer, events, _permit: permit });
            }
            return;
        }
        let mut headers = HeaderMap::new();
        let events: Vec<SentEvent> = if self.batched {
            // No `Nats-Msg-Id`: no one event's key names a batch, and it is never re-sent.
            message
                .iter()
                .map(|d| {
                    let in_spend = match (d.g.kind, &d.g.msg_id) {
                        (Kind::Invalid, _) => false,
                        (Kind::Duplicate, Some(id)) => self.unstored.remove(id),
                        _ => true,
                    };
                    SentEvent { scheduled_ns: d.scheduled_ns, customer: d.g.customer, kind: d.g.kind, in_spend }
                })
                .collect()
        } else {
            // One event: its key as `Nats-Msg-Id`, so JetStream drops a duplicate whose original it
            // stored (the ack says so). A duplicate it stores is the event's first stored copy (the
            // original was saturated, never sent; over HTTP, stored after it): spend will show it.
            if let Some(id) = &message[0].g.msg_id {
                headers.insert("Nats-Msg-Id", id.as_str());
            }
            message
                .iter()
                .map(|d| SentEvent {
                    scheduled_ns: d.scheduled_ns,
                    customer: d.g.customer,
                    kind: d.g.kind,
                    in_spend: d.g.kind != Kind::Invalid,
                })
                .collect()
        };
        // Every event of the message is in the partition of its first event's customer.
        let subject = publish_subject(self.prefix, &customer_key(message[0].g.customer));
        let body = crate::batch::body(message.iter().map(|d| &d.g.body));
        match self.publisher.publish_with_headers(subject, headers, body).await {
            Ok(ack) => {
                let answer = Box::pin(async move {
                    ack.await
                        .map(|a| Accepted { sequence: a.sequence, duplicate: a.duplicate })
                        .map_err(|e| Refused::Transport(e.to_string()))
                });
                let _ = self.tx.send(InFlight { answer, events, _permit: permit });
            }
            Err(e) => {
                tracing::debug!(error = %e, events = n, "publish failed");
                lock(self.tracker).failed += n;
                // The duplicates that would have been first copies are not stored either.
                for (d, e) in message.iter().zip(&events) {
                    if let (Kind::Duplicate, true, Some(id)) = (d.g.kind, e.in_spend, &d.g.msg_id) {
                        self.unstored.insert(id.clone());
                    }
                }
                self.not_stored(&message);
            }
        }
    }

    /// Batched: remembers the valid events of a message JetStream never got.
    fn not_stored(&mut self, message: &[Due]) {
        if !self.batched {
            return;
        }
        for d in message {
            if let (Kind::Fresh | Kind::Late, Some(id)) = (d.g.kind, &d.g.msg_id) {
                self.unstored.insert(id.clone());
            }
        }
    }
}
