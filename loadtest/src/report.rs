//! Results of a run: latency percentiles (hdrhistogram, microseconds), rates and errors, as JSON
//! and as a markdown table. Integers only: microseconds and events per second.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::mix::MixCounts;
use crate::raw::{RawAck, RawCeiling, ratio};

/// Histogram of latencies in microseconds, 1 µs to 1 hour, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds are valid")
}

/// Percentiles of one latency, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latency {
    /// Events measured.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
}

impl Latency {
    /// Percentiles of `h` (all zero when empty).
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// Errors and events that could not be measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Errors {
    /// Events not sent because `--in-flight` publishes were already awaiting their ack: the
    /// generator (or the server) could not keep up with the offered rate.
    pub saturated: u64,
    /// Sends that failed: no JetStream ack, or over HTTP any answer but 202 (except the expected
    /// 400 for an invalid event), by status in [`RunReport::failed_by_status`].
    pub publish_failed: u64,
    /// Stored events whose durability was not observed before the drain timeout.
    pub durable_unobserved: u64,
    /// Valid events not seen in current spend before the drain timeout.
    pub spend_unobserved: u64,
}

impl Errors {
    /// Sum of all errors.
    pub fn total(&self) -> u64 {
        self.saturated + self.publish_failed + self.durable_unobserved + self.spend_unobserved
    }
}

/// The report of one run at one offered rate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    /// The transport: `nats` or `http`.
    pub target: String,
    /// `debug` or `release`.
    pub build: String,
    /// Sends awaiting their answer at most (`--in-flight`).
    #[serde(default)]
    pub in_flight: u64,
    /// Offered load, events/s.
    pub offered_rate: u64,
    /// Events per JetStream message (`--events-per-message`; 1 in reports from before it).
    #[serde(default = "one")]
    pub events_per_message: u64,
    /// Events generated (sent or saturated).
    pub events: u64,
    /// Events acked by JetStream (over HTTP: answered 202, which comes after the JetStream ack).
    pub sent: u64,
    /// Wall time of the sending phase, ms.
    pub send_ms: u64,
    /// Events acked by JetStream per second of the sending phase.
    pub achieved_rate: u64,
    /// Messages acked by JetStream (over HTTP: requests answered 202).
    #[serde(default)]
    pub messages: u64,
    /// Messages acked per second of the sending phase.
    #[serde(default)]
    pub message_rate: u64,
    /// Largest lag of the sender behind the schedule, µs.
    pub max_send_lag_us: u64,
    /// The mix as generated.
    pub mix: MixCounts,
    /// JetStream dropped these as duplicates (same `Nats-Msg-Id` in its window).
    pub jetstream_duplicates: u64,
    /// What ingest counted.
    pub ingest: IngestCounts,
    /// Scheduled send → JetStream publish ack (over HTTP: → the 202 answer).
    pub publish_ack: Latency,
    /// HTTP: invalid events refused with 400, as they should be (over NATS ingest dead-letters
    /// them instead); not errors.
    #[serde(default)]
    pub refused_invalid: u64,
    /// HTTP: failed sends by status code (`transport` when there was no answer); their sum is
    /// `errors.publish_failed`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failed_by_status: BTreeMap<String, u64>,
    /// The raw ceiling measured before this run (single runs; a sweep measures it once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_ceiling: Option<RawCeiling>,
    /// Raw JetStream publish → ack at this run's offered rate, measured just before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_ack: Option<RawAck>,
    /// Scheduled send → durable (ingest acked it, which it does only after the fsync).
    pub durable: Latency,
    /// Scheduled send → visible in ClickHouse `current_spend`.
    pub spend: Latency,
    /// Spend refreshes run, and the longest one, ms.
    pub spend_refreshes: u64,
    /// Longest spend refresh, ms.
    pub spend_refresh_max_ms: u64,
    /// Errors.
    pub errors: Errors,
}

fn one() -> u64 {
    1
}

/// Ingest's own counters at the end of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestCounts {
    /// Events written to the ledger.
    pub valid: u64,
    /// Events dead-lettered.
    pub invalid: u64,
    /// Duplicates dropped by ingest's exact dedup.
    pub duplicates: u64,
    /// Segments written.
    pub segments: u64,
}

/// A `--find-max` sweep: each step's report, the bound, and the highest rate that met it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepReport {
    /// p99 publish→durable bound, µs.
    pub bound_p99_us: u64,
    /// The raw ceiling, measured at the start of the sweep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_ceiling: Option<RawCeiling>,
    /// Highest offered rate whose step passed (0 when none did).
    pub max_sustainable_rate: u64,
    /// The steps, in order.
    pub steps: Vec<RunReport>,
}

/// Milliseconds with three decimals from microseconds.
pub fn ms(us: u64) -> String {
    format!("{}.{:03}", us / 1000, us % 1000)
}

/// Thousands separators.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl RunReport {
    /// Whether events went over HTTP.
    pub fn over_http(&self) -> bool {
        self.target == "http"
    }

    /// `failed_by_status` as `503: 2, transport: 1`, or `none`.
    pub fn failures_by_status(&self) -> String {
        if self.failed_by_status.is_empty() {
            return "none".into();
        }
        self.failed_by_status.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")
    }

    /// The latency table and a summary line, in markdown.
    pub fn markdown(&self) -> String {
        let (how, failed) = if self.over_http() {
            ("POSTed one per request to the in-process HTTP ingest and answered 202", "non-202 answers")
        } else {
            ("published and acked by JetStream", "publish failed")
        };
        let mut s = format!(
            "{} transport, offered {} ev/s ({} build, {} in flight at most), {} events, {} {how} in {} ms: **{} ev/s achieved**, {} per message: {} messages, **{} msg/s**; errors: {} saturated, {} {failed}, {} durable unobserved, {} spend unobserved\n\n",
            self.target,
            thousands(self.offered_rate),
            self.build,
            thousands(self.in_flight),
            thousands(self.events),
            thousands(self.sent),
            thousands(self.send_ms),
            thousands(self.achieved_rate),
            if self.events_per_message == 1 { "1 event".to_string() } else { format!("{} events", thousands(self.events_per_message)) },
            thousands(self.messages),
            thousands(self.message_rate),
            self.errors.saturated,
            self.errors.publish_failed,
            self.errors.durable_unobserved,
            self.errors.spend_unobserved
        );
        if self.over_http() {
            s.push_str(&format!(
                "HTTP failures by status: {}; invalid events refused with 400 as expected (not errors): {}\n\n",
                self.failures_by_status(),
                self.refused_invalid
            ));
        }
        if self.events_per_message > 1 {
            s.push_str(&format!(
                "each latency counts from the event's own scheduled time, so it includes the wait in the producer's batch (up to {} ms for a message's first event at this rate, more with several partitions)\n\n",
                ms((self.events_per_message - 1) * 1_000_000 / self.offered_rate.max(1))
            ));
        }
        s.push_str("| latency from the scheduled send | events | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |\n");
        s.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        let answer = if self.over_http() { "HTTP 202 (after the JetStream ack)" } else { "JetStream publish ack" };
        let raw = self.raw_ack.map(|r| r.ack);
        for (name, l) in [
            ("raw JetStream publish ack, same rate (scratch stream, no consumer)", raw.as_ref()),
            (answer, Some(&self.publish_ack)),
            ("durable in the ledger (ingest ack)", Some(&self.durable)),
            ("visible in current spend", Some(&self.spend)),
        ] {
            let Some(l) = l else { continue };
            s.push_str(&format!(
                "| {name} | {} | {} | {} | {} | {} | {} |\n",
                thousands(l.count),
                ms(l.p50_us),
                ms(l.p90_us),
                ms(l.p99_us),
                ms(l.p999_us),
                ms(l.max_us)
            ));
        }
        s.push_str(&format!(
            "\nmix: {} fresh, {} late, {} duplicates ({} dropped by JetStream), {} invalid; ingest: {} to the ledger, {} dead-lettered, {} duplicates dropped, {} segments; {} spend refreshes (longest {} ms); sender lag at most {} ms\n",
            self.mix.fresh,
            self.mix.late,
            self.mix.duplicates,
            self.jetstream_duplicates,
            self.mix.invalid,
            self.ingest.valid,
            self.ingest.invalid,
            self.ingest.duplicates,
            self.ingest.segments,
            self.spend_refreshes,
            self.spend_refresh_max_ms,
            ms(self.max_send_lag_us)
        ));
        if let Some(c) = &self.raw_ceiling {
            s.push('\n');
            s.push_str(&c.markdown(None));
            s.push_str(&format!(
                "this run offered {} ev/s = {} × the raw ceiling\n",
                thousands(self.offered_rate),
                ratio(self.offered_rate, c.event_rate())
            ));
        }
        if let Some(r) = &self.raw_ack {
            s.push('\n');
            s.push_str(&r.markdown(self.durable.p99_us));
        }
        s
    }
}

impl SweepReport {
    /// One row per step, in markdown.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "highest sustainable rate: **{} ev/s** (p99 publish→durable ≤ {} ms, no errors, ≥ 95% of the offered rate achieved){}\n\n",
            thousands(self.max_sustainable_rate),
            ms(self.bound_p99_us),
            match self.steps.first().map(|r| r.events_per_message) {
                Some(n) if n > 1 => format!(", {} events per message", thousands(n)),
                _ => String::new(),
            }
        );
        if let Some(c) = &self.raw_ceiling {
            s.push_str(&c.markdown(Some(self.max_sustainable_rate)));
            s.push('\n');
        }
        s.push_str("| offered ev/s | achieved ev/s | msg/s | raw ack p99 ms | durable p50 ms | p99 ms | p99.9 ms | max ms | spend p99 ms | errors | passed |\n");
        s.push_str("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
        for r in &self.steps {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                thousands(r.offered_rate),
                thousands(r.achieved_rate),
                thousands(r.message_rate),
                r.raw_ack.map(|a| ms(a.ack.p99_us)).unwrap_or_else(|| "–".into()),
                ms(r.durable.p50_us),
                ms(r.durable.p99_us),
                ms(r.durable.p999_us),
                ms(r.durable.max_us),
                ms(r.spend.p99_us),
                r.errors.total(),
                if passes(r, self.bound_p99_us) { "yes" } else { "no" }
            ));
        }
        s
    }
}

/// Whether a step meets the bound: p99 durable within it, no errors, and at least 95% of the
/// offered rate achieved.
pub fn passes(r: &RunReport, bound_p99_us: u64) -> bool {
    r.durable.count > 0 && r.durable.p99_us <= bound_p99_us && r.errors.total() == 0 && r.achieved_rate * 100 >= r.offered_rate * 95
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_json_has_the_documented_shape() {
        let mut h = histogram();
        for v in 1..=1000u64 {
            h.record(v * 1000).expect("in range");
        }
        let r = RunReport { target: "nats".into(), offered_rate: 1000, durable: Latency::of(&h), ..Default::default() };
        assert_eq!(r.durable.p50_us / 1000, 500);
        assert_eq!(r.durable.p99_us / 1000, 990);
        assert_eq!(r.durable.max_us / 1000, 1000);
        let v = serde_json::to_value(&r).expect("serializable");
        for key in [
            "target",
            "build",
            "offered_rate",
            "events",
            "sent",
            "achieved_rate",
            "mix",
            "ingest",
            "publish_ack",
            "durable",
            "spend",
            "errors",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        for key in ["count", "p50_us", "p90_us", "p99_us", "p999_us", "max_us"] {
            assert!(v["durable"].get(key).is_some(), "missing durable.{key}");
        }
        for key in ["saturated", "publish_failed", "durable_unobserved", "spend_unobserved"] {
            assert!(v["errors"].get(key).is_some(), "missing errors.{key}");
        }
        let back: RunReport = serde_json::from_value(v).expect("round trip");
        assert_eq!(back, r);
        let sweep = SweepReport { bound_p99_us: 1_000_000, max_sustainable_rate: 1000, steps: vec![r], raw_ceiling: None };
        let v = serde_json::to_value(&sweep).expect("serializable");
        assert!(v["steps"].is_array() && v["max_sustainable_rate"] == 1000);
        assert!(sweep.markdown().contains("| 1,000 |"));
    }

    #[test]
    fn formatting() {
        assert_eq!(ms(1_234_567), "1234.567");
        assert_eq!(ms(5), "0.005");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(12), "12");
    }
}
