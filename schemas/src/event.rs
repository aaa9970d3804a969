//! CloudEvents 1.0 usage events: JSON structured mode (one object) and batch mode (an array).
//!
//! Meterline's conventions on top of CloudEvents: `subject` is the customer key, `time` is
//! required and RFC 3339, `data` is a JSON object. Decoding is typed (no generic JSON value):
//! `data` is kept as raw JSON text so meter values are read from their exact decimal text.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

/// A validated usage event.
#[derive(Debug, Clone)]
pub struct UsageEvent {
    /// Producer-assigned id; unique per `source`.
    pub id: String,
    /// Producer identity (CloudEvents `source`).
    pub source: String,
    /// CloudEvents `type`, matched against meters' `event_type`.
    pub event_type: String,
    /// The customer key (CloudEvents `subject`).
    pub subject: String,
    /// When the usage happened.
    pub time: DateTime<Utc>,
    /// The `data` object as raw JSON text.
    pub data: Box<RawValue>,
}

/// Why an event was refused: the field, its value (as received, truncated) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventError {
    /// The offending attribute, e.g. `time` or `data.tokens`.
    pub field: String,
    /// The value as received (JSON text, at most 200 characters), or `<missing>`.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl EventError {
    /// A new error for `field` with `value`.
    pub fn new(field: impl Into<String>, value: impl Into<String>, reason: impl Into<String>) -> Self {
        let mut value: String = value.into();
        if value.len() > 200 {
            let mut cut = 200;
            while !value.is_char_boundary(cut) {
                cut -= 1;
            }
            value.truncate(cut);
            value.push('…');
        }
        EventError { field: field.into(), value, reason: reason.into() }
    }

    fn missing(field: &str) -> Self {
        EventError::new(field, MISSING, "is required")
    }
}

/// The value shown for an attribute that is absent.
pub const MISSING: &str = "<missing>";

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field '{}' = {}: {}", self.field, self.value, self.reason)
    }
}

impl std::error::Error for EventError {}

/// One event of a message, decoded or refused; `raw` is the event's JSON text for dead letters.
#[derive(Debug)]
pub struct Decoded<'a> {
    /// The event's own JSON text.
    pub raw: &'a str,
    /// The event, or why it was refused.
    pub result: Result<UsageEvent, EventError>,
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    specversion: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    source: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "type")]
    ty: Option<Cow<'a, str>>,
    #[serde(borrow)]
    subject: Option<Cow<'a, str>>,
    #[serde(borrow)]
    time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    datacontenttype: Option<Cow<'a, str>>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

/// Decodes a message body: one CloudEvent object, or a JSON array of them (batch mode).
///
/// Each event is decoded on its own, so one bad event in a batch refuses only that event.
/// A body that is not JSON at all yields a single refused entry covering the whole body.
pub fn decode_message(body: &[u8]) -> Vec<Decoded<'_>> {
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(e) => {
            return vec![Decoded {
                raw: "",
                result: Err(EventError::new("body", format!("{} bytes", body.len()), format!("not UTF-8: {e}"))),
            }];
        }
    };
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        match serde_json::from_str::<Vec<&RawValue>>(text) {
            Ok(items) => items.into_iter().map(|raw| Decoded { raw: raw.get(), result: decode_event(raw.get()) }).collect(),
            Err(e) => vec![Decoded { raw: text, result: Err(EventError::new("body", text, format!("not a JSON array of events: {e}"))) }],
        }
    } else {
        vec![Decoded { raw: text, result: decode_event(text) }]
    }
}

/// Decodes and validates one CloudEvent from its JSON text.
pub fn decode_event(text: &str) -> Result<UsageEvent, EventError> {
    let wire: Wire<'_> =
        serde_json::from_str(text).map_err(|e| EventError::new("event", text, format!("not a CloudEvents JSON object: {e}")))?;
    match wire.specversion.as_deref() {
        Some("1.0") => {}
        Some(other) => return Err(EventError::new("specversion", quoted(other), "must be \"1.0\"")),
        None => return Err(EventError::missing("specversion")),
    }
    let id = required(wire.id, "id")?;
    let source = required(wire.source, "source")?;
    let event_type = required(wire.ty, "type")?;
    let subject = required(wire.subject, "subject")?;
    let time_text = required(wire.time, "time")?;
    let time = DateTime::parse_from_rfc3339(&time_text)
        .map_err(|e| EventError::new("time", quoted(&time_text), format!("is not an RFC 3339 timestamp ({e})")))?
        .with_timezone(&Utc);
    if let Some(ct) = wire.datacontenttype.as_deref()
        && !ct.starts_with("application/json")
    {
        return Err(EventError::new("datacontenttype", quoted(ct), "must be application/json"));
    }
    let data = match wire.data {
        Some(raw) if raw.get().trim_start().starts_with('{') => raw.to_owned(),
        Some(raw) => return Err(EventError::new("data", raw.get(), "must be a JSON object")),
        None => return Err(EventError::missing("data")),
    };
    Ok(UsageEvent { id, source, event_type, subject, time, data })
}

fn required(v: Option<Cow<'_, str>>, field: &str) -> Result<String, EventError> {
    match v {
        Some(s) if !s.trim().is_empty() => Ok(s.into_owned()),
        Some(s) => Err(EventError::new(field, quoted(&s), "must not be empty")),
        None => Err(EventError::missing(field)),
    }
}

fn quoted(s: &str) -> String {
    format!("{s:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"specversion":"1.0","id":"e1","source":"api","type":"api.request","subject":"acme","time":"2026-10-05T12:00:00Z","data":{"tokens":12}}"#;

    #[test]
    fn decodes_structured_event() {
        let e = decode_event(GOOD).unwrap();
        assert_eq!(e.id, "e1");
        assert_eq!(e.subject, "acme");
        assert_eq!(e.time.to_rfc3339(), "2026-10-05T12:00:00+00:00");
        assert_eq!(e.data.get(), r#"{"tokens":12}"#);
    }

    #[test]
    fn time_offsets_are_normalized_to_utc() {
        let e = decode_event(&GOOD.replace("2026-10-05T12:00:00Z", "2026-10-05T14:00:00+02:00")).unwrap();
        assert_eq!(e.time.to_rfc3339(), "2026-10-05T12:00:00+00:00");
    }

    #[test]
    fn errors_name_field_and_value() {
        let err = decode_event(&GOOD.replace("2026-10-05T12:00:00Z", "yesterday")).unwrap_err();
        assert_eq!(err.field, "time");
        assert_eq!(err.value, "\"yesterday\"");
        assert!(err.to_string().contains("field 'time' = \"yesterday\""), "{err}");

        let err = decode_event(&GOOD.replace(r#""subject":"acme","#, "")).unwrap_err();
        assert_eq!((err.field.as_str(), err.value.as_str()), ("subject", MISSING));

        let err = decode_event(&GOOD.replace(r#""1.0""#, r#""0.3""#)).unwrap_err();
        assert_eq!(err.field, "specversion");

        let err = decode_event(&GOOD.replace(r#"{"tokens":12}"#, "[1,2]")).unwrap_err();
        assert_eq!((err.field.as_str(), err.value.as_str()), ("data", "[1,2]"));

        let err = decode_event(&GOOD.replace(r#""id":"e1""#, r#""id":"  ""#)).unwrap_err();
        assert_eq!(err.field, "id");
    }

    #[test]
    fn batch_refuses_only_the_bad_event() {
        let bad = GOOD.replace(r#""source":"api","#, "");
        let body = format!("[{GOOD},{bad},{}]", GOOD.replace("e1", "e2"));
        let decoded = decode_message(body.as_bytes());
        assert_eq!(decoded.len(), 3);
        assert!(decoded[0].result.is_ok());
        assert_eq!(decoded[1].result.as_ref().unwrap_err().field, "source");
        assert_eq!(decoded[1].raw, bad);
        assert_eq!(decoded[2].result.as_ref().unwrap().id, "e2");
    }

    #[test]
    fn garbage_body_is_one_refused_entry() {
        let decoded = decode_message(b"not json");
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].result.as_ref().unwrap_err().field, "event");
        let decoded = decode_message(b"[1, ");
        assert_eq!(decoded[0].result.as_ref().unwrap_err().field, "body");
    }
}
