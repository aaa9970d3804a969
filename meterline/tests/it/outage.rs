//! The ledger store fails during ingest: nothing is acked or lost meanwhile, ingest says so in its
//! metrics, and it resumes by itself when the store is back. The metrics endpoint needs a key.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use tokio_util::sync::CancellationToken;

use meterline_ingest::apikeys::ApiKeyStore;
use meterline_ingest::segment::Ledger;
use meterline_ingest::{IngestCounters, LedgerConfig, RunOptions};

use crate::common::{TestEnv, event, get_metrics as get, ledger_totals};

const CATALOG: &str = r#"
meters:
  - { key: tokens, event_type: llm.completion, aggregation: SUM, value: tokens }
"#;

async fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_outage_stops_acks_and_ingest_recovers_by_itself() {
    let env = TestEnv::new("outage").await;
    let store = env.ledger.path().join("store");
    let ledger_dir = store.join("ledger");
    let ledger = Ledger::open(&LedgerConfig { path: ledger_dir.clone() }).unwrap();
    let catalog = env.catalog(CATALOG).await.load().await.unwrap();
    let counters = Arc::new(IngestCounters::default());

    // The metrics endpoint, sharing the counters, behind the API keys.
    let keys = ApiKeyStore::open(&env.js, &env.bucket_prefix).await.unwrap();
    let key = keys.create("prometheus").await.unwrap().expose().to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop_metrics = CancellationToken::new();
    let app = meterline_ingest::metrics::router(counters.clone(), None, keys);
    let metrics = tokio::spawn(meterline_ingest::http::serve(listener, app, stop_metrics.clone(), Duration::from_secs(1)));

    let shutdown = CancellationToken::new();
    let ingest = {
        let (js, cfg, ledger, counters, shutdown) =
            (env.js.clone(), env.ingest.clone(), ledger.clone(), counters.clone(), shutdown.clone());
        tokio::spawn(async move { meterline_ingest::run(&js, &cfg, &ledger, &catalog, RunOptions::default(), counters, shutdown).await })
    };
    let ev = |i: u32| event(&format!("o{i}"), "llm.completion", "acme", "2026-10-05T12:00:00Z", &format!(r#"{{"tokens":{i}}}"#));
    for i in 1..=50 {
        env.publish(&ev(i)).await;
    }
    wait_until("the first 50 events are durable", Duration::from_secs(30), || ledger_totals(&ledger_dir).distinct_events == 50).await;
    let acked_before = counters.messages.load(Ordering::Relaxed);
    assert_eq!(acked_before, 50);

    // Outage: the store's directory is taken away and a plain file stands in its place, so every
    // write fails (ENOTDIR), as an unmounted or read-only volume would.
    let away = env.ledger.path().join("store.away");
    std::fs::rename(&store, &away).unwrap();
    std::fs::write(&store, b"not a directory").unwrap();
    for i in 51..=100 {
        env.publish(&ev(i)).await;
    }
    wait_until("ingest reports the ledger down", Duration::from_secs(30), || counters.ledger_down.load(Ordering::Relaxed) == 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(counters.messages.load(Ordering::Relaxed), acked_before, "nothing is acked while the ledger is down");
    assert_eq!(ledger_totals(&away.join("ledger")).distinct_events, 50);
    let (status, body) = get(addr, Some(&format!("Bearer {key}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("meterline_ingest_ledger_down 1\n"), "{body}");
    assert!(body.contains("meterline_ingest_events_total{outcome=\"valid\"} 50\n"), "{body}");
    let stream_consumer = meterline_ingest::streams::consumer_name(&env.ingest, 0);
    let mut consumer: async_nats::jetstream::consumer::PullConsumer =
        env.js.get_stream(&env.ingest.stream).await.unwrap().get_consumer(&stream_consumer).await.unwrap();
    assert!(consumer.info().await.unwrap().num_ack_pending > 0, "the outage's messages wait unacked in JetStream");

    // The store comes back; ingest resumes by itself.
    std::fs::remove_file(&store).unwrap();
    std::fs::rename(&away, &store).unwrap();
    wait_until("all 100 events are durable", Duration::from_secs(60), || ledger_totals(&ledger_dir).distinct_events == 100).await;
    wait_until("every message is acked", Duration::from_secs(30), || counters.messages.load(Ordering::Relaxed) >= 100).await;
    assert_eq!(counters.ledger_down.load(Ordering::Relaxed), 0);
    let t = ledger_totals(&ledger_dir);
    assert_eq!((t.rows, t.distinct_events, t.value_sum_nanos), (100, 100, 5_050 * 1_000_000_000), "1 + … + 100 = 5,050, once each");

    let (status, body) = get(addr, Some(&format!("Bearer {key}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("meterline_ingest_ledger_down 0\n"), "{body}");
    assert!(body.contains("meterline_ingest_events_total{outcome=\"valid\"} 100\n"), "{body}");
    let acks: u64 = body.lines().find_map(|l| l.strip_prefix("meterline_ingest_ack_latency_seconds_count ")).unwrap().parse().unwrap();
    assert!(acks >= 100, "every message's ack latency is recorded (redeliveries during the outage too): {acks}");
    assert_eq!(get(addr, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(get(addr, Some("Bearer ml_nope_wrong")).await.0, StatusCode::UNAUTHORIZED);

    shutdown.cancel();
    let report = ingest.await.unwrap().unwrap();
    assert_eq!(report.valid, 100, "redeliveries during the outage were dropped as duplicates: {report:?}");
    stop_metrics.cancel();
    metrics.await.unwrap().unwrap();
    env.cleanup().await;
}
