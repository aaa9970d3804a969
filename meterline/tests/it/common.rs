//! Per-test isolated environment.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use async_nats::HeaderMap;
use async_nats::jetstream;
use meterline_ingest::IngestConfig;
use meterline_invoicer::{Billing, CloseOptions, CloseReport, Settings, close_period};
use meterline_schemas::catalog::Catalog;
use meterline_schemas::catalog::CatalogFile;
use meterline_schemas::catalog_store::CatalogStore;
use meterline_schemas::clickhouse::{ClickHouse, ClickHouseConfig, Secret};
use meterline_schemas::ledger::msg_id;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Streams, buckets, database and ledger of one test.
pub struct TestEnv {
    pub nats_url: String,
    pub ch: ClickHouseConfig,
    pub ingest: IngestConfig,
    pub bucket_prefix: String,
    /// Billing events stream and subject prefix of this test.
    pub billing_stream: String,
    pub billing_prefix: String,
    pub ledger: tempfile::TempDir,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
}

/// A dead letter as read back from the DLQ stream.
#[derive(Debug)]
pub struct DeadLetterSeen {
    pub subject: String,
    pub field: String,
    pub value: String,
    pub reason: String,
    pub payload: String,
}

impl TestEnv {
    pub async fn new(tag: &str) -> TestEnv {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("t_{tag}_{}_{n}", std::process::id());
        let nats_url = std::env::var("METERLINE__NATS__URL").unwrap_or_else(|_| "nats://127.0.0.1:14222".into());
        let ch_url = std::env::var("METERLINE__CLICKHOUSE__URL").unwrap_or_else(|_| "http://127.0.0.1:18123".into());
        let upper = name.to_uppercase();
        let ingest = IngestConfig {
            stream: format!("{upper}_USAGE"),
            subject_prefix: format!("{name}.usage"),
            dlq_stream: format!("{upper}_DLQ"),
            dlq_subject_prefix: format!("{name}.dlq"),
            consumer: format!("{name}_ingest"),
            segment_max_events: 1000,
            batch_max_messages: 20_000,
            linger_ms: 50,
            ack_wait_secs: 2,
            idle_timeout_ms: 300,
            duplicate_window_secs: 120,
            partitions: 1,
            lease_secs: 3,
            dedup_horizon_days: 45,
            metrics_listen: String::new(),
        };
        let ch = ClickHouseConfig { url: ch_url, database: name.clone(), user: "default".into(), password: Secret::default() };
        let client = async_nats::connect(nats_url.as_str())
            .await
            .unwrap_or_else(|e| panic!("NATS must run at {nats_url} (make test starts it): {e}"));
        let js = jetstream::new(client.clone());
        meterline_schemas::clickhouse::migrate(&ch)
            .await
            .unwrap_or_else(|e| panic!("ClickHouse must run at {} (make test starts it): {e}", ch.url));
        TestEnv {
            bucket_prefix: format!("{name}_"),
            billing_stream: format!("{upper}_BILLING"),
            billing_prefix: format!("{name}.billing"),
            nats_url,
            ch,
            ingest,
            ledger: tempfile::tempdir().expect("temp dir"),
            client,
            js,
        }
    }

    pub fn ledger_path(&self) -> PathBuf {
        self.ledger.path().to_path_buf()
    }

    pub async fn clickhouse(&self) -> ClickHouse {
        ClickHouse::connect(&self.ch).await.expect("connect clickhouse")
    }

    pub async fn catalog(&self, yaml: &str) -> CatalogStore {
        let store = CatalogStore::open(&self.js, &self.bucket_prefix).await.expect("open catalog");
        let file = CatalogFile::parse(yaml, "yaml").expect("test catalog parses");
        store.apply(&file).await.expect("test catalog applies");
        store
    }

    /// Publishes one message body; single events get their `Nats-Msg-Id` like `events publish`.
    pub async fn publish(&self, body: &str) {
        meterline_ingest::streams::ensure_streams(&self.js, &self.ingest).await.expect("streams");
        let mut headers = HeaderMap::new();
        if let Ok(ev) = meterline_schemas::event::decode_event(body) {
            headers.insert("Nats-Msg-Id", msg_id(&ev.source, &ev.id).as_str());
        }
        self.js
            .publish_with_headers(self.subject_for(body), headers, body.to_owned().into())
            .await
            .expect("publish")
            .await
            .expect("publish ack");
    }

    /// Runs ingest in-process over this test's stream into its ledger until the stream is drained.
    pub async fn ingest_until_idle(&self, catalog: &Catalog) -> meterline_ingest::IngestReport {
        let ledger = meterline_ingest::segment::Ledger::open(&meterline_ingest::LedgerConfig { path: self.ledger_path() }).unwrap();
        meterline_ingest::run(
            &self.js,
            &self.ingest,
            &ledger,
            catalog,
            meterline_ingest::RunOptions { until_idle: true, ..Default::default() },
            std::sync::Arc::new(meterline_ingest::IngestCounters::default()),
            tokio_util::sync::CancellationToken::new(),
        )
        .await
        .unwrap()
    }

    /// How many dead letters the DLQ stream holds.
    pub async fn dead_letters_count(&self) -> u64 {
        let mut dlq = self.js.get_stream(&self.ingest.dlq_stream).await.unwrap();
        dlq.info().await.unwrap().state.messages
    }

    /// Every dead letter so far: (subject, error field, error value, reason, payload).
    pub async fn dead_letters(&self) -> Vec<DeadLetterSeen> {
        use futures::StreamExt;
        let dlq = self.js.get_stream(&self.ingest.dlq_stream).await.unwrap();
        let reader = dlq.create_consumer(jetstream::consumer::pull::Config { durable_name: None, ..Default::default() }).await.unwrap();
        let mut msgs = reader.fetch().max_messages(100).expires(std::time::Duration::from_secs(2)).messages().await.unwrap();
        let mut seen = Vec::new();
        while let Some(Ok(m)) = msgs.next().await {
            let h = m.headers.clone().unwrap();
            let header = |name: &str| h.get(name).unwrap().to_string();
            seen.push(DeadLetterSeen {
                subject: m.subject.to_string(),
                field: header("Meterline-Error-Field"),
                value: header("Meterline-Error-Value"),
                reason: header("Meterline-Error"),
                payload: String::from_utf8(m.payload.to_vec()).unwrap(),
            });
            m.ack().await.unwrap();
        }
        seen
    }

    /// The subject a producer would use: the customer's for a single event, an unrouted one
    /// otherwise (ingest reroutes or dead-letters what is in it).
    pub fn subject_for(&self, body: &str) -> String {
        match meterline_schemas::event::decode_event(body) {
            Ok(ev) => self.ingest.publish_subject(&ev.subject),
            Err(_) => meterline_ingest::partition::unrouted_subject(&self.ingest.subject_prefix),
        }
    }

    /// Environment for a `meterline` child process pointing at this test's namespace.
    pub fn child_env(&self) -> Vec<(String, String)> {
        let i = &self.ingest;
        [
            ("NATS__URL", self.nats_url.clone()),
            ("CLICKHOUSE__URL", self.ch.url.clone()),
            ("CLICKHOUSE__DATABASE", self.ch.database.clone()),
            ("LEDGER__PATH", self.ledger_path().display().to_string()),
            ("INGEST__STREAM", i.stream.clone()),
            ("INGEST__SUBJECT_PREFIX", i.subject_prefix.clone()),
            ("INGEST__DLQ_STREAM", i.dlq_stream.clone()),
            ("INGEST__DLQ_SUBJECT_PREFIX", i.dlq_subject_prefix.clone()),
            ("INGEST__CONSUMER", i.consumer.clone()),
            ("INGEST__SEGMENT_MAX_EVENTS", i.segment_max_events.to_string()),
            ("INGEST__BATCH_MAX_MESSAGES", i.batch_max_messages.to_string()),
            ("INGEST__LINGER_MS", i.linger_ms.to_string()),
            ("INGEST__ACK_WAIT_SECS", i.ack_wait_secs.to_string()),
            ("INGEST__IDLE_TIMEOUT_MS", i.idle_timeout_ms.to_string()),
            ("INGEST__PARTITIONS", i.partitions.to_string()),
            ("INGEST__LEASE_SECS", i.lease_secs.to_string()),
            ("INGEST__DUPLICATE_WINDOW_SECS", i.duplicate_window_secs.to_string()),
            ("INGEST__METRICS_LISTEN", i.metrics_listen.clone()),
            ("CATALOG__BUCKET_PREFIX", self.bucket_prefix.clone()),
            ("BILLING__EVENTS_STREAM", self.billing_stream.clone()),
            ("BILLING__EVENTS_SUBJECT_PREFIX", self.billing_prefix.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (format!("METERLINE__{k}"), v))
        .collect()
    }

    /// Runs the `meterline` binary with this namespace; returns (success, stdout, stderr).
    pub fn meterline(&self, args: &[&str], extra_env: &[(&str, &str)]) -> (bool, String, String) {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_meterline"));
        cmd.args(args).current_dir(self.ledger.path()).envs(self.child_env());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run meterline");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// The invoice lifecycle with the default `[billing]` settings, in this test's namespace.
    pub async fn billing(&self) -> Billing {
        self.billing_with(Settings::default()).await
    }

    /// The invoice lifecycle with `settings`, in this test's namespace.
    pub async fn billing_with(&self, settings: Settings) -> Billing {
        let numbering = format!("{}numbering", self.bucket_prefix);
        Billing::open(self.clickhouse().await, &self.js, &numbering, &self.billing_stream, &self.billing_prefix, settings).await.unwrap()
    }

    /// Closes `period` with the clock at `now` (RFC 3339).
    pub async fn close(&self, catalog: &Catalog, period: &str, now: &str) -> CloseReport {
        let opts = CloseOptions { now: chrono::DateTime::parse_from_rfc3339(now).unwrap().to_utc(), finalize: false };
        close_period(&self.billing().await, &self.ledger_path(), catalog, period.parse().unwrap(), opts).await.unwrap()
    }

    /// Removes the test's streams, buckets and database.
    pub async fn cleanup(self) {
        for s in [&self.ingest.stream, &self.ingest.dlq_stream, &self.billing_stream] {
            let _ = self.js.delete_stream(s).await;
        }
        for kind in [
            "meters",
            "plans",
            "customers",
            "subscriptions",
            "tax_rates",
            "coupons",
            "credit_grants",
            "rate_tables",
            "api_keys",
            "numbering",
        ] {
            let _ = self.js.delete_key_value(format!("{}{kind}", self.bucket_prefix)).await;
        }
        let _ = meterline_schemas::clickhouse::drop_database(&self.ch).await;
        let _ = self.client.flush().await;
    }
}

/// A CloudEvent as JSON text.
pub fn event(id: &str, ty: &str, subject: &str, time: &str, data: &str) -> String {
    format!(
        r#"{{"specversion":"1.0","id":"{id}","source":"test/producer","type":"{ty}","subject":"{subject}","time":"{time}","data":{data}}}"#
    )
}

/// Number of ledger segments under `root`.
pub fn segment_count(root: &Path) -> usize {
    segment_files(root).len()
}

/// The ledger segments under `root` (at any depth): `.parquet` files in a `month=` directory,
/// not quarantined. Other Parquet files (the close's `rated-calls/period=…/`) are not segments.
fn segment_files(root: &Path) -> Vec<PathBuf> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "quarantine") {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|x| x == "parquet")
                && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("month="))
            {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out
}

/// What the ledger under `root` holds, read straight from its Parquet files.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LedgerTotals {
    /// Rows (one per event and meter).
    pub rows: usize,
    /// Distinct event keys.
    pub distinct_events: usize,
    /// Σ value, as integer units of 10⁻⁹ (the column's scale).
    pub value_sum_nanos: i128,
    /// Segment files.
    pub segments: usize,
}

pub fn ledger_totals(root: &Path) -> LedgerTotals {
    use arrow::array::{Array, Decimal128Array, FixedSizeBinaryArray};
    let paths = segment_files(root);
    let mut t = LedgerTotals { segments: paths.len(), ..Default::default() };
    let mut keys = std::collections::HashSet::new();
    for p in paths {
        let file = std::fs::File::open(&p).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            t.rows += batch.num_rows();
            let k = batch.column_by_name("event_key").unwrap().as_any().downcast_ref::<FixedSizeBinaryArray>().unwrap();
            for i in 0..k.len() {
                keys.insert(k.value(i).to_vec());
            }
            let v = batch.column_by_name("value").unwrap().as_any().downcast_ref::<Decimal128Array>().unwrap();
            t.value_sum_nanos += v.iter().flatten().sum::<i128>();
        }
    }
    t.distinct_events = keys.len();
    t
}

/// `GET /metrics` on `addr` with an optional `Authorization` header: (status, body).
pub async fn get_metrics(addr: std::net::SocketAddr, auth: Option<&str>) -> (hyper::StatusCode, String) {
    use http_body_util::{BodyExt, Empty};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let mut req = hyper::Request::get(format!("http://{addr}/metrics"));
    if let Some(a) = auth {
        req = req.header(hyper::header::AUTHORIZATION, a);
    }
    let resp = client.request(req.body(Empty::new()).unwrap()).await.unwrap();
    let status = resp.status();
    (status, String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap())
}
