//! `ensure_consumer`: a partition's durable consumer follows the configuration it is started with.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use meterline_ingest::IngestConfig;
use meterline_ingest::streams::{ensure_consumer, ensure_streams, max_ack_pending};

static COUNTER: AtomicU32 = AtomicU32::new(0);

#[tokio::test]
async fn an_idle_consumer_takes_new_settings_and_keeps_its_place() {
    let url = std::env::var("METERLINE__NATS__URL").unwrap_or_else(|_| "nats://127.0.0.1:14222".into());
    let client = async_nats::connect(url.as_str()).await.unwrap_or_else(|e| panic!("NATS must run at {url} (make test starts it): {e}"));
    let js = jetstream::new(client);
    let tag = format!("t_consumer_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
    let cfg = IngestConfig {
        stream: tag.to_uppercase(),
        subject_prefix: format!("{tag}.usage"),
        dlq_stream: format!("{}_DLQ", tag.to_uppercase()),
        dlq_subject_prefix: format!("{tag}.dlq"),
        consumer: tag.clone(),
        metrics_listen: String::new(),
        ..IngestConfig::default()
    };
    let (usage, _) = ensure_streams(&js, &cfg).await.unwrap();
    let mut consumer = ensure_consumer(&usage, &cfg, 0).await.unwrap();
    let info = consumer.info().await.unwrap().clone();
    assert_eq!((info.config.max_ack_pending, info.config.ack_wait), (200_000, Duration::from_secs(30)));

    // Three messages; the first two delivered and acked (cumulatively), the third not yet pulled.
    for i in 0..3 {
        js.publish(cfg.publish_subject("acme"), format!("m{i}").into()).await.unwrap().await.unwrap();
    }
    let mut batch = consumer.fetch().max_messages(2).messages().await.unwrap();
    let mut last = None;
    while let Some(m) = batch.next().await {
        last = Some(m.unwrap());
    }
    last.unwrap().double_ack().await.unwrap();

    // Restarted with other settings: the same consumer, edited in place.
    let changed = IngestConfig { batch_max_messages: 50_000, ack_wait_secs: 7, ..cfg.clone() };
    assert_eq!(max_ack_pending(&changed), 300_000);
    let mut consumer = ensure_consumer(&usage, &changed, 0).await.unwrap();
    let info = consumer.info().await.unwrap().clone();
    assert_eq!((info.config.max_ack_pending, info.config.ack_wait), (300_000, Duration::from_secs(7)));
    assert_eq!((info.ack_floor.stream_sequence, info.num_pending, info.num_ack_pending), (2, 1, 0));

    // Started again with the same settings: nothing to change.
    let mut consumer = ensure_consumer(&usage, &changed, 0).await.unwrap();
    assert_eq!(consumer.info().await.unwrap().ack_floor.stream_sequence, 2);

    js.delete_stream(&cfg.stream).await.unwrap();
    js.delete_stream(&cfg.dlq_stream).await.unwrap();
}
