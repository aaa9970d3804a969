//! The raw ceiling, measured in the same process against the same NATS server, just before the
//! run (or the sweep) it is compared with.
//!
//! House rule: a benchmark reports the raw ceiling measured in the same run beside Meterline's
//! figure, as a ratio. For the load test the raw ceiling is plain JetStream publishing of the
//! same event bytes (the run's mix, seed and customers, with the same `Nats-Msg-Id` headers and
//! subjects) with the same in-flight limit, into a scratch stream `<stream>_raw` configured like
//! the usage stream (same subjects transform, file storage, duplicate window) and read by nobody:
//!
//! - [`ceiling`]: publish as fast as acks come back (at most `in_flight` awaiting) for a few
//!   seconds; acked messages per second is the most JetStream takes here, with nothing else.
//! - [`ack_latency`]: open loop at the run's offered rate; publish → ack latency from the
//!   scheduled send time, as the run measures its own.
//!
//! With `--events-per-message N` both publish the same batch messages as the run (N
//! consecutive events of one partition per message, [`crate::batch`]): the ceiling is then in
//! messages of N events per second, and publish → ack counts from each event's own scheduled
//! time, the producer's batching wait included, as the run's latencies do.
//!
//! HTTP mode has the same raw ceiling: `POST /v1/events` ends in exactly this JetStream publish
//! (one message per event, `Nats-Msg-Id` set) before its 202, so the ratio shows what the HTTP
//! layer and the rest of the pipeline cost on top of it.

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishError, publish::PublishAck};
use chrono::Utc;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};

use meterline_ingest::IngestConfig;
use meterline_ingest::partition::{customer_partition, publish_subject};

use crate::batch::Batcher;
use crate::error::{Error, Result};
use crate::mix::{Generated, Mix, MixShares, customer_key};
use crate::report::{Latency, histogram, ms, thousands};
use crate::schedule::{Schedule, latency_ns};

/// What the raw measurements publish: the run's mix and limits, and the scratch stream's name.
#[derive(Debug, Clone)]
pub struct RawOptions {
    /// The run's stream; the scratch stream is `<stream>_raw`.
    pub stream: String,
    /// Partitions of the run's stream (the scratch stream gets the same subject transform).
    pub partitions: u32,
    /// JetStream duplicate window of the run's stream, seconds.
    pub duplicate_window_secs: u64,
    /// Seed, shares and customers of the run's mix.
    pub seed: u64,
    /// Shares of the run's mix.
    pub shares: MixShares,
    /// Customers of the run's mix.
    pub customers: u32,
    /// Publishes awaiting their ack at most.
    pub in_flight: usize,
    /// Events per message (the run's `--events-per-message`).
    pub events_per_message: u64,
    /// How long each measurement publishes.
    pub duration: Duration,
}

/// Most JetStream publish acks per second, nothing else running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawCeiling {
    /// Publishes awaiting their ack at most (the run's `--in-flight`).
    pub in_flight: u64,
    /// Mean event size, bytes.
    pub mean_event_bytes: u64,
    /// Messages acked.
    pub acked: u64,
    /// Publishes that failed.
    pub failed: u64,
    /// From the first publish to the last ack, ms.
    pub elapsed_ms: u64,
    /// Acked messages per second: the ceiling.
    pub rate: u64,
    /// Events per message (1 in reports from before `--events-per-message`).
    #[serde(default = "one")]
    pub events_per_message: u64,
}

fn one() -> u64 {
    1
}

/// Raw publish → ack latency at an offered rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawAck {
    /// Offered rate, events/s (the run's).
    pub offered_rate: u64,
    /// Events acked (in their messages).
    pub acked: u64,
    /// Events not sent because `in_flight` publishes were awaiting their ack.
    pub saturated: u64,
    /// Publishes that failed.
    pub failed: u64,
    /// Scheduled send → JetStream publish ack.
    pub ack: Latency,
}

/// `a / b` with two decimals, rounded half up (`"n/a"` when `b` is 0). Integer arithmetic: the
/// inputs are counts per second and microseconds, far below `u64::MAX / 100`.
pub fn ratio(a: u64, b: u64) -> String {
    if b == 0 {
        return "n/a".into();
    }
    let hundredths = (u128::from(a) * 100 + u128::from(b) / 2) / u128::from(b);
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

impl RawCeiling {
    /// The ceiling in events per second: acked messages per second times events per message.
    pub fn event_rate(&self) -> u64 {
        self.rate.saturating_mul(self.events_per_message.max(1))
    }

    /// One markdown line: the ceiling, and `rate` (Meterline's highest sustainable rate) beside it.
    pub fn markdown(&self, meterline_rate: Option<u64>) -> String {
        let per_message = if self.events_per_message > 1 {
            format!(" = {} ev/s at {} events per message", thousands(self.event_rate()), thousands(self.events_per_message))
        } else {
            String::new()
        };
        let mut s = format!(
            "raw ceiling, measured in this run: JetStream publish of the same events (mean {} B) with {} acks in flight into a scratch stream with no consumer: **{} msg/s**{per_message} ({} acked in {} ms, {} failed)",
            self.mean_event_bytes,
            thousands(self.in_flight),
            thousands(self.rate),
            thousands(self.acked),
            thousands(self.elapsed_ms),
            self.failed
        );
        if let Some(r) = meterline_rate {
            s.push_str(&format!(
                "; Meterline's highest sustainable rate {} ev/s = **{} × the raw ceiling**",
                thousands(r),
                ratio(r, self.event_rate())
            ));
        }
        s.push('\n');
        s
    }
}

impl RawAck {
    /// One markdown line: raw publish → ack percentiles at the offered rate, and Meterline's p99
    /// publish → durable beside it.
    pub fn markdown(&self, durable_p99_us: u64) -> String {
        format!(
            "raw publish → ack at {} ev/s, measured in this run (same events, scratch stream, no consumer): p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms ({} acked, {} saturated, {} failed); Meterline's p99 publish → durable {} ms = **{} × raw p99**\n",
            thousands(self.offered_rate),
            ms(self.ack.p50_us),
            ms(self.ack.p99_us),
            ms(self.ack.p999_us),
            ms(self.ack.max_us),
            thousands(self.acked),
            self.saturated,
            self.failed,
            ms(durable_p99_us),
            ratio(durable_p99_us, self.ack.p99_us)
        )
    }
}

/// The scratch stream: the usage stream's configuration under `<stream>_raw` (its dead-letter
/// twin is created by the same call and removed with it; nothing reads either).
struct Scratch {
    js: jetstream::Context,
    cfg: IngestConfig,
}

/// A JetStream context whose own cap on publishes awaiting their ack (async-nats: 5,000 by
/// default, beyond which `publish` waits) is `in_flight`, so the limit that binds is the run's.
pub fn publisher(client: &async_nats::Client, in_flight: usize) -> jetstream::Context {
    jetstream::ContextBuilder::new().max_ack_inflight(in_flight.max(1)).build(client.clone())
}

impl Scratch {
    async fn create(client: &async_nats::Client, o: &RawOptions) -> Result<Scratch> {
        let js = publisher(client, o.in_flight);
        let name = format!("{}_raw", o.stream);
        let cfg = IngestConfig {
            stream: name.clone(),
            subject_prefix: name.clone(),
            dlq_stream: format!("{name}_dlq"),
            dlq_subject_prefix: format!("{name}_dlq"),
            partitions: o.partitions,
            duplicate_window_secs: o.duplicate_window_secs,
            ..IngestConfig::default()
        };
        let s = Scratch { js, cfg };
        s.delete().await;
        meterline_ingest::streams::ensure_streams(&s.js, &s.cfg).await?;
        Ok(s)
    }

    async fn delete(&self) {
        for s in [&self.cfg.stream, &self.cfg.dlq_stream] {
            let _ = self.js.delete_stream(s).await;
        }
    }

    /// Publishes a message as the run does: one event with its `Nats-Msg-Id`, or a batch (all of
    /// one partition) as a JSON array without one.
    async fn publish(&self, message: &[Generated]) -> std::result::Result<jetstream::context::PublishAckFuture, PublishError> {
        let mut headers = HeaderMap::new();
        if let [g] = message
            && let Some(id) = &g.msg_id
        {
            headers.insert("Nats-Msg-Id", id.as_str());
        }
        let customer = message.first().map_or(0, |g| g.customer);
        let body = crate::batch::body(message.iter().map(|g| &g.body));
        self.js.publish_with_headers(publish_subject(&self.cfg.subject_prefix, &customer_key(customer)), headers, body).await
    }
}

/// Messages of the run's size, one open message per partition ([`crate::batch`]).
fn batcher<T>(o: &RawOptions) -> (Batcher<T>, Vec<usize>) {
    let per_message = usize::try_from(o.events_per_message).unwrap_or(usize::MAX);
    let partition_of_customer =
        (0..o.customers.max(1)).map(|c| customer_partition(&customer_key(c), o.partitions.max(1)) as usize).collect();
    (Batcher::new(per_message, o.partitions.max(1) as usize), partition_of_customer)
}

fn mix(o: &RawOptions) -> Mix {
    Mix::new(o.seed, o.shares, o.customers, &format!("loadtest-raw/{}", Utc::now().timestamp_micros()))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Connects to the run's server and measures [`ceiling`] with the run's options.
pub async fn measure_ceiling(opts: &crate::run::Options) -> Result<RawCeiling> {
    let client = async_nats::ConnectOptions::new()
        .name("meterline-loadtest-raw")
        .connect(opts.nats_url.as_str())
        .await
        .map_err(|e| Error::Nats(format!("connect {}: {e}", opts.nats_url)))?;
    let r = ceiling(&client, &opts.raw_options()).await;
    let _ = client.flush().await;
    r
}

/// Publishes as fast as acks allow (at most `in_flight` awaiting) for `duration`.
pub async fn ceiling(client: &async_nats::Client, o: &RawOptions) -> Result<RawCeiling> {
    let scratch = Scratch::create(client, o).await?;
    let mut mix = mix(o);
    let (mut batcher, partition_of_customer) = batcher(o);
    let period_start = Utc::now();
    let mut pending = FuturesUnordered::new();
    let (mut acked, mut failed, mut bytes, mut i) = (0u64, 0u64, 0u64, 0u64);
    let start = Instant::now();
    let end = start + o.duration;
    loop {
        while pending.len() < o.in_flight.max(1) && Instant::now() < end {
            let g = mix.next(i, Utc::now(), period_start);
            i += 1;
            bytes += g.body.len() as u64;
            let Some(message) = batcher.push(partition_of_customer[g.customer as usize], g) else { continue };
            match scratch.publish(&message).await {
                Ok(ack) => pending.push(ack.into_future()),
                Err(e) => {
                    tracing::debug!(error = %e, "raw publish failed");
                    failed += 1;
                }
            }
        }
        match pending.next().await {
            Some(Ok(_)) => acked += 1,
            Some(Err(_)) => failed += 1,
            None => break,
        }
    }
    let elapsed_ms = millis(start.elapsed()).max(1);
    scratch.delete().await;
    if acked == 0 {
        return Err(Error::Nats(format!("raw ceiling: no publish to {}_raw was acked ({failed} failed)", o.stream)));
    }
    Ok(RawCeiling {
        in_flight: o.in_flight as u64,
        mean_event_bytes: bytes / i.max(1),
        acked,
        failed,
        elapsed_ms,
        rate: acked * 1000 / elapsed_ms,
        events_per_message: o.events_per_message.max(1),
    })
}

/// Open loop at `rate` for `duration`: publish → ack latency from the scheduled send time.
pub async fn ack_latency(client: &async_nats::Client, o: &RawOptions, rate: u64) -> Result<RawAck> {
    type Answer = (std::result::Result<PublishAck, PublishError>, Vec<u64>);
    let scratch = Scratch::create(client, o).await?;
    let mut mix = mix(o);
    let (mut batcher, partition_of_customer) = batcher::<(u64, Generated)>(o);
    let period_start = Utc::now();
    let schedule = Schedule::new(rate.max(1));
    let total = schedule.events_in(o.duration);
    let mut pending: FuturesUnordered<futures::future::BoxFuture<'static, Answer>> = FuturesUnordered::new();
    let mut h = histogram();
    let mut r = RawAck { offered_rate: rate, ..Default::default() };
    let start = Instant::now();
    let mut i = 0u64;
    let mut flushed = false;
    while i < total || !flushed || !pending.is_empty() {
        let due = start + schedule.offset(i.min(total));
        // Due messages: full ones as their last event falls due, the rest after the last event.
        let mut ready = Vec::new();
        tokio::select! {
            Some((answer, scheduled)) = pending.next(), if !pending.is_empty() => match answer {
                Ok(_) => {
                    r.acked += scheduled.len() as u64;
                    let now = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    for scheduled_ns in scheduled {
                        h.saturating_record((latency_ns(scheduled_ns, now) / 1000).max(1));
                    }
                }
                Err(_) => r.failed += scheduled.len() as u64,
            },
            () = tokio::time::sleep_until(due.into()), if i < total => {
                let upto = schedule.due_by(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)).min(total);
                let wall = Utc::now();
                while i < upto {
                    let scheduled_ns = schedule.offset_ns(i);
                    let g = mix.next(i, wall, period_start);
                    i += 1;
                    ready.extend(batcher.push(partition_of_customer[g.customer as usize], (scheduled_ns, g)));
                }
            }
            () = std::future::ready(()), if i >= total && !flushed => {
                flushed = true;
                ready = batcher.flush();
            }
        }
        for message in ready {
            let scheduled: Vec<u64> = message.iter().map(|(s, _)| *s).collect();
            if pending.len() >= o.in_flight.max(1) {
                r.saturated += scheduled.len() as u64;
                continue;
            }
            let events: Vec<Generated> = message.into_iter().map(|(_, g)| g).collect();
            match scratch.publish(&events).await {
                Ok(ack) => pending.push(Box::pin(async move { (ack.await, scheduled) })),
                Err(_) => r.failed += scheduled.len() as u64,
            }
        }
    }
    scratch.delete().await;
    r.ack = Latency::of(&h);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_have_two_decimals_rounded_half_up() {
        // Meterline sustains 30,000 ev/s where raw JetStream takes 125,000 msg/s: 0.24.
        assert_eq!(ratio(30_000, 125_000), "0.24");
        // 1/3 and 2/3.
        assert_eq!(ratio(1, 3), "0.33");
        assert_eq!(ratio(2, 3), "0.67");
        // p99 durable 612.345 ms against a raw p99 ack of 4.100 ms: 149.35…, so 149.35.
        assert_eq!(ratio(612_345, 4_100), "149.35");
        // Exactly half way rounds up: 1/8 = 0.125.
        assert_eq!(ratio(1, 8), "0.13");
        assert_eq!(ratio(7, 7), "1.00");
        assert_eq!(ratio(0, 5), "0.00");
        assert_eq!(ratio(5, 0), "n/a");
        assert_eq!(ratio(u64::MAX, 1), format!("{}.00", u64::MAX));
    }

    #[test]
    fn markdown_puts_meterline_beside_the_raw_figure() {
        let c = RawCeiling {
            in_flight: 8192,
            mean_event_bytes: 231,
            acked: 500_000,
            failed: 0,
            elapsed_ms: 4_000,
            rate: 125_000,
            events_per_message: 1,
        };
        let line = c.markdown(Some(30_000));
        assert!(line.contains("**125,000 msg/s**"), "{line}");
        assert!(line.contains("30,000 ev/s = **0.24 × the raw ceiling**"), "{line}");
        assert!(!c.markdown(None).contains("Meterline"));
        let mut h = histogram();
        // 10 µs .. 1,000 µs in steps of 10 (exact in the histogram below 2,048 µs).
        for v in 1..=100u64 {
            h.record(v * 10).expect("in range");
        }
        // p99 is 990 µs; 495 ms / 0.99 ms = 500.
        let a = RawAck { offered_rate: 15_000, acked: 100, saturated: 0, failed: 0, ack: Latency::of(&h) };
        assert_eq!(a.ack.p99_us, 990);
        let line = a.markdown(495_000);
        assert!(line.contains("p99 0.990 ms"), "{line}");
        assert!(line.contains("495.000 ms = **500.00 × raw p99**"), "{line}");
    }
}
