//! Dead letters: refused events published to the dead-letter stream with their reason.
//!
//! Subject: `<dlq prefix>.<field>` (dots in the field become `_`), payload: the event's JSON
//! text as received. Headers: `Meterline-Error` (the full reason), `Meterline-Error-Field`,
//! `Meterline-Error-Value`, `Meterline-Source-Subject`, `Meterline-Source-Seq`,
//! `Meterline-Source-Index`. `Nats-Msg-Id` is derived from the source stream sequence and the
//! index inside the message, so a redelivered message does not dead-letter the same event twice
//! within the duplicate window.

use async_nats::HeaderMap;
use async_nats::jetstream;
use futures::future::try_join_all;

use crate::error::{Error, Result};
use crate::validate::Refused;

/// A refused event with where it came from.
#[derive(Debug)]
pub struct DeadLetter<'a> {
    /// The refusal.
    pub refused: &'a Refused,
    /// Subject of the original message.
    pub subject: &'a str,
    /// Stream sequence of the original message.
    pub stream_seq: u64,
}

/// Publishes dead letters and waits until JetStream has stored every one.
pub async fn publish(js: &jetstream::Context, prefix: &str, letters: &[DeadLetter<'_>]) -> Result<()> {
    let mut acks = Vec::with_capacity(letters.len());
    for l in letters {
        let e = &l.refused.error;
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("dlq-{}-{}", l.stream_seq, l.refused.index).as_str());
        headers.insert("Meterline-Error", header_safe(&e.to_string()).as_str());
        headers.insert("Meterline-Error-Field", header_safe(&e.field).as_str());
        headers.insert("Meterline-Error-Value", header_safe(&e.value).as_str());
        headers.insert("Meterline-Source-Subject", l.subject);
        headers.insert("Meterline-Source-Seq", l.stream_seq.to_string().as_str());
        headers.insert("Meterline-Source-Index", l.refused.index.to_string().as_str());
        let subject = format!("{prefix}.{}", subject_token(&e.field));
        let ack = js
            .publish_with_headers(subject, headers, l.refused.raw.clone().into())
            .await
            .map_err(|e| Error::Nats(format!("dead letter publish: {e}")))?;
        acks.push(ack.into_future());
    }
    try_join_all(acks).await.map_err(|e| Error::Nats(format!("dead letter ack: {e}")))?;
    Ok(())
}

/// Header values cannot hold line breaks.
fn header_safe(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

fn subject_token(field: &str) -> String {
    field.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
}
