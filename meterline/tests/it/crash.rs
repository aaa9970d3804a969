//! Crash safety under SIGKILL, and exact dedup beyond JetStream's duplicate window.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{TestEnv, event, ledger_totals};

const CATALOG: &str = r#"
meters:
  - { key: tokens, event_type: llm.completion, aggregation: SUM, value: tokens }
"#;

fn spawn_ingest(env: &TestEnv) -> Child {
    Command::new(env!("CARGO_BIN_EXE_meterline"))
        .args(["ingest", "--until-idle"])
        .current_dir(env.ledger.path())
        .envs(env.child_env())
        .env("METERLINE_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(env.ledger.path().join("ingest.log")).unwrap())
        .spawn()
        .expect("spawn meterline ingest")
}

/// A child `meterline ingest` is SIGKILLed at random moments, at least 20 times while it is
/// running, over a fixed set of events with duplicates (published in parts between the runs); afterwards the ledger holds every valid
/// event exactly once: its count and Σ tokens equal the generator's ground truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_and_counts_nothing_twice() {
    let mut env = TestEnv::new("crash").await;
    env.ingest.segment_max_events = 50; // many small fsynced segments: many moments between write and ack
    env.ingest.linger_ms = 5;
    env.catalog(CATALOG).await;
    meterline_ingest::streams::ensure_streams(&env.js, &env.ingest).await.unwrap();

    // Ground truth: 30,000 distinct events, event i carries tokens = i % 1000 + 1.
    // Σ over i < 30,000 of (i % 1000 + 1) = 30 × (1 + 2 + … + 1000) = 30 × 500,500 = 15,015,000.
    const EVENTS: usize = 30_000;
    let ev = |i: usize| {
        let customer = format!("c{}", i % 7);
        event(&format!("e{i}"), "llm.completion", &customer, "2026-10-05T12:00:00Z", &format!(r#"{{"tokens":{}}}"#, i % 1000 + 1))
    };
    // Batches of 20 events per message (single-customer, like a producer sends them), then
    // duplicates: every 10th event again in a batch of its own customer's events, and every 7th as
    // a single message without Nats-Msg-Id (so JetStream does not drop them; ingest must).
    let mut publishes = Vec::new();
    for c in 0..7 {
        let mine: Vec<usize> = (0..EVENTS).filter(|i| i % 7 == c).collect();
        for chunk in mine.chunks(20) {
            publishes.push(format!("[{}]", chunk.iter().map(|&i| ev(i)).collect::<Vec<_>>().join(",")));
        }
        let again: Vec<usize> = mine.iter().copied().filter(|i| i % 10 == 0).collect();
        for chunk in again.chunks(20) {
            publishes.push(format!("[{}]", chunk.iter().map(|&i| ev(i)).collect::<Vec<_>>().join(",")));
        }
    }
    let plain = meterline_ingest::partition::unrouted_subject(&env.ingest.subject_prefix);
    let mut messages: Vec<(String, String)> = publishes
        .into_iter()
        .map(|body| (plain.clone(), body))
        .chain((0..EVENTS).step_by(7).map(|i| (env.ingest.publish_subject(&format!("c{}", i % 7)), ev(i))))
        .collect();
    // Shuffled, and published in 25 parts, one before each of the first runs, so every run finds
    // new events and duplicates of durable ones.
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    rng.shuffle(&mut messages);
    let part = messages.len().div_ceil(25);
    let mut parts = Vec::new();
    while !messages.is_empty() {
        let rest = messages.split_off(part.min(messages.len()));
        parts.push(std::mem::replace(&mut messages, rest));
    }
    parts.reverse();

    let (mut kills_while_running, mut attempts) = (0, 0);
    let mut progress = Vec::new();
    while kills_while_running < 20 || !parts.is_empty() {
        if let Some(part) = parts.pop() {
            // At most 500 publishes await their ack at a time (the client bounds acks in flight).
            let mut acks = Vec::new();
            for (subject, body) in part {
                acks.push(env.js.publish(subject, body.into()).await.unwrap());
                if acks.len() == 500 {
                    for a in acks.drain(..) {
                        a.await.unwrap();
                    }
                }
            }
            for a in acks {
                a.await.unwrap();
            }
        }
        attempts += 1;
        assert!(attempts <= 80, "seed {seed}: ingest kept finishing before the kill ({kills_while_running} kills while running)");
        let mut child = spawn_ingest(&env);
        tokio::time::sleep(Duration::from_millis(rng.u64(20..300))).await;
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills_while_running += 1;
        }
        child.wait().unwrap();
        progress.push(ledger_totals(&env.ledger_path()).distinct_events);
    }
    assert!(progress.windows(2).filter(|w| w[1] > w[0]).count() >= 10, "seed {seed}: runs made progress between kills: {progress:?}");

    // The last run drains the stream.
    let started = Instant::now();
    let child = spawn_ingest(&env);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "seed {seed}: final ingest failed");
    eprintln!(
        "seed {seed}: {kills_while_running} kills in {attempts} runs, ledger progress {progress:?}, final run {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out.stdout).trim()
    );

    let t = ledger_totals(&env.ledger_path());
    assert_eq!(t.distinct_events, EVENTS, "seed {seed}: every valid event is in the ledger");
    assert_eq!(t.rows, EVENTS, "seed {seed}: and exactly once (one meter: one row per event)");
    assert_eq!(t.value_sum_nanos, 15_015_000 * 1_000_000_000, "seed {seed}: Σ tokens");
    env.cleanup().await;
}

/// A duplicate published again after a restart, after JetStream's duplicate window has passed
/// (so JetStream stores it again), is dropped by ingest's exact dedup rebuilt from the ledger.
#[tokio::test]
async fn duplicate_after_restart_outside_the_jetstream_window_is_not_counted() {
    let mut env = TestEnv::new("dup_window").await;
    env.ingest.duplicate_window_secs = 1;
    env.catalog(CATALOG).await;
    let first = event("late-retry", "llm.completion", "acme", "2026-10-05T12:00:00Z", r#"{"tokens":42}"#);
    env.publish(&first).await;
    let (ok, stdout, _) = env.meterline(&["ingest", "--until-idle"], &[]);
    assert!(ok && stdout.contains("1 events to the ledger, 0 duplicates dropped"), "{stdout}");

    // The producer retries much later, with the same Nats-Msg-Id: JetStream's window is over.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let subject = env.subject_for(&first);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", meterline_schemas::ledger::msg_id("test/producer", "late-retry").as_str());
    let ack = env.js.publish_with_headers(subject, headers, first.clone().into()).await.unwrap().await.unwrap();
    assert!(!ack.duplicate, "JetStream stored the retry again: its own window is over");

    // A new ingest process (the index rebuilt from the ledger) drops it.
    let (ok, stdout, _) = env.meterline(&["ingest", "--until-idle"], &[]);
    assert!(ok && stdout.contains("0 events to the ledger, 1 duplicates dropped"), "{stdout}");
    let t = ledger_totals(&env.ledger_path());
    assert_eq!((t.rows, t.distinct_events, t.value_sum_nanos), (1, 1, 42_000_000_000));
    env.cleanup().await;
}
