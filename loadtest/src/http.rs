//! `--transport http`: Meterline's own HTTP ingest (`meterline serve`'s router) started
//! in-process on a loopback ephemeral port, and the client that sends each event as its own
//! `POST /v1/events`.
//!
//! The server gets its own NATS connection (as `meterline serve` has its own process), publishes
//! to the run's usage stream, and checks keys from the run's own bucket `<stream>_api_keys`, in
//! which one key is created for the run and revoked at the end (the bucket is deleted too). The
//! key lives only in memory, in a header value marked sensitive; it is never logged or printed.
//!
//! The 202 answer carries each event's stream sequence (`sequences`, see
//! [`meterline_ingest::http`]), so publish → durable is followed exactly as over NATS: by the
//! ingest consumer's ack floor.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use meterline_ingest::apikeys::ApiKeyStore;
use meterline_ingest::http::{HttpConfig, HttpIngest, router, serve};

use crate::error::{Error, Result};

/// One event per request, CloudEvents structured mode.
const CONTENT: &str = "application/cloudevents+json";

/// The API-key bucket prefix of a run: its keys live in `<stream>_api_keys`.
pub fn key_bucket_prefix(stream: &str) -> String {
    format!("{stream}_")
}

/// What a 202 answer says about the one event of its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The event's stream sequence.
    pub sequence: u64,
    /// JetStream already had it (same `Nats-Msg-Id` in its duplicate window).
    pub duplicate: bool,
}

/// A request that did not end in a readable 202.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Any status but 202.
    Status(u16),
    /// No answer (connection refused or reset, or the body could not be read).
    Transport(String),
    /// A 202 whose body has no `sequences` entry.
    Unreadable(String),
}

impl Refused {
    /// The key under which the report counts it: the status code, `transport` or `unreadable`.
    pub fn key(&self) -> String {
        match self {
            Refused::Status(s) => s.to_string(),
            Refused::Transport(_) => "transport".into(),
            Refused::Unreadable(_) => "unreadable 202".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct AcceptedBody {
    duplicates: u64,
    #[serde(default)]
    sequences: Vec<u64>,
}

/// Reads a 202 body of a one-event request.
pub fn parse_accepted(body: &[u8]) -> Result<Accepted, Refused> {
    let b: AcceptedBody = serde_json::from_slice(body).map_err(|e| Refused::Unreadable(format!("202 body: {e}")))?;
    match b.sequences.as_slice() {
        [sequence] => Ok(Accepted { sequence: *sequence, duplicate: b.duplicates > 0 }),
        other => Err(Refused::Unreadable(format!("202 body: {} sequences for one event", other.len()))),
    }
}

/// The in-process server and its client.
pub struct HttpTarget {
    addr: SocketAddr,
    /// `Bearer <key>`, marked sensitive.
    auth: HeaderValue,
    client: Client<HttpConnector, Full<Bytes>>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    keys: ApiKeyStore,
    key_id: String,
    nats: async_nats::Client,
    bucket: String,
}

impl std::fmt::Debug for HttpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTarget").field("addr", &self.addr).field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl HttpTarget {
    /// Starts the server on `127.0.0.1:0`, publishing to `<subject_prefix>.events.<token>`, with
    /// a fresh key in the run's bucket (emptied first).
    pub async fn start(nats_url: &str, stream: &str, subject_prefix: &str) -> Result<HttpTarget> {
        let nats = async_nats::ConnectOptions::new()
            .name("meterline-loadtest-http")
            .connect(nats_url)
            .await
            .map_err(|e| Error::Nats(format!("connect {nats_url}: {e}")))?;
        let js = async_nats::jetstream::new(nats.clone());
        let prefix = key_bucket_prefix(stream);
        let bucket = ApiKeyStore::bucket_name(&prefix);
        let _ = js.delete_key_value(&bucket).await;
        let keys = ApiKeyStore::open(&js, &prefix).await?;
        let key = keys.create("loadtest").await?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
            .map_err(|_| Error::Setup("the new API key is not a valid header value".into()))?;
        auth.set_sensitive(true);
        let key_id = key.record.id.clone();
        drop(key);

        let cfg = HttpConfig { listen: "127.0.0.1:0".into(), ..HttpConfig::default() };
        let app = router(HttpIngest::new(nats.clone(), js, subject_prefix.to_owned(), keys.clone()), &cfg);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::Io { path: "127.0.0.1:0".into(), message: format!("listen: {e}") })?;
        let addr = listener.local_addr().map_err(|e| Error::Io { path: "127.0.0.1:0".into(), message: e.to_string() })?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(listener, app, shutdown.clone(), Duration::from_secs(5)));
        let mut connector = HttpConnector::new();
        // One small request per write: without it Nagle's algorithm holds the body back.
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        tracing::info!(%addr, key_id = %key_id, "http ingest started in-process");
        Ok(HttpTarget { addr, auth, client, shutdown, task, keys, key_id, nats, bucket })
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends one event as its own request; resolves when the answer is read.
    pub fn send(&self, event: Bytes) -> impl Future<Output = Result<Accepted, Refused>> + Send + 'static {
        let req = Request::post(format!("http://{}/v1/events", self.addr))
            .header(CONTENT_TYPE, CONTENT)
            .header(AUTHORIZATION, self.auth.clone())
            .body(Full::new(event));
        let client = self.client.clone();
        async move {
            let req = req.map_err(|e| Refused::Transport(format!("request: {e}")))?;
            let resp = client.request(req).await.map_err(|e| Refused::Transport(e.to_string()))?;
            let status = resp.status();
            let body = resp.into_body().collect().await.map_err(|e| Refused::Transport(format!("body: {e}")))?.to_bytes();
            if status != StatusCode::ACCEPTED {
                return Err(Refused::Status(status.as_u16()));
            }
            parse_accepted(&body)
        }
    }

    /// Stops the server (requests in flight finish first), revokes the key and deletes the bucket.
    pub async fn stop(self) {
        self.shutdown.cancel();
        match tokio::time::timeout(Duration::from_secs(10), self.task).await {
            Ok(Ok(Ok(()))) => {}
            other => tracing::warn!(result = ?other.map(|r| r.map(|r| r.map_err(|e| e.to_string()))), "http server did not stop cleanly"),
        }
        if let Err(e) = self.keys.revoke(&self.key_id).await {
            tracing::warn!(error = %e, key_id = %self.key_id, "cannot revoke the run's API key");
        }
        let _ = async_nats::jetstream::new(self.nats.clone()).delete_key_value(&self.bucket).await;
        let _ = self.nats.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_202_body_gives_the_sequence() {
        assert_eq!(parse_accepted(br#"{"accepted":1,"duplicates":0,"sequences":[42]}"#), Ok(Accepted { sequence: 42, duplicate: false }));
        assert_eq!(parse_accepted(br#"{"accepted":1,"duplicates":1,"sequences":[7]}"#), Ok(Accepted { sequence: 7, duplicate: true }));
        // A server from before `sequences` was added.
        assert!(matches!(parse_accepted(br#"{"accepted":1,"duplicates":0}"#), Err(Refused::Unreadable(_))));
        assert!(matches!(parse_accepted(b"not json"), Err(Refused::Unreadable(_))));
        assert_eq!(Refused::Status(503).key(), "503");
        assert_eq!(Refused::Transport("reset".into()).key(), "transport");
        assert_eq!(key_bucket_prefix("lt_usage"), "lt_usage_");
        assert_eq!(ApiKeyStore::bucket_name(&key_bucket_prefix("lt_usage")), "lt_usage_api_keys");
    }
}
