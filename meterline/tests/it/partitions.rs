//! Partitions: JetStream subject mapping puts each customer on one partition, two workers own
//! disjoint sets side by side, events of other partitions are rerouted, a third worker waits for
//! a held lease, and every event lands exactly once in its own partition's segments.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arrow::array::{Array, StringArray};
use meterline_ingest::partition::{customer_token, partition_of, partition_of_subject};
use meterline_ingest::segment::segment_partition;

use crate::common::{TestEnv, event, ledger_totals};

const CATALOG: &str = r#"
meters:
  - { key: tokens, event_type: llm.completion, aggregation: SUM, value: tokens }
"#;

fn spawn(env: &TestEnv, partitions: &str, log: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_meterline"))
        .args(["ingest", "--partitions", partitions])
        .current_dir(env.ledger.path())
        .envs(env.child_env())
        .env("METERLINE_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(env.ledger.path().join(log)).unwrap())
        .spawn()
        .expect("spawn meterline ingest")
}

/// Stops a worker like Ctrl-C does and returns its summary line.
fn interrupt(child: Child) -> String {
    let ok = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill -INT");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "worker exits cleanly on SIGINT");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_four_partitions_and_count_every_event_once() {
    let mut env = TestEnv::new("parts").await;
    env.ingest.partitions = 4;
    env.ingest.segment_max_events = 50;
    env.catalog(CATALOG).await;
    meterline_ingest::streams::ensure_streams(&env.js, &env.ingest).await.unwrap();

    // 40 customers × 10 events; event (c, k) carries tokens = 10·c + k + 1.
    // Σ = Σ_c Σ_k (10c + k + 1) = Σ_{n=1}^{400} n = 80,200.
    let ev = |c: usize, k: usize| {
        event(
            &format!("c{c}-e{k}"),
            "llm.completion",
            &format!("c{c}"),
            "2026-10-05T12:00:00Z",
            &format!(r#"{{"tokens":{}}}"#, 10 * c + k + 1),
        )
    };
    // k < 5: single events on their customer's subject; k ≥ 5: batches mixing customers on the
    // unrouted subject (its partition reroutes the others); plus every k = 0 event again inside a
    // mixed batch: a duplicate that reaches its partition only by rerouting.
    for c in 0..40 {
        for k in 0..5 {
            env.publish(&ev(c, k)).await;
        }
    }
    let plain = meterline_ingest::partition::unrouted_subject(&env.ingest.subject_prefix);
    for k in 5..10 {
        for group in (0..40).collect::<Vec<_>>().chunks(8) {
            let body = format!("[{}]", group.iter().map(|&c| ev(c, k)).collect::<Vec<_>>().join(","));
            env.js.publish(plain.clone(), body.into()).await.unwrap().await.unwrap();
        }
    }
    let dups = format!("[{}]", (0..40).map(|c| ev(c, 0)).collect::<Vec<_>>().join(","));
    env.js.publish(plain.clone(), dups.into()).await.unwrap().await.unwrap();

    // The stream stored every single event under the partition the server's mapping chose for its
    // customer's token, and it is the one `partition_of` computes (FNV-1a of the token, modulo 4).
    let mut stream = env.js.get_stream(&env.ingest.stream).await.unwrap();
    let state = stream.info().await.unwrap().state.clone();
    let mut per_partition = [0usize; 4];
    for seq in state.first_sequence..=state.last_sequence {
        let m = stream.get_raw_message(seq).await.unwrap();
        let n = partition_of_subject(&env.ingest.subject_prefix, &m.subject).unwrap_or_else(|| panic!("stored as {}", m.subject));
        if let Ok(ev) = meterline_schemas::event::decode_event(std::str::from_utf8(&m.payload).unwrap()) {
            assert_eq!(n, partition_of(&customer_token(&ev.subject), 4), "{}: {}", m.subject, ev.subject);
            per_partition[n as usize] += 1;
        } else {
            assert_eq!(n, partition_of("unrouted", 4), "batches go where their subject's token maps");
        }
    }
    assert_eq!(per_partition.iter().sum::<usize>(), 200);
    assert!(per_partition.iter().all(|&n| n > 0), "40 customers spread over 4 partitions: {per_partition:?}");

    // Two workers side by side; a third asking for partition 1 waits for its lease.
    let a = spawn(&env, "0-1", "a.log");
    let b = spawn(&env, "2-3", "b.log");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut c = spawn(&env, "1", "c.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    while ledger_totals(&env.ledger_path()).distinct_events < 400 {
        assert!(Instant::now() < deadline, "ledger incomplete: {:?}", ledger_totals(&env.ledger_path()));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let c_log = || std::fs::read_to_string(env.ledger.path().join("c.log")).unwrap();
    while !c_log().contains("partition is leased by another worker") {
        assert!(Instant::now() < deadline, "the third worker must wait for the lease: {}", c_log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(c.try_wait().unwrap().is_none(), "the third worker is still waiting");
    c.kill().unwrap();
    c.wait().unwrap();
    let (out_a, out_b) = (interrupt(a), interrupt(b));
    let rerouted = |out: &str| -> u64 { out.split(" rerouted").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap() };
    assert!(rerouted(&out_a) + rerouted(&out_b) > 0, "the batches' other customers were rerouted: {out_a} / {out_b}");
    assert!(!out_a.contains(": 0 events to the ledger"), "the first worker wrote its partitions' events: {out_a}");
    assert!(!out_b.contains(": 0 events to the ledger"), "the second worker wrote its partitions' events: {out_b}");

    let t = ledger_totals(&env.ledger_path());
    assert_eq!((t.distinct_events, t.rows), (400, 400), "every event exactly once");
    assert_eq!(t.value_sum_nanos, 80_200 * 1_000_000_000);

    // Each segment holds only customers of its own partition.
    let month = env.ledger_path().join("month=2026-10");
    for entry in std::fs::read_dir(&month).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        if !file.ends_with(".parquet") {
            continue;
        }
        let p = segment_partition(&file).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let customers = batch.column_by_name("customer").unwrap().as_any().downcast_ref::<StringArray>().unwrap();
            for i in 0..customers.len() {
                assert_eq!(partition_of(&customer_token(customers.value(i)), 4), p, "{file}: {}", customers.value(i));
            }
        }
    }
    env.cleanup().await;
}
