//! Prometheus metrics of `meterline ingest`: `GET /metrics` (text format 0.0.4) on
//! `ingest.metrics_listen`, behind the same API keys as the HTTP endpoint
//! (`Authorization: Bearer <key>`; Prometheus: `authorization: { credentials_file: … }`).
//!
//! | metric | type | meaning |
//! | --- | --- | --- |
//! | `meterline_ingest_events_total{outcome}` | counter | events decoded, by outcome: `valid` (to the ledger), `invalid` (dead-lettered), `duplicate` (dropped), `rerouted` (to their partition); `late` counts the valid ones that arrived after their period's deadline (kept, billed as adjustments) |
//! | `meterline_ingest_messages_total` | counter | messages acked |
//! | `meterline_ingest_segments_total` | counter | ledger segments written |
//! | `meterline_ingest_segment_bytes_total` | counter | bytes of ledger segments written |
//! | `meterline_ingest_ledger_rows_total` | counter | ledger rows written (one per event and meter) |
//! | `meterline_ingest_ack_latency_seconds` | histogram | JetStream store → ack, per message |
//! | `meterline_ingest_consumer_pending` | gauge | messages in the stream not yet delivered (lag) |
//! | `meterline_ingest_ledger_down` | gauge | 1 while ledger writes fail and ingest waits |
//! | `meterline_ingest_stage_seconds_total{stage}` | counter | time in `prepare` (decode, dedup, encode) and `write` (durable + ack) |
//! | `meterline_mirror_segments_total` | counter | ledger segments copied to ClickHouse by the mirror running in this process |
//! | `meterline_mirror_rows_total` | counter | rows inserted into `usage_events` by that mirror |
//! | `meterline_mirror_pending_segments` | gauge | ledger segments not mirrored yet, as of the mirror's last listing (the backlog after a ClickHouse outage) |
//! | `meterline_mirror_skipped_segments` | gauge | segments that cannot be decoded, skipped until restart |
//! | `meterline_mirror_down` | gauge | 1 while the mirror's passes fail (ClickHouse unreachable) |
//!
//! The `meterline_mirror_*` series are present when the mirror runs inside `meterline ingest`
//! (`mirror.enabled`).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::apikeys::ApiKeyStore;
use crate::mirror::MirrorCounters;
use crate::pipeline::IngestCounters;

/// Upper bounds of the latency buckets, in seconds.
const BOUNDS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// The same bounds in microseconds (integers, for recording without floats).
const BOUNDS_US: [u64; 12] =
    [5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000];

/// A lock-free Prometheus histogram of durations.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; 12],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn record(&self, d: Duration) {
        self.record_all([d]);
    }

    /// Records several observations, counted locally and added once per bucket (ingest records
    /// one per message: three atomic additions each were 1 % of its samples at one event per
    /// message).
    pub fn record_all(&self, ds: impl IntoIterator<Item = Duration>) {
        let (mut buckets, mut count, mut sum_us) = ([0u64; 12], 0u64, 0u64);
        for d in ds {
            let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
            if let Some(i) = BOUNDS_US.iter().position(|&b| us <= b) {
                buckets[i] += 1;
            }
            count += 1;
            sum_us = sum_us.saturating_add(us);
        }
        for (b, n) in self.buckets.iter().zip(buckets) {
            if n > 0 {
                b.fetch_add(n, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(count, Ordering::Relaxed);
        self.sum_us.fetch_add(sum_us, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, bound) in self.buckets.iter().zip(BOUNDS) {
            cumulative += b.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum_us = self.sum_us.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_sum {}.{:06}\n{name}_count {count}", sum_us / 1_000_000, sum_us % 1_000_000);
    }
}

/// The counters in the Prometheus text format.
pub fn render(c: &IngestCounters) -> String {
    let mut out = String::with_capacity(4096);
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let _ = writeln!(out, "# HELP meterline_ingest_events_total Events decoded, by outcome.\n# TYPE meterline_ingest_events_total counter");
    for (outcome, v) in
        [("valid", &c.valid), ("invalid", &c.invalid), ("duplicate", &c.duplicates), ("rerouted", &c.rerouted), ("late", &c.late)]
    {
        let _ = writeln!(out, "meterline_ingest_events_total{{outcome=\"{outcome}\"}} {}", get(v));
    }
    write_plain(
        &mut out,
        &[
            ("meterline_ingest_messages_total", "Messages acked.", "counter", &c.messages),
            ("meterline_ingest_segments_total", "Ledger segments written.", "counter", &c.segments),
            ("meterline_ingest_segment_bytes_total", "Bytes of ledger segments written.", "counter", &c.bytes),
            ("meterline_ingest_ledger_rows_total", "Ledger rows written (one per event and meter).", "counter", &c.rows),
            ("meterline_ingest_consumer_pending", "Messages in the stream not yet delivered to ingest.", "gauge", &c.pending),
            ("meterline_ingest_ledger_down", "1 while ledger writes fail and ingest waits without acking.", "gauge", &c.ledger_down),
        ],
    );
    let _ = writeln!(
        out,
        "# HELP meterline_ingest_stage_seconds_total Time spent per pipeline stage.\n# TYPE meterline_ingest_stage_seconds_total counter"
    );
    for (stage, v) in [("prepare", &c.prepare_nanos), ("write", &c.write_nanos)] {
        let n = get(v);
        let _ = writeln!(out, "meterline_ingest_stage_seconds_total{{stage=\"{stage}\"}} {}.{:09}", n / 1_000_000_000, n % 1_000_000_000);
    }
    c.ack_latency.render("meterline_ingest_ack_latency_seconds", "Time from JetStream storing a message to its ack by ingest.", &mut out);
    out
}

/// The mirror's counters in the Prometheus text format, appended to `out`.
pub fn render_mirror(m: &MirrorCounters, out: &mut String) {
    write_plain(
        out,
        &[
            ("meterline_mirror_segments_total", "Ledger segments copied to ClickHouse.", "counter", &m.segments),
            ("meterline_mirror_rows_total", "Rows inserted into usage_events.", "counter", &m.rows),
            ("meterline_mirror_pending_segments", "Ledger segments not mirrored yet, as of the last listing.", "gauge", &m.pending),
            ("meterline_mirror_skipped_segments", "Segments that cannot be decoded, skipped until restart.", "gauge", &m.skipped),
            ("meterline_mirror_down", "1 while mirror passes fail (ClickHouse unreachable).", "gauge", &m.down),
        ],
    );
}

/// Writes unlabelled metrics: (name, help, type, value) each with its HELP and TYPE lines.
fn write_plain(out: &mut String, metrics: &[(&str, &str, &str, &AtomicU64)]) {
    for (name, help, kind, v) in metrics {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}", v.load(Ordering::Relaxed));
    }
}

#[derive(Clone)]
struct MetricsState {
    counters: Arc<IngestCounters>,
    mirror: Option<Arc<MirrorCounters>>,
    keys: ApiKeyStore,
}

/// The `/metrics` route (API key required), with the mirror's series when it runs here.
pub fn router(counters: Arc<IngestCounters>, mirror: Option<Arc<MirrorCounters>>, keys: ApiKeyStore) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(MetricsState { counters, mirror, keys })
}

async fn metrics(State(st): State<MetricsState>, req: Request) -> Response {
    let key = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
    });
    let Some(key) = key else {
        return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "missing API key: send `Authorization: Bearer <key>`\n")
            .into_response();
    };
    match st.keys.verify(&key).await {
        Ok(_) => {
            let mut body = render(&st.counters);
            if let Some(m) = &st.mirror {
                render_mirror(m, &mut body);
            }
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
        }
        Err(crate::apikeys::AuthError::Unavailable(e)) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("cannot check the API key: {e}\n")).into_response()
        }
        Err(_) => (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "invalid or revoked API key\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = LatencyHistogram::default();
        h.record(Duration::from_millis(3));
        h.record(Duration::from_millis(40));
        h.record(Duration::from_secs(60));
        let mut out = String::new();
        h.render("x", "help", &mut out);
        assert!(out.contains("x_bucket{le=\"0.005\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.05\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"30\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_sum 60.043000\nx_count 3\n"), "{out}");
        // The same observations recorded at once, on top: every bucket, the sum and the count
        // double.
        h.record_all([Duration::from_millis(3), Duration::from_millis(40), Duration::from_secs(60)]);
        let mut twice = String::new();
        h.render("x", "help", &mut twice);
        assert!(twice.contains("x_bucket{le=\"0.005\"} 2\n"), "{twice}");
        assert!(twice.contains("x_bucket{le=\"0.05\"} 4\n"), "{twice}");
        assert!(twice.contains("x_bucket{le=\"30\"} 4\n"), "{twice}");
        assert!(twice.contains("x_bucket{le=\"+Inf\"} 6\n"), "{twice}");
        assert!(twice.contains("x_sum 120.086000\nx_count 6\n"), "{twice}");
    }

    #[test]
    fn counters_render_by_outcome() {
        let c = IngestCounters::default();
        c.valid.store(7, Ordering::Relaxed);
        c.duplicates.store(2, Ordering::Relaxed);
        let out = render(&c);
        assert!(out.contains("meterline_ingest_events_total{outcome=\"valid\"} 7\n"));
        assert!(out.contains("meterline_ingest_events_total{outcome=\"duplicate\"} 2\n"));
        assert!(out.contains("# TYPE meterline_ingest_ledger_down gauge\nmeterline_ingest_ledger_down 0\n"));
    }

    #[test]
    fn mirror_counters_render_as_counters_and_gauges() {
        let m = MirrorCounters::default();
        m.segments.store(3, Ordering::Relaxed);
        m.rows.store(120, Ordering::Relaxed);
        m.pending.store(4, Ordering::Relaxed);
        m.down.store(1, Ordering::Relaxed);
        let mut out = String::new();
        render_mirror(&m, &mut out);
        assert!(out.contains("# TYPE meterline_mirror_segments_total counter\nmeterline_mirror_segments_total 3\n"), "{out}");
        assert!(out.contains("meterline_mirror_rows_total 120\n"), "{out}");
        assert!(out.contains("# TYPE meterline_mirror_pending_segments gauge\nmeterline_mirror_pending_segments 4\n"), "{out}");
        assert!(out.contains("meterline_mirror_skipped_segments 0\n"), "{out}");
        assert!(out.contains("# TYPE meterline_mirror_down gauge\nmeterline_mirror_down 1\n"), "{out}");
    }
}
