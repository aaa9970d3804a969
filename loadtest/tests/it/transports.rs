//! A small bounded run over each transport, and one over NATS with ten events per message: every
//! valid event becomes durable and visible in spend, and every latency is recorded. Counts only;
//! no timings are asserted.

use std::time::Duration;

use meterline_loadtest::mix::MixShares;
use meterline_loadtest::report::RunReport;
use meterline_loadtest::run::{Options, Transport, run_once};
use meterline_schemas::clickhouse::{ClickHouseConfig, Secret};

fn options(transport: Transport, tag: &str) -> Options {
    let name = format!("lt_it_{tag}_{}", std::process::id());
    Options {
        transport,
        nats_url: std::env::var("METERLINE__NATS__URL").unwrap_or_else(|_| "nats://127.0.0.1:14222".into()),
        clickhouse: ClickHouseConfig {
            url: std::env::var("METERLINE__CLICKHOUSE__URL").unwrap_or_else(|_| "http://127.0.0.1:18123".into()),
            database: name.clone(),
            user: std::env::var("METERLINE__CLICKHOUSE__USER").unwrap_or_else(|_| "default".into()),
            password: Secret::new(std::env::var("METERLINE__CLICKHOUSE__PASSWORD").unwrap_or_default()),
        },
        ledger: std::env::temp_dir().join(&name),
        stream: name,
        rate: 400,
        events_per_message: 1,
        events: Some(800),
        duration: Duration::from_secs(60),
        customers: 50,
        seed: 7,
        // More invalid events than the default, so that a few are surely generated.
        shares: MixShares { duplicates_ppm: 20_000, late_ppm: 5_000, invalid_ppm: 20_000 },
        in_flight: 256,
        partitions: 1,
        linger_ms: 100,
        segment_max_events: 100_000,
        spend: true,
        spend_interval_ms: 100,
        poll_ms: 5,
        drain_timeout: Duration::from_secs(60),
        progress: false,
        raw_secs: 1,
        raw_ceiling: true,
    }
}

/// Removes what a run leaves: its streams, database and ledger.
async fn cleanup(o: &Options) {
    let client = async_nats::connect(o.nats_url.as_str()).await.expect("nats");
    let js = async_nats::jetstream::new(client);
    for s in [o.stream.clone(), format!("{}_dlq", o.stream)] {
        let _ = js.delete_stream(&s).await;
    }
    let _ = js.delete_key_value(format!("{}_ingest_leases", o.stream)).await;
    let _ = meterline_schemas::clickhouse::drop_database(&o.clickhouse).await;
    let _ = std::fs::remove_dir_all(&o.ledger);
}

/// What holds over either transport.
fn assert_complete(r: &RunReport) {
    let valid = r.mix.fresh + r.mix.late;
    assert!(r.mix.invalid > 0 && r.mix.duplicates > 0, "the mix has invalid events and duplicates: {:?}", r.mix);
    assert_eq!(r.events, 800);
    assert_eq!(r.errors, Default::default(), "no errors: {}", r.markdown());
    // Every valid event reached the ledger and current spend, and was measured there.
    assert_eq!(r.ingest.valid, valid);
    assert_eq!(r.spend.count, valid);
    // Every message JetStream stored was seen durable (ingest acked it).
    assert_eq!(r.durable.count, r.sent - r.jetstream_duplicates);
    assert_eq!(r.durable.count, r.ingest.valid + r.ingest.invalid + r.ingest.duplicates);
    assert_eq!(r.publish_ack.count, r.sent);
    for l in [&r.publish_ack, &r.durable, &r.spend] {
        assert!(l.p50_us > 0 && l.p50_us <= l.p99_us && l.p99_us <= l.max_us, "latencies recorded: {l:?}");
    }
    // The raw ceiling and raw publish → ack were measured in the same run.
    let c = r.raw_ceiling.expect("raw ceiling measured");
    assert!(c.acked > 0 && c.rate > 0 && c.in_flight == 256, "{c:?}");
    let a = r.raw_ack.expect("raw publish → ack measured");
    assert_eq!((a.offered_rate, a.acked + a.saturated + a.failed), (400, 400));
    assert!(a.ack.count == a.acked && a.ack.p99_us > 0);
    let md = r.markdown();
    assert!(md.contains("raw ceiling, measured in this run") && md.contains("× raw p99"), "{md}");
}

#[tokio::test]
async fn http_every_valid_event_becomes_durable_and_visible() {
    let o = options(Transport::Http, "http");
    let r = run_once(&o).await;
    cleanup(&o).await;
    let r = r.expect("run");
    assert_eq!(r.target, "http");
    assert_complete(&r);
    // Invalid events that are not CloudEvents (no time: a third of them) are refused with 400,
    // the others are accepted and dead-lettered by ingest.
    assert!(r.refused_invalid > 0, "some invalid events refused: {}", r.markdown());
    assert_eq!(r.refused_invalid + r.ingest.invalid, r.mix.invalid);
    assert_eq!(r.sent + r.refused_invalid, r.events);
    assert!(r.failed_by_status.is_empty());
    // The run's API key and its bucket are gone.
    let js = async_nats::jetstream::new(async_nats::connect(o.nats_url.as_str()).await.expect("nats"));
    assert!(js.get_key_value(format!("{}_api_keys", o.stream)).await.is_err(), "key bucket deleted");
}

#[tokio::test]
async fn nats_every_valid_event_becomes_durable_and_visible() {
    let o = options(Transport::Nats, "nats");
    let r = run_once(&o).await;
    cleanup(&o).await;
    let r = r.expect("run");
    assert_eq!(r.target, "nats");
    assert_complete(&r);
    assert_eq!((r.refused_invalid, r.ingest.invalid), (0, r.mix.invalid));
    assert_eq!(r.sent, r.events);
}

#[tokio::test]
async fn nats_batches_of_ten_every_valid_event_becomes_durable_and_visible() {
    let o = Options { events_per_message: 10, ..options(Transport::Nats, "batch") };
    let r = run_once(&o).await;
    cleanup(&o).await;
    let r = r.expect("run");
    assert_eq!((r.target.as_str(), r.events_per_message), ("nats", 10));
    assert_complete(&r);
    // 800 events in messages of 10: 80 messages (with one partition every message is full).
    assert_eq!(r.sent, r.events);
    assert_eq!(r.messages, 80);
    assert!(r.message_rate > 0, "{}", r.markdown());
    // A batch carries no Nats-Msg-Id: every duplicate reaches ingest's exact dedup and is
    // dropped there, and each invalid event is dead-lettered while the rest of its message is kept.
    assert_eq!(r.jetstream_duplicates, 0);
    assert_eq!(r.ingest.duplicates, r.mix.duplicates);
    assert_eq!(r.ingest.invalid, r.mix.invalid);
    // Every event of every stored message was seen durable: the valid ones, the duplicates and
    // the dead-lettered ones.
    assert_eq!(r.durable.count, r.mix.fresh + r.mix.late + r.mix.duplicates + r.mix.invalid);
    let c = r.raw_ceiling.expect("raw ceiling measured");
    assert_eq!(c.events_per_message, 10);
    let md = r.markdown();
    assert!(md.contains("10 events per message: 80 messages"), "{md}");
}
