//! Invalid events end in the dead-letter stream with their reason, and their messages are acked.

use meterline_ingest::segment::Ledger;

use crate::common::{TestEnv, event};
use crate::scenario::CATALOG;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_event_is_dead_lettered_with_reason_and_acked() {
    let env = TestEnv::new("dlq").await;
    let store = env.catalog(CATALOG).await;
    env.publish(&event("ok-1", "llm.completion", "alice", "2026-10-05T00:00:00Z", r#"{"tokens":5}"#)).await;
    let bad = event("bad-1", "llm.completion", "alice", "2026-10-05T00:00:00Z", r#"{"tokens":"lots"}"#);
    env.publish(&bad).await;
    env.publish(&event("bad-2", "video.minutes", "alice", "2026-10-05T00:00:00Z", r#"{"m":1}"#)).await;
    env.publish("this is not json").await;

    let catalog = store.load().await.unwrap();
    let _ledger = Ledger::open(&meterline_ingest::LedgerConfig { path: env.ledger_path() }).unwrap();
    let report = env.ingest_until_idle(&catalog).await;
    assert_eq!((report.valid, report.invalid, report.messages), (1, 3, 4));

    // Every message is acked: nothing pending, nothing awaiting an ack.
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = env
        .js
        .get_stream(&env.ingest.stream)
        .await
        .unwrap()
        .get_consumer(&meterline_ingest::streams::consumer_name(&env.ingest, 0))
        .await
        .unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!((info.num_pending, info.num_ack_pending), (0, 0));

    // The dead letters carry the event as received and the reason naming field and value.
    let seen = env.dead_letters().await;
    assert_eq!(seen.len(), 3, "{seen:#?}");
    let tokens = &seen[0];
    assert_eq!(tokens.subject, format!("{}.data_tokens", env.ingest.dlq_subject_prefix));
    assert_eq!((tokens.field.as_str(), tokens.value.as_str()), ("data.tokens", "\"lots\""));
    assert!(tokens.reason.contains("is not a number"), "{}", tokens.reason);
    assert_eq!(tokens.payload, bad, "the dead letter is the event exactly as received");
    assert_eq!((seen[1].field.as_str(), seen[1].value.as_str()), ("type", "\"video.minutes\""));
    assert!(seen[1].reason.contains("matches no meter"), "{}", seen[1].reason);
    assert_eq!((seen[2].field.as_str(), seen[2].payload.as_str()), ("event", "this is not json"));
    env.cleanup().await;
}
