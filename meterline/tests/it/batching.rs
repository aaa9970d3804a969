//! Batches, and so segments, end at `batch_max_messages` messages as well as at
//! `segment_max_events` events.

use crate::common::{TestEnv, event, ledger_totals};
use crate::scenario::CATALOG;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_holds_at_most_batch_max_messages_messages() {
    let mut env = TestEnv::new("batching").await;
    env.ingest.segment_max_events = 1000;
    env.ingest.batch_max_messages = 10;
    // Long enough that no batch is cut by time before it has its 10 messages (the last one, 5
    // messages, waits for it).
    env.ingest.linger_ms = 1500;
    let store = env.catalog(CATALOG).await;
    let mut tokens = 0i128;
    for i in 0..25 {
        env.publish(&event(&format!("b-{i}"), "llm.completion", "alice", "2026-10-05T00:00:00Z", &format!(r#"{{"tokens":{i}}}"#))).await;
        tokens += i;
    }
    let catalog = store.load().await.unwrap();
    let report = env.ingest_until_idle(&catalog).await;
    assert_eq!((report.valid, report.messages, report.segments), (25, 25, 3));

    // Stream sequences 1–10, 11–20 and 21–25, one segment each, every event once.
    let dir = env.ledger_path().join("month=2026-10");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".parquet"))
        .collect();
    names.sort();
    let ranges: Vec<&str> = names.iter().map(|n| &n["seg-p000-".len().."seg-p000-000000000001-000000000010".len()]).collect();
    assert_eq!(ranges, ["000000000001-000000000010", "000000000011-000000000020", "000000000021-000000000025"], "{names:?}");
    let totals = ledger_totals(&env.ledger_path());
    assert_eq!((totals.rows, totals.distinct_events, totals.segments), (25, 25, 3));
    assert_eq!(totals.value_sum_nanos, tokens * 1_000_000_000);
    env.cleanup().await;
}
