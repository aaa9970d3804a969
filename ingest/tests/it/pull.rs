//! `PullStream`: every message once and in order, with no pull lost from the counts.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use meterline_ingest::pull::{PullOptions, PullStream};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh stream of this test with `messages` messages of `size` bytes, and a cumulative-ack
/// pull consumer on it.
async fn setup(tag: &str, messages: u64, size: usize) -> (jetstream::Context, stream::Stream, consumer::PullConsumer) {
    let url = std::env::var("METERLINE__NATS__URL").unwrap_or_else(|_| "nats://127.0.0.1:14222".into());
    let client = async_nats::connect(url.as_str()).await.unwrap_or_else(|e| panic!("NATS must run at {url} (make test starts it): {e}"));
    let js = jetstream::new(client);
    let name = format!("T_PULL_{tag}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
    let _ = js.delete_stream(&name).await;
    let s =
        js.create_stream(stream::Config { name: name.clone(), subjects: vec![format!("{name}.>")], ..Default::default() }).await.unwrap();
    let mut acks = Vec::new();
    for i in 0..messages {
        let body = format!("{i:>size$}");
        acks.push(js.publish(format!("{name}.m"), body.into()).await.unwrap());
    }
    for ack in acks {
        ack.await.unwrap();
    }
    let c = s
        .create_consumer(consumer::pull::Config {
            durable_name: Some("c".into()),
            ack_policy: consumer::AckPolicy::All,
            ..Default::default()
        })
        .await
        .unwrap();
    (js, s, c)
}

/// Pulls cut by `max_bytes` after a few large messages, the case whose counts went wrong with
/// async-nats's own stream: hundreds of pulls, each ended by a `409 Message Size Exceeds MaxBytes`.
#[tokio::test]
async fn byte_limited_pulls_deliver_everything_in_order() {
    let (js, s, c) = setup("bytes", 600, 20_000).await;
    let opts =
        PullOptions { max_messages: 1_000, max_bytes: 64 << 10, expires: Duration::from_secs(30), heartbeat: Duration::from_secs(1) };
    let mut pulls = PullStream::start(&js, &c, opts).await.unwrap();
    for expected in 1..=600u64 {
        let m = tokio::time::timeout(Duration::from_secs(60), pulls.next()).await.unwrap().unwrap().unwrap();
        let (seq, stored) = meterline_ingest::pull::stored(&m).unwrap();
        let m = pulls.ackable(m);
        // The reply subject read as async-nats reads it.
        let info = m.info().unwrap();
        assert_eq!((seq, stored), (info.stream_sequence, info.published.unix_timestamp_nanos()));
        assert_eq!(seq, expected);
        if expected % 100 == 0 {
            m.ack().await.unwrap();
        }
    }
    assert_eq!(pulls.silent_repulls(), 0, "a pull counted as open that the server did not hold");
    js.delete_stream(s.cached_info().config.name.as_str()).await.unwrap();
}

/// Pulls cut by the message count (small messages), then an idle stream: pulls expire and are
/// renewed, the heartbeats keep the watchdog quiet, and a message published later arrives.
#[tokio::test]
async fn count_limited_pulls_then_idle_then_more() {
    let (js, s, c) = setup("count", 1_000, 100).await;
    let opts = PullOptions { max_messages: 64, max_bytes: 4 << 20, expires: Duration::from_secs(2), heartbeat: Duration::from_millis(500) };
    let mut pulls = PullStream::start(&js, &c, opts).await.unwrap();
    for expected in 1..=1_000u64 {
        let m = tokio::time::timeout(Duration::from_secs(60), pulls.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(meterline_ingest::pull::stored(&m).unwrap().0, expected);
        // Within the consumer's default max_ack_pending of 1,000.
        if expected % 100 == 0 {
            pulls.ackable(m).ack().await.unwrap();
        }
    }
    // Longer than an expiry with nothing to deliver.
    assert!(tokio::time::timeout(Duration::from_secs(3), pulls.next()).await.is_err());
    let name = s.cached_info().config.name.clone();
    js.publish(format!("{name}.m"), "late".into()).await.unwrap().await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(60), pulls.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(&m.payload[..], b"late");
    assert_eq!(pulls.silent_repulls(), 0);
    js.delete_stream(name.as_str()).await.unwrap();
}
