//! HTTP ingest (`meterline serve`) against the real NATS: the server runs in-process on an
//! ephemeral port, each test with its own streams and API-key bucket.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use meterline_ingest::apikeys::ApiKeyStore;
use meterline_ingest::http::{HttpConfig, HttpIngest, router, serve};
use meterline_schemas::ledger::msg_id;

use crate::common::{TestEnv, event};

const SINGLE: &str = "application/cloudevents+json";
const BATCH: &str = "application/cloudevents-batch+json";
const NDJSON: &str = "application/x-ndjson";

/// One test's server: its environment, a valid key and an HTTP client.
struct Server {
    env: TestEnv,
    keys: ApiKeyStore,
    key: String,
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Server {
    async fn start(tag: &str, cfg: HttpConfig) -> Server {
        let env = TestEnv::new(tag).await;
        meterline_ingest::streams::ensure_streams(&env.js, &env.ingest).await.unwrap();
        Self::start_with(env, cfg, None).await
    }

    /// `subject` overrides the usage subject prefix (to publish where no stream listens).
    async fn start_with(env: TestEnv, cfg: HttpConfig, subject: Option<String>) -> Server {
        let keys = ApiKeyStore::open(&env.js, &env.bucket_prefix).await.unwrap();
        let key = keys.create("test producer").await.unwrap().expose().to_owned();
        let subject = subject.unwrap_or_else(|| env.ingest.subject_prefix.clone());
        let app = router(HttpIngest::new(env.client.clone(), env.js.clone(), subject, keys.clone()), &cfg);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(listener, app, shutdown.clone(), Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new()).build_http();
        Server { env, keys, key, addr, shutdown, task, client }
    }

    /// Sends a request; returns the status, the `WWW-Authenticate` header and the JSON body.
    async fn send(&self, method: &str, path: &str, content_type: Option<&str>, auth: Option<&str>, body: impl Into<Bytes>) -> Reply {
        let mut req = Request::builder().method(method).uri(format!("http://{}{path}", self.addr));
        if let Some(ct) = content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        if let Some(a) = auth {
            req = req.header(AUTHORIZATION, a);
        }
        let resp = self.client.request(req.body(Full::new(body.into())).unwrap()).await.unwrap();
        let status = resp.status();
        let www_auth = resp.headers().get(WWW_AUTHENTICATE).map(|v| v.to_str().unwrap().to_owned());
        let is_json = resp.headers().get(CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(is_json, "{status}: every answer is JSON, got {:?}", String::from_utf8_lossy(&bytes));
        Reply { status, www_auth, json: serde_json::from_slice(&bytes).unwrap() }
    }

    /// POSTs events with the test's valid key.
    async fn post(&self, content_type: &str, body: impl Into<Bytes>) -> Reply {
        let auth = format!("Bearer {}", self.key);
        self.send("POST", "/v1/events", Some(content_type), Some(&auth), body).await
    }

    /// Every message of the usage stream: (Nats-Msg-Id, payload).
    async fn stored(&self) -> Vec<(String, String)> {
        let mut stream = self.env.js.get_stream(&self.env.ingest.stream).await.unwrap();
        let info = stream.info().await.unwrap().state.clone();
        let mut out = Vec::new();
        for seq in info.first_sequence..=info.last_sequence {
            if info.messages == 0 {
                break;
            }
            let m = stream.get_raw_message(seq).await.unwrap();
            let id = m.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned()).unwrap_or_default();
            out.push((id, String::from_utf8(m.payload.to_vec()).unwrap()));
        }
        out
    }

    /// Stops the server (graceful shutdown must end on its own) and removes the test's state.
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task).await.expect("graceful shutdown ends").unwrap().unwrap();
        let _ = self.env.js.delete_key_value(ApiKeyStore::bucket_name(&self.env.bucket_prefix)).await;
        self.env.cleanup().await;
    }
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    www_auth: Option<String>,
    json: Value,
}

fn ev(id: &str) -> String {
    event(id, "api.request", "acme", "2026-10-05T12:00:00Z", r#"{"n":1}"#)
}

fn id_of(e: &str) -> String {
    msg_id("test/producer", &meterline_schemas::event::decode_event(e).unwrap().id)
}

#[tokio::test]
async fn each_content_type_is_published_one_message_per_event() {
    let s = Server::start("http_ok", HttpConfig::default()).await;

    let r = s.post(SINGLE, ev("s1")).await;
    assert_eq!((r.status, &r.json), (StatusCode::ACCEPTED, &json!({ "accepted": 1, "duplicates": 0, "sequences": [1] })));

    let r = s.post(&format!("{BATCH}; charset=utf-8"), format!("[{}, {}]", ev("b1"), ev("b2"))).await;
    assert_eq!((r.status, &r.json), (StatusCode::ACCEPTED, &json!({ "accepted": 2, "duplicates": 0, "sequences": [2, 3] })));

    let r = s.post(NDJSON, format!("{}\r\n\n{}\n{}\n", ev("n1"), ev("n2"), ev("n3"))).await;
    assert_eq!((r.status, &r.json), (StatusCode::ACCEPTED, &json!({ "accepted": 3, "duplicates": 0, "sequences": [4, 5, 6] })));

    let stored = s.stored().await;
    let expected: Vec<(String, String)> = ["s1", "b1", "b2", "n1", "n2", "n3"].iter().map(|id| (id_of(&ev(id)), ev(id))).collect();
    assert_eq!(stored, expected, "one message per event, its own JSON text, Nats-Msg-Id = msg_id(source, id)");
    s.stop().await;
}

#[tokio::test]
async fn reposting_counts_duplicates() {
    let s = Server::start("http_dup", HttpConfig::default()).await;
    let body = format!("{}\n{}\n", ev("d1"), ev("d2"));
    let r = s.post(NDJSON, body.clone()).await;
    assert_eq!((r.status, &r.json), (StatusCode::ACCEPTED, &json!({ "accepted": 2, "duplicates": 0, "sequences": [1, 2] })));
    let r = s.post(NDJSON, body).await;
    assert_eq!((r.status, &r.json), (StatusCode::ACCEPTED, &json!({ "accepted": 2, "duplicates": 2, "sequences": [1, 2] })));
    // A duplicate answers with the sequence of the message JetStream already had.
    // Half new, half known, and a duplicate inside the request itself.
    let r = s.post(BATCH, format!("[{},{},{}]", ev("d2"), ev("d3"), ev("d3"))).await;
    assert_eq!((r.status, &r.json), (StatusCode::ACCEPTED, &json!({ "accepted": 3, "duplicates": 2, "sequences": [2, 3, 3] })));
    assert_eq!(s.stored().await.len(), 3);
    s.stop().await;
}

#[tokio::test]
async fn invalid_events_refuse_the_whole_request() {
    let s = Server::start("http_bad", HttpConfig::default()).await;

    let r = s.post(SINGLE, "{not json").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["errors"][0]["index"], 0);
    assert_eq!(r.json["errors"][0]["field"], "event");

    let bad = ev("x2").replace("2026-10-05T12:00:00Z", "yesterday");
    let r = s.post(BATCH, format!("[{},{bad},{}]", ev("x1"), ev("x3"))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let errors = r.json["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{}", r.json);
    assert_eq!(errors[0]["index"], 1);
    assert_eq!(errors[0]["field"], "time");
    assert_eq!(errors[0]["value"], "\"yesterday\"");
    assert!(errors[0]["reason"].as_str().unwrap().contains("RFC 3339"), "{}", r.json);
    assert!(r.json["error"].as_str().unwrap().contains("1 of 3 events are invalid; nothing"), "{}", r.json);

    let no_subject = ev("x5").replace(r#""subject":"acme","#, "");
    let r = s.post(NDJSON, format!("{}\n\n{no_subject}\n", ev("x4"))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["errors"], json!([{ "index": 1, "line": 3, "field": "subject", "value": "<missing>", "reason": "is required" }]));

    let r = s.post(BATCH, ev("x6")).await;
    assert_eq!((r.status, &r.json["errors"][0]["field"]), (StatusCode::BAD_REQUEST, &json!("body")), "a batch must be an array");

    // An event larger than one NATS message (max_payload, 1 MiB by default) is refused as invalid.
    let huge = event("x7", "api.request", "acme", "2026-10-05T12:00:00Z", &format!(r#"{{"blob":"{}"}}"#, "x".repeat(1_100_000)));
    let r = s.post(NDJSON, format!("{}\n{huge}\n", ev("x8"))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!((&r.json["errors"][0]["index"], &r.json["errors"][0]["field"]), (&json!(1), &json!("event")), "{}", r.json);
    assert!(r.json["errors"][0]["reason"].as_str().unwrap().contains("max_payload"), "{}", r.json);

    assert!(s.stored().await.is_empty(), "nothing from a refused request is published");
    s.stop().await;
}

#[tokio::test]
async fn api_keys_are_required_except_for_healthz() {
    let s = Server::start("http_auth", HttpConfig::default()).await;
    let body = ev("a1");

    let r = s.send("POST", "/v1/events", Some(SINGLE), None, body.clone()).await;
    assert_eq!((r.status, r.www_auth.as_deref()), (StatusCode::UNAUTHORIZED, Some("Bearer")));
    assert!(r.json["error"].as_str().unwrap().contains("missing API key"), "{}", r.json);

    // The right id with another secret, an unknown id, a malformed key, another scheme.
    let (id, secret) = s.key.strip_prefix("ml_").unwrap().split_once('_').unwrap();
    let flipped: String = secret.chars().map(|c| if c == '0' { '1' } else { '0' }).collect();
    for auth in [
        format!("Bearer ml_{id}_{flipped}"),
        format!("Bearer ml_{}_{secret}", "0".repeat(16)),
        "Bearer not-a-key".to_owned(),
        format!("Basic {}", s.key),
    ] {
        let r = s.send("POST", "/v1/events", Some(SINGLE), Some(&auth), body.clone()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{auth}: {}", r.json);
        assert!(!r.json.to_string().contains(secret), "answers never echo the secret");
    }

    let r = s.send("GET", "/v1/events", None, Some(&format!("Bearer {}", s.key)), Bytes::new()).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let r = s.send("GET", "/healthz", None, None, Bytes::new()).await;
    assert_eq!((r.status, &r.json), (StatusCode::OK, &json!({ "status": "ok" })));

    assert_eq!(s.post(SINGLE, body.clone()).await.status, StatusCode::ACCEPTED);
    // Revocation applies to the very next request.
    assert!(s.keys.revoke(id).await.unwrap());
    assert_eq!(s.post(SINGLE, body).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.stored().await.len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn limits_and_content_types() {
    let cfg = HttpConfig { max_body_bytes: 2048, request_timeout_ms: 500, ..HttpConfig::default() };
    let s = Server::start("http_limits", cfg).await;

    let lines: String = (0..20).map(|i| ev(&format!("big{i}")) + "\n").collect();
    assert!(lines.len() > 2048);
    let r = s.post(NDJSON, lines).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.json["error"].as_str().unwrap().contains("http.max_body_bytes = 2048"), "{}", r.json);

    let r = s.post("text/plain", ev("t1")).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(r.json["error"].as_str().unwrap().contains("\"text/plain\""), "{}", r.json);
    let auth = format!("Bearer {}", s.key);
    let r = s.send("POST", "/v1/events", None, Some(&auth), ev("t2")).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // A client that announces a body and never sends it: 408 once the request timeout passes.
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: {SINGLE}\r\nAuthorization: Bearer {}\r\nContent-Length: 100\r\n\r\n",
        s.key
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0; 4096];
        loop {
            let n = tcp.read(&mut buf).await.unwrap();
            answer.extend_from_slice(&buf[..n]);
            if n == 0 || answer.ends_with(b"}") {
                break;
            }
        }
    })
    .await
    .expect("answered before 5 s");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("http.request_timeout_ms = 500"), "{answer}");

    assert!(s.stored().await.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn nats_failure_is_503_and_never_success() {
    // A subject no stream captures: JetStream cannot store the events.
    let env = TestEnv::new("http_503").await;
    let subject = format!("{}.nowhere", env.bucket_prefix.trim_end_matches('_'));
    let s = Server::start_with(env, HttpConfig::default(), Some(subject)).await;
    let r = s.post(BATCH, format!("[{},{}]", ev("u1"), ev("u2"))).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.json);
    assert!(r.json["error"].as_str().unwrap().contains("did not store the events"), "{}", r.json);
    assert!(r.json.get("accepted").is_none());
    s.stop().await;
}

#[tokio::test]
async fn apikeys_commands_create_list_and_revoke() {
    let s = Server::start("http_cli", HttpConfig::default()).await;
    let (ok, out, err) = s.env.meterline(&["apikeys", "create", "--name", "gateway"], &[]);
    assert!(ok, "{err}");
    let key = out.trim().to_owned();
    assert!(key.starts_with("ml_") && !key.contains(char::is_whitespace), "stdout is the key alone: {out:?}");
    let id = key[3..].split_once('_').unwrap().0.to_owned();
    assert!(err.contains(&id) && err.contains("only this once"), "{err}");

    let (ok, out, err) = s.env.meterline(&["apikeys", "list", "--format", "json"], &[]);
    assert!(ok, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    let names: Vec<(&str, &str)> =
        listed.as_array().unwrap().iter().map(|k| (k["id"].as_str().unwrap(), k["name"].as_str().unwrap())).collect();
    assert!(names.contains(&(id.as_str(), "gateway")) && names.len() == 2, "{out}");
    assert!(!out.contains(&key[20..]) && !out.contains("sha256"), "list shows no secrets: {out}");

    let auth = format!("Bearer {key}");
    assert_eq!(s.send("POST", "/v1/events", Some(SINGLE), Some(&auth), ev("c1")).await.status, StatusCode::ACCEPTED);
    let (ok, out, err) = s.env.meterline(&["apikeys", "revoke", &id], &[]);
    assert!(ok && out.contains(&id), "{out}{err}");
    assert_eq!(s.send("POST", "/v1/events", Some(SINGLE), Some(&auth), ev("c2")).await.status, StatusCode::UNAUTHORIZED);
    let (ok, _, err) = s.env.meterline(&["apikeys", "revoke", &id], &[]);
    assert!(!ok && err.contains("no API key with id"), "{err}");
    s.stop().await;
}
