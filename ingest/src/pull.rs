//! Continuous JetStream pull consumption whose pending counts cannot run ahead of the server.
//!
//! # Why not `async_nats`'s `Consumer::stream()`
//!
//! A pull consumer keeps pull requests open on the server and sends the next one when at most
//! half of what it asked for is still owed ("pending": messages and bytes asked for, minus those
//! received, minus those the server released with a `408`/`409` status saying how much of a pull
//! it will not deliver). async-nats 0.51 publishes each pull request from a background task and
//! adds the request's messages and bytes to its pending counts only when that task reports the
//! publish back over a channel. On a busy runtime that report can come after the server has
//! already answered the whole pull: with 100 events per message a pull of 4 MiB is about 190
//! messages that arrive within milliseconds. Those messages and the closing `409 Message Size
//! Exceeds MaxBytes` are then subtracted from counts that do not hold the pull yet (the
//! subtraction saturates at zero), and the late report adds a whole pull that the server no
//! longer has. The client believes a pull is open, so it sends none; the server has none, so it
//! sends nothing, not even idle heartbeats (those go to open pulls only). Delivery stops until
//! the stream's fallback re-pull `expires` + 5 s later: the 35 s stalls of the 100-per-message
//! benchmark (seen with the server holding no waiting pull, every pull sent answered, and
//! "missed idle heartbeat" every two heartbeats; docs/PERFORMANCE.md).
//!
//! [`PullStream`] counts a pull as pending before its request can leave, in the same poll that
//! decides to send it, so every answer is subtracted from counts that already hold it. One inbox
//! serves every pull for the stream's whole life (so nothing the server delivered can go to an
//! inbox nobody reads: with cumulative acks that would ack unseen messages). And if nothing
//! arrives for two idle heartbeats while pulls are counted as open, the server holds none of
//! them (a reconnect dropped them, or the server ended one without a status): the counts are
//! cleared and a new pull is sent, so any other miscount costs at most a few heartbeats.
//!
//! Messages come out as plain [`async_nats::Message`]s: a JetStream message would carry a clone
//! of the context each (a client handle and a string: about 4% of ingest's samples at one event
//! per message), and only the message that is acked needs one ([`PullStream::ackable`]).
//! [`stored`] reads the stream sequence and time from the reply subject without it.
//!
//! Memory stays bounded: what is pending (owed by the server or waiting in the inbox) is at most
//! one and a half pulls, since a pull is sent only when at most half of one is owed.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use async_nats::{StatusCode, Subject, Subscriber};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use tokio::time::{Instant, Sleep};

use crate::error::{Error, Result};

/// What each pull request asks for.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Most messages one pull asks for.
    pub max_messages: usize,
    /// Most bytes one pull asks for (as the server counts them: subject, reply, headers and
    /// payload); 0 for no byte limit.
    pub max_bytes: usize,
    /// How long the server keeps a pull open.
    pub expires: Duration,
    /// Idle heartbeat the server sends on an open pull with nothing to deliver; two missed mean
    /// the server holds no pull of ours.
    pub heartbeat: Duration,
}

/// How long to wait before pulling again after a pull request could not be sent.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Messages of a pull consumer, pulled continuously. Cancel-safe: everything in flight lives in
/// the stream, so a dropped `next()` loses nothing.
pub struct PullStream {
    client: async_nats::Client,
    context: jetstream::Context,
    /// `$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`.
    subject: Subject,
    inbox: Subject,
    request: Bytes,
    subscriber: Subscriber,
    opts: PullOptions,
    /// Messages asked for by the open pulls and neither received nor released by the server.
    pending_messages: usize,
    /// Bytes likewise.
    pending_bytes: usize,
    /// A pull request being handed to the connection.
    sending: Option<BoxFuture<'static, Result<(), async_nats::PublishError>>>,
    /// Set after a failed request: no pull before it fires.
    retry: Option<Pin<Box<Sleep>>>,
    /// Fires every two heartbeats while pulls are open; `arrivals` tells whether anything came.
    watchdog: Pin<Box<Sleep>>,
    arrivals: u64,
    arrivals_seen: u64,
    /// Times the watchdog found no pull open on the server and pulled afresh.
    silent_repulls: u64,
    ended: bool,
}

impl std::fmt::Debug for PullStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullStream")
            .field("subject", &self.subject)
            .field("inbox", &self.inbox)
            .field("opts", &self.opts)
            .field("pending_messages", &self.pending_messages)
            .field("pending_bytes", &self.pending_bytes)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl PullStream {
    /// Subscribes the inbox and starts pulling from `consumer` on the next poll.
    pub async fn start(context: &jetstream::Context, consumer: &PullConsumer, opts: PullOptions) -> Result<PullStream> {
        if opts.max_messages == 0 || opts.heartbeat.is_zero() || opts.expires < opts.heartbeat * 2 {
            return Err(Error::Config(format!(
                "pull of {} messages, heartbeat {:?}, expires {:?}: needs at least one message and a heartbeat of at most half the expiry",
                opts.max_messages, opts.heartbeat, opts.expires
            )));
        }
        let info = consumer.cached_info();
        // The default API prefix: ingest's contexts are made with `jetstream::new`, no domain.
        let subject = Subject::from(format!("$JS.API.CONSUMER.MSG.NEXT.{}.{}", info.stream_name, info.name));
        let client = context.client();
        let inbox = Subject::from(client.new_inbox());
        let subscriber = client.subscribe(inbox.clone()).await.map_err(Error::nats("pull inbox"))?;
        let mut request = serde_json::json!({
            "batch": opts.max_messages,
            "expires": nanos(opts.expires),
            "idle_heartbeat": nanos(opts.heartbeat),
        });
        if opts.max_bytes > 0 {
            request["max_bytes"] = opts.max_bytes.into();
        }
        let request = Bytes::from(serde_json::to_vec(&request).map_err(|e| Error::Nats(format!("pull request: {e}")))?);
        Ok(PullStream {
            client,
            context: context.clone(),
            subject,
            inbox,
            request,
            subscriber,
            watchdog: Box::pin(tokio::time::sleep(opts.heartbeat * 2)),
            opts,
            pending_messages: 0,
            pending_bytes: 0,
            sending: None,
            retry: None,
            arrivals: 0,
            arrivals_seen: 0,
            silent_repulls: 0,
            ended: false,
        })
    }

    /// `message` as a JetStream message, which can be acked.
    pub fn ackable(&self, message: async_nats::Message) -> jetstream::Message {
        jetstream::Message { message, context: self.context.clone() }
    }

    /// Times the server was found holding none of the pulls counted as open (two heartbeats of
    /// silence) and a fresh pull was sent. Stays 0 while the counts are right and the connection
    /// holds.
    pub fn silent_repulls(&self) -> u64 {
        self.silent_repulls
    }

    /// Whether at most half of a pull is still owed (by messages or by bytes).
    fn wants_more(&self) -> bool {
        self.pending_messages <= self.opts.max_messages / 2 || (self.opts.max_bytes > 0 && self.pending_bytes <= self.opts.max_bytes / 2)
    }

    /// Counts a pull as pending, then hands its request to the connection: the count is in place
    /// before any answer to it can arrive.
    fn send_pull(&mut self) {
        self.pending_messages += self.opts.max_messages;
        self.pending_bytes += self.opts.max_bytes;
        let (client, subject, inbox, request) = (self.client.clone(), self.subject.clone(), self.inbox.clone(), self.request.clone());
        self.sending = Some(async move { client.publish_with_reply(subject, inbox, request).await }.boxed());
        if self.pending_messages == self.opts.max_messages {
            // The first pull after none was open: the server's silence is measured from now.
            self.restart_watchdog();
        }
    }

    /// Forgets every open pull (the server holds none, or will release them on its own).
    fn forget_pulls(&mut self) {
        self.pending_messages = 0;
        self.pending_bytes = 0;
    }

    fn restart_watchdog(&mut self) {
        self.arrivals_seen = self.arrivals;
        self.watchdog.as_mut().reset(Instant::now() + self.opts.heartbeat * 2);
    }

    /// Subtracts what a `408`/`409` status says its pull will not deliver; the whole pull when
    /// the status does not say.
    fn release(&mut self, message: &async_nats::Message) {
        let header = |name: &str, whole: usize| {
            message.headers.as_ref().and_then(|h| h.get(name)).and_then(|v| v.as_str().parse::<usize>().ok()).unwrap_or(whole)
        };
        self.pending_messages = self.pending_messages.saturating_sub(header("Nats-Pending-Messages", self.opts.max_messages));
        self.pending_bytes = self.pending_bytes.saturating_sub(header("Nats-Pending-Bytes", self.opts.max_bytes));
    }
}

impl Stream for PullStream {
    type Item = Result<async_nats::Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        loop {
            if this.retry.as_mut().is_some_and(|r| r.poll_unpin(cx).is_ready()) {
                this.retry = None;
            }
            if this.sending.is_none() && this.retry.is_none() && this.wants_more() {
                this.send_pull();
            }
            if let Some(sending) = this.sending.as_mut() {
                match sending.poll_unpin(cx) {
                    Poll::Ready(Ok(())) => this.sending = None,
                    Poll::Ready(Err(e)) => {
                        this.sending = None;
                        this.forget_pulls();
                        this.retry = Some(Box::pin(tokio::time::sleep(RETRY_AFTER)));
                        return Poll::Ready(Some(Err(Error::Nats(format!("pull request: {e}")))));
                    }
                    Poll::Pending => {}
                }
            }
            match this.subscriber.poll_next_unpin(cx) {
                Poll::Ready(Some(message)) => {
                    this.arrivals += 1;
                    match message.status {
                        None | Some(StatusCode::OK) => {
                            this.pending_messages = this.pending_messages.saturating_sub(1);
                            this.pending_bytes = this.pending_bytes.saturating_sub(message.length);
                            return Poll::Ready(Some(Ok(message)));
                        }
                        Some(StatusCode::IDLE_HEARTBEAT) => {}
                        // A pull ended: expired (408), cut by max_bytes, completed with bytes to
                        // spare, or interrupted (409). Requests the server refuses for good
                        // (limits exceeded, consumer gone or push based) would fail again.
                        Some(StatusCode::TIMEOUT | StatusCode::REQUEST_TERMINATED) => {
                            let description = message.description.as_deref().unwrap_or_default();
                            if description.starts_with("Exceeded MaxRequest")
                                || description.eq_ignore_ascii_case("Consumer Deleted")
                                || description.eq_ignore_ascii_case("Consumer is push based")
                            {
                                this.ended = true;
                                return Poll::Ready(Some(Err(Error::Nats(format!(
                                    "pull refused: {} {description}",
                                    message.status.map_or(0, |s| s.as_u16())
                                )))));
                            }
                            this.release(&message);
                        }
                        Some(StatusCode::NOT_FOUND) => this.release(&message),
                        Some(status) => {
                            // No responders (JetStream unavailable) or something unknown: pull
                            // again after a pause.
                            this.forget_pulls();
                            this.retry = Some(Box::pin(tokio::time::sleep(RETRY_AFTER)));
                            let description = message.description.unwrap_or_default();
                            return Poll::Ready(Some(Err(Error::Nats(format!("pull: status {} {description}", status.as_u16())))));
                        }
                    }
                }
                Poll::Ready(None) => {
                    this.ended = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => {
                    if this.pending_messages == 0 && this.pending_bytes == 0 {
                        return Poll::Pending;
                    }
                    if this.watchdog.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    if this.arrivals != this.arrivals_seen {
                        this.restart_watchdog();
                        continue;
                    }
                    // Two heartbeats without a message, a status or a heartbeat: no pull of ours
                    // is open on the server. Pull afresh.
                    tracing::warn!(
                        pending_messages = this.pending_messages,
                        pending_bytes = this.pending_bytes,
                        "no heartbeat from the server for two heartbeats; pulling again"
                    );
                    this.silent_repulls += 1;
                    this.forget_pulls();
                    this.restart_watchdog();
                }
            }
        }
    }
}

/// Stream sequence and time stored (ns since the epoch) of a pulled message, from its
/// `$JS.ACK` reply subject: `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer
/// seq>.<time>.<pending>`, or with `<domain>.<account hash>` after `$JS.ACK` and possibly more
/// tokens at the end (ADR-15, the two forms async-nats's `Message::info` reads). `None` for any
/// other reply.
pub fn stored(message: &async_nats::Message) -> Option<(u64, i128)> {
    let reply = message.reply.as_ref()?.as_str().strip_prefix("$JS.ACK.")?;
    // No allocation and one pass over the bytes: this runs for every message. The tokens read
    // are among the first 8; `ends[i]` is where token `i` ends.
    let (mut ends, mut count) = ([0usize; 8], 0);
    for (i, &b) in reply.as_bytes().iter().enumerate() {
        if b == b'.' {
            if let Some(end) = ends.get_mut(count) {
                *end = i;
            }
            count += 1;
        }
    }
    if let Some(end) = ends.get_mut(count) {
        *end = reply.len();
    }
    count += 1;
    // After `$JS.ACK.`: 7 tokens in the first form, 9 or more in the second.
    let at = match count {
        7 => 3,
        n if n >= 9 => 5,
        _ => return None,
    };
    let token = |i: usize| reply.get(ends[i - 1] + 1..ends[i]);
    Some((token(at)?.parse().ok()?, token(at + 2)?.parse().ok()?))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::stored;

    fn with_reply(reply: &str) -> async_nats::Message {
        async_nats::Message {
            subject: "usage.events.x".into(),
            reply: Some(reply.into()),
            payload: bytes::Bytes::new(),
            headers: None,
            status: None,
            description: None,
            length: 0,
        }
    }

    #[test]
    fn stored_reads_both_reply_forms() {
        let v1 = with_reply("$JS.ACK.USAGE.ingest-p0.1.4711.4700.1764120000123456789.12");
        assert_eq!(stored(&v1), Some((4711, 1_764_120_000_123_456_789)));
        let v2 = with_reply("$JS.ACK.hub.ACCHASH.USAGE.ingest-p0.2.4711.4700.1764120000123456789.12.abc");
        assert_eq!(stored(&v2), Some((4711, 1_764_120_000_123_456_789)));
        assert_eq!(stored(&with_reply("_INBOX.abc")), None);
        assert_eq!(stored(&with_reply("$JS.ACK.a.b.c")), None);
        // The second form with exactly 9 tokens; 8 tokens is neither form; tokens must be numbers.
        let v2 = with_reply("$JS.ACK.hub.ACCHASH.USAGE.ingest-p0.2.4711.4700.1764120000123456789.12");
        assert_eq!(stored(&v2), Some((4711, 1_764_120_000_123_456_789)));
        assert_eq!(stored(&with_reply("$JS.ACK.USAGE.ingest-p0.1.4711.4700.17641200.12.x")), None);
        assert_eq!(stored(&with_reply("$JS.ACK.USAGE.ingest-p0.1.47x1.4700.1764120000123456789.12")), None);
        assert_eq!(stored(&with_reply("$JS.ACK.USAGE.ingest-p0.1..4700.1764120000123456789.12")), None);
    }
}
