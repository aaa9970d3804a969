//! HTTP ingest: `POST /v1/events` publishes CloudEvents to the usage stream (`meterline serve`).
//!
//! Content types:
//! - `application/cloudevents+json`: one event (CloudEvents structured mode);
//! - `application/cloudevents-batch+json`: a JSON array of events (batch mode);
//! - `application/x-ndjson`: one event per line (blank lines are skipped).
//!
//! Any other type is refused with 415. Each event is decoded with the code ingest uses
//! ([`decode_event`], [`decode_message`]): CloudEvents structure only. Meters are not checked
//! here; ingest checks them and dead-letters what matches no meter, so nothing is lost when the
//! catalog changes later.
//!
//! **All or nothing per request**: if any event is invalid the answer is 400 listing every
//! invalid event (index, field, value, reason) and nothing from the request is published. A
//! valid request becomes one JetStream message per event, with `Nats-Msg-Id` = the event's
//! dedup key (as `events publish` does); the answer is 202
//! `{"accepted": n, "duplicates": k, "sequences": [s0, s1, …]}` only once JetStream has acked
//! every message (`duplicates`: messages JetStream already had within its duplicate window;
//! `sequences`: each event's stream sequence from its publish ack, in request order; for a
//! duplicate, JetStream answers with the sequence of the message it already had). `sequences` was
//! added after `accepted` and `duplicates`; clients that read only those two are unaffected.
//! It lets a producer follow its events further, e.g. to a consumer's ack floor (the load test
//! measures publish → durable that way). When NATS fails the answer is 503, and a timeout is 408: some
//! events may then be stored already, and retrying the whole request is safe because JetStream
//! drops repeated `Nats-Msg-Id`s and ingest deduplicates exactly by (source, id).
//!
//! Every route except `GET /healthz` needs `Authorization: Bearer <key>` (see [`crate::apikeys`]);
//! a missing or wrong key is 401. Bodies over `http.max_body_bytes` are 413. Error bodies are
//! JSON: `{"error": "…"}`, plus `"errors": [...]` for invalid events.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap as NatsHeaders;
use async_nats::jetstream;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use meterline_schemas::event::{EventError, decode_event, decode_message};
use meterline_schemas::ledger::msg_id;

use crate::apikeys::{ApiKeyStore, AuthError};

/// `[http]` in `meterline.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on, `host:port`.
    pub listen: String,
    /// Largest accepted request body in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Longest a request may take, body upload and JetStream acks included (ms); then 408.
    pub request_timeout_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { listen: "127.0.0.1:8080".into(), max_body_bytes: 4 * 1024 * 1024, request_timeout_ms: 10_000 }
    }
}

impl HttpConfig {
    /// The request timeout as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// Checks values.
    pub fn validate(&self) -> Result<(), String> {
        if self.listen.rsplit_once(':').is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err()) {
            return Err(format!("http.listen = {:?}: expected host:port, e.g. \"127.0.0.1:8080\"", self.listen));
        }
        if self.max_body_bytes < 1024 {
            return Err(format!("http.max_body_bytes = {}: must be at least 1024", self.max_body_bytes));
        }
        if self.request_timeout_ms < 100 {
            return Err(format!("http.request_timeout_ms = {}: must be at least 100", self.request_timeout_ms));
        }
        Ok(())
    }
}

/// Publishes awaiting their JetStream ack at once, per request.
const IN_FLIGHT: usize = 1024;
/// Invalid events listed in a 400 answer at most (the count is always complete).
const MAX_LISTED_ERRORS: usize = 100;

/// Bytes of a message's `max_payload` left for its headers (`Nats-Msg-Id` needs about 60).
const HEADER_ROOM: usize = 256;

const SINGLE: &str = "application/cloudevents+json";
const BATCH: &str = "application/cloudevents-batch+json";
const NDJSON: &str = "application/x-ndjson";

/// What the routes share: the NATS connection, the usage subject prefix and the API keys.
#[derive(Debug, Clone)]
pub struct HttpIngest {
    client: async_nats::Client,
    js: jetstream::Context,
    subject_prefix: Arc<str>,
    keys: ApiKeyStore,
}

impl HttpIngest {
    /// Publishes each event to `<subject_prefix>.events.<customer token>` (see
    /// [`crate::partition`]), whose stream must exist ([`crate::streams::ensure_streams`]).
    pub fn new(client: async_nats::Client, js: jetstream::Context, subject_prefix: String, keys: ApiKeyStore) -> Self {
        HttpIngest { client, js, subject_prefix: subject_prefix.into(), keys }
    }
}

/// The routes with their limits, timeout and request tracing.
pub fn router(state: HttpIngest, cfg: &HttpConfig) -> Router {
    let protected =
        Router::new().route("/v1/events", post(post_events)).route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    let (limit, timeout_ms) = (cfg.max_body_bytes, cfg.request_timeout_ms);
    Router::new()
        .route("/healthz", get(healthz))
        .merge(protected)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route: POST /v1/events, GET /healthz") })
        .with_state(state)
        // tower-http's limit refuses a too large Content-Length before reading anything, and
        // caps bodies without one; axum's own default limit (2 MB) is replaced by it.
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(limit))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, cfg.request_timeout()))
        .layer(middleware::map_response(move |r: Response| async move { json_errors(r, limit, timeout_ms) }))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            // The path only: no query string, no headers (the Authorization header is a secret).
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), key_id = tracing::field::Empty)
        }))
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then lets requests in flight
/// finish, waiting at most `drain`.
pub async fn serve(listener: tokio::net::TcpListener, app: Router, shutdown: CancellationToken, drain: Duration) -> std::io::Result<()> {
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned()).into_future();
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => r,
        () = async { shutdown.cancelled().await; tokio::time::sleep(drain).await } => {
            tracing::warn!(drain_ms = drain.as_millis(), "requests still in flight after the drain timeout; stopping anyway");
            Ok(())
        }
    }
}

async fn healthz(State(st): State<HttpIngest>) -> Response {
    match st.client.connection_state() {
        async_nats::connection::State::Connected => Json(serde_json::json!({ "status": "ok" })).into_response(),
        s => error(StatusCode::SERVICE_UNAVAILABLE, format!("nats connection is {s}")),
    }
}

/// Checks `Authorization: Bearer <key>`; logs the key id only, never the key.
async fn authenticate(State(st): State<HttpIngest>, req: Request, next: Next) -> Response {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return unauthorized("missing API key: send `Authorization: Bearer <key>`");
    };
    let Some(key) = value.to_str().ok().and_then(bearer) else {
        return unauthorized("the Authorization header must be `Bearer <key>`");
    };
    match st.keys.verify(key).await {
        Ok(record) => {
            tracing::Span::current().record("key_id", record.id.as_str());
            next.run(req).await
        }
        Err(AuthError::Malformed) => {
            tracing::info!("refused: malformed API key");
            unauthorized("malformed API key: expected ml_<id>_<secret>")
        }
        Err(AuthError::Unknown { id }) => {
            tracing::info!(key_id = %id, "refused: unknown or revoked API key");
            unauthorized("invalid or revoked API key")
        }
        Err(AuthError::WrongSecret { id }) => {
            tracing::warn!(key_id = %id, "refused: wrong secret for an existing API key");
            unauthorized("invalid or revoked API key")
        }
        Err(AuthError::Unavailable(e)) => {
            tracing::error!(error = %e, "cannot read API keys");
            unavailable(format!("cannot check the API key: {e}"))
        }
    }
}

fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The body format, from `Content-Type` (parameters such as `charset` are ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Single,
    Batch,
    Ndjson,
}

impl BodyKind {
    /// The kind, or the 415 message.
    fn from_headers(headers: &HeaderMap) -> Result<BodyKind, String> {
        let supported = format!("use {SINGLE}, {BATCH} or {NDJSON}");
        let Some(value) = headers.get(header::CONTENT_TYPE) else {
            return Err(format!("missing Content-Type: {supported}"));
        };
        let text = String::from_utf8_lossy(value.as_bytes());
        let media = text.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        match media.as_str() {
            SINGLE => Ok(BodyKind::Single),
            BATCH => Ok(BodyKind::Batch),
            NDJSON => Ok(BodyKind::Ndjson),
            _ => Err(format!("unsupported Content-Type {text:?}: {supported}")),
        }
    }
}

/// One invalid event of a request.
#[derive(Debug, Serialize)]
struct Invalid {
    /// Position of the event in the request, from 0.
    index: usize,
    /// Line number in an NDJSON body, from 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
    field: String,
    value: String,
    reason: String,
}

/// One valid event, ready to publish: its own JSON text and its `Nats-Msg-Id`.
#[derive(Debug)]
struct Outgoing {
    payload: Bytes,
    msg_id: String,
    /// The customer's routing token (the subject's last token, see [`crate::partition`]).
    token: String,
}

async fn post_events(State(st): State<HttpIngest>, req: Request) -> Response {
    let kind = match BodyKind::from_headers(req.headers()) {
        Ok(k) => k,
        Err(message) => return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, message),
    };
    let body = match Bytes::from_request(req, &()).await {
        Ok(b) => b,
        // 413 when over the limit; the JSON text is added by `json_errors`.
        Err(e) => return error(e.status(), format!("cannot read the request body: {}", e.body_text())),
    };
    let max_event_bytes = st.client.max_payload().saturating_sub(HEADER_ROOM);
    let events = match decode_body(kind, &body, max_event_bytes) {
        Ok(events) => events,
        Err((invalid, total)) => {
            let n = invalid.len();
            tracing::info!(invalid = n, events = total, "refused: invalid events");
            let listed: Vec<_> = invalid.into_iter().take(MAX_LISTED_ERRORS).collect();
            let body = serde_json::json!({
                "error": format!("{n} of {total} events are invalid; nothing from this request was published"),
                "invalid": n,
                "errors": listed,
            });
            return (StatusCode::BAD_REQUEST, Json(body)).into_response();
        }
    };
    let n = events.len();
    match publish(&st.js, &st.subject_prefix, events).await {
        Ok(Acked { duplicates, sequences }) => {
            tracing::info!(events = n, duplicates, "accepted");
            (StatusCode::ACCEPTED, Json(serde_json::json!({ "accepted": n, "duplicates": duplicates, "sequences": sequences })))
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, events = n, "publish failed");
            unavailable(format!(
                "NATS JetStream did not store the events ({e}); some of them may be stored already: \
                 retry the whole request (events are deduplicated by source and id)"
            ))
        }
    }
}

/// Splits and decodes a body. On any invalid event: every invalid one and the event count.
/// An event must fit in one NATS message (`max_payload`, less room for the headers).
fn decode_body(kind: BodyKind, body: &Bytes, max_event_bytes: usize) -> Result<Vec<Outgoing>, (Vec<Invalid>, usize)> {
    let text = std::str::from_utf8(body).map_err(|e| {
        let err = EventError::new("body", format!("{} bytes", body.len()), format!("not UTF-8: {e}"));
        (vec![invalid(0, None, err)], 1)
    })?;
    // (index, NDJSON line, the event's JSON text, decoded)
    let decoded: Vec<(usize, Option<usize>, &str, Result<_, EventError>)> = match kind {
        BodyKind::Single => vec![(0, None, text, decode_event(text))],
        BodyKind::Batch if !text.trim_start().starts_with('[') => {
            let err = EventError::new("body", text, format!("must be a JSON array of events with Content-Type {BATCH}"));
            vec![(0, None, text, Err(err))]
        }
        BodyKind::Batch => decode_message(body).into_iter().enumerate().map(|(i, d)| (i, None, d.raw, d.result)).collect(),
        BodyKind::Ndjson => text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .enumerate()
            .map(|(i, (line, l))| (i, Some(line + 1), l, decode_event(l)))
            .collect(),
    };
    let total = decoded.len();
    let mut valid = Vec::with_capacity(total);
    let mut refused = Vec::new();
    for (index, line, raw, result) in decoded {
        let raw = raw.trim();
        let result = result.and_then(|ev| match raw.len() {
            n if n > max_event_bytes => Err(EventError::new(
                "event",
                format!("{n} bytes"),
                format!("is larger than one NATS message may be ({max_event_bytes} bytes, from the server's max_payload)"),
            )),
            _ => Ok(ev),
        });
        match result {
            Ok(ev) => valid.push(Outgoing {
                // `raw` is a sub-slice of `text`, which is `body` itself: shares the buffer, no copy.
                payload: body.slice_ref(raw.as_bytes()),
                msg_id: msg_id(&ev.source, &ev.id),
                token: crate::partition::customer_token(&ev.subject),
            }),
            Err(e) => refused.push(invalid(index, line, e)),
        }
    }
    if refused.is_empty() { Ok(valid) } else { Err((refused, total)) }
}

fn invalid(index: usize, line: Option<usize>, e: EventError) -> Invalid {
    Invalid { index, line, field: e.field, value: e.value, reason: e.reason }
}

/// The JetStream acks of one request.
#[derive(Debug, Default, PartialEq, Eq)]
struct Acked {
    /// Messages JetStream already had within its duplicate window.
    duplicates: u64,
    /// Each event's stream sequence, in request order.
    sequences: Vec<u64>,
}

/// Publishes every event as its own message and awaits every ack.
async fn publish(js: &jetstream::Context, prefix: &str, events: Vec<Outgoing>) -> Result<Acked, String> {
    let mut pending = FuturesUnordered::new();
    let mut acked = Acked { duplicates: 0, sequences: vec![0; events.len()] };
    let mut settle = |(i, r): (usize, Result<jetstream::publish::PublishAck, jetstream::context::PublishError>)| -> Result<(), String> {
        let ack = r.map_err(|e| format!("publish ack: {e}"))?;
        acked.duplicates += u64::from(ack.duplicate);
        acked.sequences[i] = ack.sequence;
        Ok(())
    };
    for (i, ev) in events.into_iter().enumerate() {
        let mut headers = NatsHeaders::new();
        headers.insert("Nats-Msg-Id", ev.msg_id.as_str());
        let subject = format!("{prefix}.events.{}", ev.token);
        let ack = js.publish_with_headers(subject, headers, ev.payload).await.map_err(|e| format!("publish: {e}"))?;
        pending.push(async move { (i, ack.await) });
        while pending.len() >= IN_FLIGHT {
            if let Some(r) = pending.next().await {
                settle(r)?;
            }
        }
    }
    while let Some(r) = pending.next().await {
        settle(r)?;
    }
    Ok(acked)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

fn unauthorized(message: &str) -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, message);
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

fn unavailable(message: String) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Gives the answers made by the layers and the router (413 on a too large Content-Length, 408
/// on timeout, 405, all without a body) and by the body reader the JSON error shape of the others.
fn json_errors(r: Response, max_body_bytes: usize, timeout_ms: u64) -> Response {
    let message = match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            format!("request body larger than http.max_body_bytes = {max_body_bytes} bytes: send fewer events per request")
        }
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed: the routes are POST /v1/events and GET /healthz".to_owned(),
        StatusCode::REQUEST_TIMEOUT => format!(
            "request not completed within http.request_timeout_ms = {timeout_ms} ms; if the body was sent, some events \
             may be stored already: retry the whole request (events are deduplicated by source and id)"
        ),
        _ => return r,
    };
    let (mut parts, _) = r.into_parts();
    let fresh = error(parts.status, message);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, fresh.into_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"specversion":"1.0","id":"e1","source":"api","type":"api.request","subject":"acme","time":"2026-10-05T12:00:00Z","data":{"n":1}}"#;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        h
    }

    #[test]
    fn content_types() {
        assert_eq!(BodyKind::from_headers(&headers("application/cloudevents+json; charset=utf-8")).unwrap(), BodyKind::Single);
        assert_eq!(BodyKind::from_headers(&headers("Application/CloudEvents-Batch+JSON")).unwrap(), BodyKind::Batch);
        assert_eq!(BodyKind::from_headers(&headers("application/x-ndjson")).unwrap(), BodyKind::Ndjson);
        assert!(BodyKind::from_headers(&headers("text/plain")).unwrap_err().starts_with("unsupported Content-Type \"text/plain\""));
        assert!(BodyKind::from_headers(&HeaderMap::new()).unwrap_err().starts_with("missing Content-Type"));
    }

    #[test]
    fn bearer_scheme() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("abc"), None);
    }

    #[test]
    fn ndjson_skips_blank_lines_and_names_lines() {
        let bad = GOOD.replace("2026-10-05T12:00:00Z", "yesterday");
        let body = Bytes::from(format!("{GOOD}\r\n\n{bad}\n"));
        let (invalid, total) = decode_body(BodyKind::Ndjson, &body, 1 << 20).unwrap_err();
        assert_eq!(total, 2);
        assert_eq!(
            (invalid[0].index, invalid[0].line, invalid[0].field.as_str(), invalid[0].value.as_str()),
            (1, Some(3), "time", "\"yesterday\"")
        );

        let body = Bytes::from(format!("{GOOD}\r\n\n{}\n", GOOD.replace("e1", "e2")));
        let ok = decode_body(BodyKind::Ndjson, &body, 1 << 20).unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(&ok[0].payload[..], GOOD.as_bytes());
        assert_eq!(ok[0].msg_id, msg_id("api", "e1"));
    }

    #[test]
    fn batch_must_be_an_array_and_single_must_be_one_object() {
        let body = Bytes::from(GOOD);
        assert_eq!(decode_body(BodyKind::Batch, &body, 1 << 20).unwrap_err().0[0].field, "body");
        let body = Bytes::from(format!("[{GOOD}]"));
        assert_eq!(decode_body(BodyKind::Single, &body, 1 << 20).unwrap_err().0[0].field, "event");
        assert_eq!(decode_body(BodyKind::Batch, &body, 1 << 20).unwrap().len(), 1);
        let body = Bytes::from(format!("{GOOD}\n{GOOD}"));
        let (invalid, total) = decode_body(BodyKind::Ndjson, &body, GOOD.len() - 1).unwrap_err();
        assert_eq!((total, invalid.len(), invalid[1].field.as_str()), (2, 2, "event"));
        assert_eq!(invalid[1].value, format!("{} bytes", GOOD.len()));
        let body = Bytes::from_static(b"\xff\xfe");
        assert_eq!(decode_body(BodyKind::Single, &body, 1 << 20).unwrap_err().0[0].field, "body");
    }

    #[test]
    fn config_validation() {
        assert!(HttpConfig::default().validate().is_ok());
        let c = HttpConfig { listen: "8080".into(), ..Default::default() };
        assert!(c.validate().unwrap_err().contains("http.listen"));
        let c = HttpConfig { listen: "[::1]:8080".into(), ..Default::default() };
        assert!(c.validate().is_ok());
        let c = HttpConfig { max_body_bytes: 10, ..Default::default() };
        assert!(c.validate().unwrap_err().contains("max_body_bytes"));
    }
}
