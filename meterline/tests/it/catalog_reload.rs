//! A running `meterline ingest` picks up catalog changes without a restart: a meter added and a
//! rate-table prefix added apply to the events that arrive after the apply.

use std::io::BufRead as _;
use std::time::{Duration, Instant};

use crate::common::{TestEnv, event, ledger_totals};
use crate::telecom::CATALOG;

/// The telecom test's catalog with France in the rate table and a second meter.
fn changed() -> String {
    CATALOG
        .replace(
            r#"      - prefix: "447""#,
            r#"      - { prefix: "33", description: France, increments: { first: 1, next: 1 },
          bands: [ { name: any time, from: "00:00", to: "00:00", price_per_minute: "0.04" } ] }
      - prefix: "447""#,
        )
        .replace(
            "  - { key: calls, name: Calls,",
            "  - { key: video, name: Video, event_type: video.minutes, aggregation: SUM, value: minutes }\n  - { key: calls, name: Calls,",
        )
}

/// Waits until `done` holds, polling every 50 ms for at most 20 s.
async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let t = Instant::now();
    while !done().await {
        assert!(t.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_ingest_applies_catalog_changes_from_the_next_batch() {
    let env = TestEnv::new("reload").await;
    env.catalog(CATALOG).await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_meterline"))
        .arg("ingest")
        .current_dir(env.ledger.path())
        .envs(env.child_env())
        .env("METERLINE_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    let call = |id: &str, destination: &str| {
        event(id, "call.completed", "acme", "2026-03-02T12:00:00Z", &format!(r#"{{"destination":"{destination}","duration_secs":30}}"#))
    };
    // Under the first catalog: France is not in the table and video matches no meter.
    env.publish(&call("c1", "+33 1 4020 5000")).await;
    env.publish(&event("v1", "video.minutes", "acme", "2026-03-02T12:00:00Z", r#"{"minutes":3}"#)).await;
    env.publish(&call("c2", "+44 20 7946 0000")).await;
    wait_for("two dead letters", async || env.dead_letters_count().await == 2).await;
    wait_for("one event in the ledger", async || ledger_totals(&env.ledger_path()).distinct_events == 1).await;

    // The apply reaches the running ingest; it logs the reload.
    let new = changed();
    assert!(new.contains(r#"prefix: "33""#) && new.contains("key: video"), "{new}");
    env.catalog(&new).await;
    let t = Instant::now();
    loop {
        let line = lines.recv_timeout(Duration::from_secs(20)).expect("ingest logs the reload within 20 s");
        if line.contains("catalog reloaded") {
            assert!(line.contains("meters=2") && line.contains("rate_tables=1"), "{line}");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "no reload logged");
    }
    // The same kinds of events are now accepted; nothing new is dead-lettered.
    env.publish(&call("c3", "+33 1 4020 5000")).await;
    env.publish(&event("v2", "video.minutes", "acme", "2026-03-02T12:00:00Z", r#"{"minutes":3}"#)).await;
    wait_for("three events in the ledger", async || ledger_totals(&env.ledger_path()).distinct_events == 3).await;
    assert_eq!(env.dead_letters_count().await, 2);

    child.kill().unwrap();
    child.wait().unwrap();
    env.cleanup().await;
}
