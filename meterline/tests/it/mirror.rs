//! The ClickHouse mirror of the ledger: exact copies, idempotent passes, repair of interrupted
//! passes, and the outage the ingest issue requires (ClickHouse stopped during ingest, started
//! again, mirror complete afterwards) on a private ClickHouse server started by the test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arrow::array::{Array, Decimal128Array};
use clickhouse::Row;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rust_decimal::Decimal;
use serde::Deserialize;

use meterline_ingest::apikeys::ApiKeyStore;
use meterline_ingest::mirror::{Mirror, MirrorReport};
use meterline_ingest::segment::Ledger;
use meterline_schemas::clickhouse::{ClickHouse, ClickHouseConfig, Secret};
use meterline_schemas::money::from_scaled_i128;

use crate::common::{TestEnv, event, get_metrics};

const CATALOG: &str = r#"
meters:
  - { key: calls, event_type: api.request, aggregation: COUNT }
  - { key: users, event_type: api.request, aggregation: UNIQUE_COUNT, value: user }
  - { key: tokens, event_type: llm.completion, aggregation: SUM, value: tokens, group_by: { model: model } }
"#;

fn d(s: &str) -> Decimal {
    Decimal::from_str_exact(s).unwrap()
}

fn ts(s: &str) -> u32 {
    u32::try_from(chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp()).unwrap()
}

fn call(id: &str, who: &str, t: &str, user: &str) -> String {
    event(id, "api.request", who, t, &format!(r#"{{"user":"{user}"}}"#))
}

fn tok(id: &str, who: &str, t: &str, model: &str, n: &str) -> String {
    event(id, "llm.completion", who, t, &format!(r#"{{"model":"{model}","tokens":{n}}}"#))
}

#[derive(Debug, Row, Deserialize)]
struct MeterStat {
    meter: String,
    rows: u64,
    value_sum: Option<i128>,
}

/// (meter, rows, sum of values) from `usage_events`, without `FINAL`.
async fn per_meter(ch: &ClickHouse) -> Vec<(String, u64, Option<Decimal>)> {
    ch.client()
        .query("SELECT meter, count() AS rows, sum(value) AS value_sum FROM usage_events GROUP BY meter ORDER BY meter")
        .fetch_all::<MeterStat>()
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.meter, m.rows, m.value_sum.map(from_scaled_i128)))
        .collect()
}

#[derive(Debug, Row, Deserialize)]
struct Hourly {
    customer: String,
    meter: String,
    group_key: String,
    hour: u32,
    events: u64,
    value_sum: i128,
}

async fn hourly(ch: &ClickHouse) -> Vec<(String, String, String, u32, u64, Decimal)> {
    ch.client()
        .query(
            "SELECT customer, meter, group_key, toUnixTimestamp(hour) AS hour, sum(events) AS events, sum(value_sum) AS value_sum \
             FROM usage_hourly GROUP BY customer, meter, group_key, hour ORDER BY customer, meter, group_key, hour",
        )
        .fetch_all::<Hourly>()
        .await
        .unwrap()
        .into_iter()
        .map(|h| (h.customer, h.meter, h.group_key, h.hour, h.events, from_scaled_i128(h.value_sum)))
        .collect()
}

async fn count(ch: &ClickHouse, sql: &str) -> u64 {
    ch.client().query(sql).fetch_one::<u64>().await.unwrap()
}

/// Rows and the sum of `value` over every segment of the ledger, read from the Parquet files.
fn ledger_rows(root: &Path) -> (u64, Decimal) {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() && path.file_name().is_some_and(|n| n != "quarantine") {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "parquet") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(root, &mut files);
    let (mut rows, mut sum) = (0u64, 0i128);
    for f in files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&f).unwrap()).unwrap().build().unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            rows += batch.num_rows() as u64;
            let values = batch.column_by_name("value").unwrap().as_any().downcast_ref::<Decimal128Array>().unwrap();
            sum += values.iter().flatten().sum::<i128>();
        }
    }
    (rows, from_scaled_i128(sum))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_after_ingest_is_exact_and_idempotent() {
    let mut env = TestEnv::new("mirror").await;
    env.ingest.segment_max_events = 4; // several segments
    let store = env.catalog(CATALOG).await;
    for m in [
        call("a1", "alice", "2026-10-05T10:05:00Z", "u1"),
        call("a2", "alice", "2026-10-05T10:59:59.500Z", "u2"),
        format!("[{}]", call("a2", "alice", "2026-10-05T10:59:59.500Z", "u2")), // retried in a batch: exact dedup drops it
        call("a3", "alice", "2026-10-05T11:00:00Z", "u1"),
        tok("t1", "alice", "2026-10-05T10:10:00Z", "gpt", "0.000000001"),
        tok("t2", "alice", "2026-10-05T10:20:00Z", "gpt", "12345.5"),
        tok("t3", "alice", "2026-10-05T10:30:00Z", "claude", "7"),
        tok("t4", "bob", "2026-11-01T00:00:00Z", "gpt", "100"),
        tok("t5", "bob", "2026-10-05T10:40:00Z", "gpt", r#""lots""#), // invalid: dead letter
    ] {
        env.publish(&m).await;
    }
    let catalog = store.load().await.unwrap();
    let ledger = Ledger::open(&meterline_ingest::LedgerConfig { path: env.ledger_path() }).unwrap();
    let report = env.ingest_until_idle(&catalog).await;
    assert_eq!((report.valid, report.duplicates, report.invalid), (7, 1, 1));
    // 3 api.request events × 2 meters (calls, users) + 4 llm.completion events × 1 meter.
    assert_eq!(ledger_rows(&env.ledger_path()), (10, d("12452.500000001")));
    let segments = ledger.list().await.unwrap().len();
    assert!(segments >= 2, "October and November rows are in different segments: {segments}");

    let ch = env.clickhouse().await;
    let mut mirror = Mirror::new(ledger.clone(), ch.clone());
    let first = mirror.catch_up().await.unwrap();
    assert_eq!(first, MirrorReport { segments, rows: 10, resumed: 0, skipped: vec![] });

    // tokens: 0.000000001 + 12345.5 + 7 + 100 = 12452.500000001; COUNT and UNIQUE_COUNT rows
    // carry no value (NULL).
    let expected_meters =
        vec![("calls".to_string(), 3, None), ("tokens".to_string(), 4, Some(d("12452.500000001"))), ("users".to_string(), 3, None)];
    assert_eq!(per_meter(&ch).await, expected_meters);
    // Event times are whole seconds in ClickHouse: 10:59:59.500 → 10:59:59 (and hour 10).
    let a2: Vec<u32> = ch
        .client()
        .query("SELECT toUnixTimestamp(event_time) FROM usage_events WHERE event_id = 'a2' ORDER BY meter")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(a2, vec![ts("2026-10-05T10:59:59Z"), ts("2026-10-05T10:59:59Z")]);
    let keys: Vec<String> =
        ch.client().query("SELECT DISTINCT hex(event_key) FROM usage_events WHERE event_id = 't1'").fetch_all().await.unwrap();
    assert_eq!(keys, vec![meterline_schemas::ledger::msg_id("test/producer", "t1").to_uppercase()]);

    let s = |x: &str| x.to_string();
    let expected_hourly = vec![
        (s("alice"), s("calls"), s(""), ts("2026-10-05T10:00:00Z"), 2, d("0")),
        (s("alice"), s("calls"), s(""), ts("2026-10-05T11:00:00Z"), 1, d("0")),
        (s("alice"), s("tokens"), s(r#"{"model":"claude"}"#), ts("2026-10-05T10:00:00Z"), 1, d("7")),
        (s("alice"), s("tokens"), s(r#"{"model":"gpt"}"#), ts("2026-10-05T10:00:00Z"), 2, d("12345.500000001")),
        (s("alice"), s("users"), s(""), ts("2026-10-05T10:00:00Z"), 2, d("0")),
        (s("alice"), s("users"), s(""), ts("2026-10-05T11:00:00Z"), 1, d("0")),
        (s("bob"), s("tokens"), s(r#"{"model":"gpt"}"#), ts("2026-11-01T00:00:00Z"), 1, d("100")),
    ];
    assert_eq!(hourly(&ch).await, expected_hourly);

    // A second pass inserts nothing; counts without FINAL are unchanged.
    assert_eq!(mirror.catch_up().await.unwrap(), MirrorReport::default());
    assert_eq!(count(&ch, "SELECT count() FROM usage_events").await, 10);
    assert_eq!(count(&ch, "SELECT count() FROM mirror_segments").await, segments as u64);
    assert_eq!(count(&ch, "SELECT sum(events) FROM usage_hourly").await, 10);

    // Crash between a segment's insert and its progress row, for every segment: the next pass
    // finds the rows already there and only records progress.
    ch.client().query("TRUNCATE TABLE mirror_segments").execute().await.unwrap();
    let resumed = Mirror::new(ledger.clone(), ch.clone()).catch_up().await.unwrap();
    assert_eq!(resumed, MirrorReport { segments, rows: 0, resumed: segments, skipped: vec![] });
    assert_eq!(per_meter(&ch).await, expected_meters);
    assert_eq!(hourly(&ch).await, expected_hourly);
    assert_eq!(count(&ch, "SELECT count() FROM mirror_segments FINAL").await, segments as u64);

    // A partly present segment (a1's two rows missing): exactly the missing rows are inserted.
    ch.client().query("ALTER TABLE usage_events DELETE WHERE event_id = 'a1'").execute().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&ch, "SELECT count() FROM usage_events").await != 8 {
        assert!(Instant::now() < deadline, "the DELETE mutation did not finish within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ch.client().query("TRUNCATE TABLE mirror_segments").execute().await.unwrap();
    let repaired = Mirror::new(ledger.clone(), ch.clone()).catch_up().await.unwrap();
    assert_eq!(repaired, MirrorReport { segments, rows: 2, resumed: segments, skipped: vec![] });
    assert_eq!(per_meter(&ch).await, expected_meters);

    env.cleanup().await;
}

// ---------------------------------------------------------------- the outage ---

/// A ClickHouse server of this test alone: own data directory and loopback ports, configured
/// like `deploy/local/services.sh` does. Killed on drop.
struct PrivateClickHouse {
    dir: tempfile::TempDir,
    http_port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn clickhouse_server_bin() -> PathBuf {
    if let Ok(p) = std::env::var("METERLINE_CLICKHOUSE_SERVER") {
        return PathBuf::from(p);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|d| d.join("clickhouse-server"))
        .find(|p| p.is_file())
        .expect("clickhouse-server must be installed (deploy/local/services.sh installs it) or named by METERLINE_CLICKHOUSE_SERVER")
}

impl PrivateClickHouse {
    async fn start() -> PrivateClickHouse {
        let dir = tempfile::tempdir().unwrap();
        let (http_port, tcp_port) = (free_port(), free_port());
        let root = dir.path().display().to_string();
        for sub in ["data", "tmp", "user_files", "format_schemas", "log"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let config = format!(
            r#"<?xml version="1.0"?>
<yandex>
    <logger>
        <level>information</level>
        <log>{root}/log/clickhouse-server.log</log>
        <errorlog>{root}/log/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>1</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <max_connections>64</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>50</max_concurrent_queries>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <mark_cache_size>67108864</mark_cache_size>
    <path>{root}/data/</path>
    <tmp_path>{root}/tmp/</tmp_path>
    <user_files_path>{root}/user_files/</user_files_path>
    <format_schema_path>{root}/format_schemas/</format_schema_path>
    <users_config>{root}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
</yandex>
"#
        );
        std::fs::write(dir.path().join("config.xml"), config).unwrap();
        let users = r#"<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>1000000000</max_memory_usage><allow_experimental_low_cardinality_type>1</allow_experimental_low_cardinality_type></default></profiles>
    <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
"#;
        std::fs::write(dir.path().join("users.xml"), users).unwrap();
        let mut ch = PrivateClickHouse { dir, http_port, child: None };
        ch.run().await;
        ch
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    fn config(&self, database: &str) -> ClickHouseConfig {
        ClickHouseConfig { url: self.url(), database: database.into(), user: "default".into(), password: Secret::default() }
    }

    /// Starts the server (again, on the same data directory) and waits until `/ping` answers.
    async fn run(&mut self) {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("log/stdout.log")).unwrap();
        let child = Command::new(clickhouse_server_bin())
            .arg(format!("--config-file={}", self.dir.path().join("config.xml").display()))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if ping(self.http_port) {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("private clickhouse-server exited during startup ({status}): {}", self.log_tail());
            }
            assert!(Instant::now() < deadline, "private clickhouse-server not ready after 60 s: {}", self.log_tail());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGKILL: the harshest stop, nothing flushed or finished.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        for f in ["log/stdout.log", "log/clickhouse-server.err.log"] {
            let s = std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
            let lines: Vec<&str> = s.lines().collect();
            text.push_str(&format!("\n--- {f} ---\n{}", lines[lines.len().saturating_sub(20)..].join("\n")));
        }
        text
    }
}

impl Drop for PrivateClickHouse {
    fn drop(&mut self) {
        self.kill();
    }
}

fn ping(port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /ping HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.ends_with("Ok.\n")
}

/// A child process killed on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `f` every 200 ms until it returns `want` or `limit` passes; returns the last value.
async fn wait_for<F, Fut, T>(limit: Duration, want: T, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
    T: PartialEq,
{
    let deadline = Instant::now() + limit;
    loop {
        let got = f().await;
        if got == want || Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `count()` of `usage_events` on a server that may be down (`None` then).
async fn mirrored_rows(cfg: &ClickHouseConfig) -> Option<u64> {
    let ch = ClickHouse::connect(cfg).await.ok()?;
    ch.client().query("SELECT count() FROM usage_events").fetch_one::<u64>().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_stopped_during_ingest_then_mirror_completes() {
    let env = TestEnv::new("mirror_outage").await;
    env.catalog(CATALOG).await;
    let mut server = PrivateClickHouse::start().await;
    let private = server.config(&env.ch.database);
    meterline_schemas::clickhouse::migrate(&private).await.unwrap();

    // Phase 1: 40 token events, tokens 1..=40 (sum 820), sent as 4 messages of 10 events.
    let minute = |i: usize| format!("2026-10-05T{:02}:{:02}:00Z", 10 + i / 60, i % 60);
    let phase1: Vec<String> = (1..=40).map(|i| tok(&format!("p1-{i}"), "alice", &minute(i), "gpt", &i.to_string())).collect();
    for chunk in phase1.chunks(10) {
        env.publish(&format!("[{}]", chunk.join(","))).await;
    }

    let logs = tempfile::tempdir().unwrap();
    let stderr_path = logs.path().join("ingest.stderr");
    // Ingest's metrics endpoint shows the mirror's backlog and state.
    let key = ApiKeyStore::open(&env.js, &env.bucket_prefix).await.unwrap().create("prometheus").await.unwrap().expose().to_owned();
    let metrics_addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let metric = |name: &'static str| {
        let auth = format!("Bearer {key}");
        async move {
            let (_, body) = get_metrics(metrics_addr, Some(&auth)).await;
            body.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<u64>().ok())
        }
    };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meterline"));
    cmd.arg("ingest")
        .current_dir(env.ledger.path())
        .envs(env.child_env())
        .env("METERLINE__INGEST__METRICS_LISTEN", metrics_addr.to_string())
        .env("METERLINE__CLICKHOUSE__URL", server.url())
        .env("METERLINE__MIRROR__INTERVAL_MS", "200")
        .env("METERLINE_LOG", "warn,meterline_ingest::mirror=info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    let mut ingest = ChildGuard(cmd.spawn().unwrap());
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();

    let got = wait_for(Duration::from_secs(60), Some(40), || mirrored_rows(&private)).await;
    assert_eq!(got, Some(40), "phase 1 mirrored while ClickHouse runs; ingest log:\n{}", stderr());
    assert_eq!(wait_for(Duration::from_secs(30), Some(40), || metric("meterline_mirror_rows_total")).await, Some(40));
    let phase1_segments = metric("meterline_mirror_segments_total").await.unwrap();
    assert!(phase1_segments >= 1);
    assert_eq!((metric("meterline_mirror_down").await, metric("meterline_mirror_pending_segments").await), (Some(0), Some(0)));

    // ClickHouse dies; ingest keeps going.
    server.kill();
    // Phase 2: 60 token events, tokens i + 0.5 for i in 1..=60 (sum 1860), and 10 api.request
    // events (2 rows each: calls and users, no value).
    let phase2: Vec<String> = (1..=60)
        .map(|i| tok(&format!("p2-{i}"), "alice", &minute(i), "gpt", &format!("{i}.5")))
        .chain((1..=10).map(|i| call(&format!("c-{i}"), "bob", &minute(i), &format!("u{}", i % 3))))
        .collect();
    for chunk in phase2.chunks(10) {
        env.publish(&format!("[{}]", chunk.join(","))).await;
    }
    let ledger_path = env.ledger_path();
    let rows = wait_for(Duration::from_secs(60), (120, d("2680")), || {
        let p = ledger_path.clone();
        async move { ledger_rows(&p) }
    })
    .await;
    assert_eq!(rows, (120, d("2680")), "every event is in the ledger while ClickHouse is down; ingest log:\n{}", stderr());
    assert!(ingest.0.try_wait().unwrap().is_none(), "ingest keeps running without ClickHouse:\n{}", stderr());
    // And every message is acked: acks never waited for ClickHouse.
    let pending = wait_for(Duration::from_secs(30), (0, 0), || async {
        let mut c: async_nats::jetstream::consumer::PullConsumer = env
            .js
            .get_stream(&env.ingest.stream)
            .await
            .unwrap()
            .get_consumer(&meterline_ingest::streams::consumer_name(&env.ingest, 0))
            .await
            .unwrap();
        let info = c.info().await.unwrap();
        (info.num_pending, info.num_ack_pending)
    })
    .await;
    assert_eq!(pending, (0, 0), "all messages acked while ClickHouse is down");
    assert_eq!(mirrored_rows(&private).await, None, "ClickHouse is really down");

    // The mirror noticed the outage; let it retry a few times (200, 400, 800 ms backoff) so the
    // log shows one warning for many attempts.
    let noticed = wait_for(Duration::from_secs(30), true, || async { stderr().contains("clickhouse mirror paused") }).await;
    assert!(noticed, "the mirror logs the outage:\n{}", stderr());
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The metrics say so, with the backlog counted from the ledger: every segment since phase 1.
    let in_ledger = Ledger::open(&meterline_ingest::LedgerConfig { path: env.ledger_path() }).unwrap().list().await.unwrap().len() as u64;
    assert!(in_ledger > phase1_segments);
    assert_eq!(metric("meterline_mirror_down").await, Some(1));
    assert_eq!(
        wait_for(Duration::from_secs(30), Some(in_ledger - phase1_segments), || metric("meterline_mirror_pending_segments")).await,
        Some(in_ledger - phase1_segments)
    );

    // ClickHouse comes back on the same data directory; the mirror catches up to the ledger.
    server.run().await;
    let got = wait_for(Duration::from_secs(60), Some(120), || mirrored_rows(&private)).await;
    assert_eq!(got, Some(120), "mirror caught up after the outage; ingest log:\n{}", stderr());

    let ch = ClickHouse::connect(&private).await.unwrap();
    assert_eq!(
        per_meter(&ch).await,
        vec![("calls".to_string(), 10, None), ("tokens".to_string(), 100, Some(d("2680"))), ("users".to_string(), 10, None)]
    );
    let ledger = Ledger::open(&meterline_ingest::LedgerConfig { path: env.ledger_path() }).unwrap();
    let segments = ledger.list().await.unwrap().len() as u64;
    // The progress row follows a segment's insert: wait for it too.
    let recorded = wait_for(Duration::from_secs(30), segments, || count(&ch, "SELECT count(DISTINCT segment) FROM mirror_segments")).await;
    assert_eq!(recorded, segments);
    assert_eq!(wait_for(Duration::from_secs(30), Some(0), || metric("meterline_mirror_down")).await, Some(0));
    assert_eq!(metric("meterline_mirror_pending_segments").await, Some(0));
    assert_eq!((metric("meterline_mirror_segments_total").await, metric("meterline_mirror_rows_total").await), (Some(segments), Some(120)));
    assert_eq!(count(&ch, "SELECT count(DISTINCT segment) FROM usage_events").await, segments);
    assert_eq!(count(&ch, "SELECT sum(events) FROM usage_hourly").await, 120);
    let hourly_sum: i128 = ch.client().query("SELECT sum(value_sum) FROM usage_hourly").fetch_one().await.unwrap();
    assert_eq!(from_scaled_i128(hourly_sum), d("2680"));

    // Ctrl-C: ingest stops, the mirror with it, cleanly.
    let pid = ingest.0.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = ingest.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "ingest did not stop within 30 s of SIGINT:\n{}", stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let log = stderr();
    assert!(status.success(), "ingest exit {status}:\n{log}");
    // One warning for the outage, not one per attempt, and one line when it ended.
    assert_eq!(log.matches("clickhouse mirror paused").count(), 1, "{log}");
    assert_eq!(log.matches("clickhouse mirror resumed").count(), 1, "{log}");

    drop(server);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_starts_and_acks_while_clickhouse_is_unreachable() {
    let env = TestEnv::new("mirror_down").await;
    env.catalog(CATALOG).await;
    for i in 1..=3 {
        env.publish(&tok(&format!("x{i}"), "alice", "2026-10-05T10:00:00Z", "gpt", "1")).await;
    }
    // Nothing listens on this port: the mirror cannot connect at start, ingest must not care.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let (ok, stdout, stderr) = env
        .meterline(&["ingest", "--until-idle"], &[("METERLINE__CLICKHOUSE__URL", &nowhere), ("METERLINE_LOG", "warn"), ("NO_COLOR", "1")]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("3 events to the ledger, 0 duplicates dropped, 0 dead-lettered"), "{stdout}");
    assert_eq!(stderr.matches("clickhouse mirror paused").count(), 1, "{stderr}");
    assert!(!stderr.contains("ERROR"), "{stderr}");
    assert_eq!(ledger_rows(&env.ledger_path()), (3, d("3")));

    // Later, with ClickHouse reachable, `meterline mirror --once` catches up, and only once.
    let (ok, stdout, stderr) = env.meterline(&["mirror", "--once"], &[]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains(" segments, 3 rows inserted (0 resumed after an interrupted pass, 0 skipped)"), "{stdout}");
    let (ok, stdout, stderr) = env.meterline(&["mirror", "--once"], &[]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("mirrored 0 segments, 0 rows inserted"), "{stdout}");
    let ch = env.clickhouse().await;
    assert_eq!(per_meter(&ch).await, vec![("tokens".to_string(), 3, Some(d("3")))]);
    env.cleanup().await;
}
