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

/// The wire form of a CloudEvent. String attributes borrow from the body unless they hold
/// escapes (serde's `borrow` alone does not borrow a `Cow` inside an `Option`: [`Attr`] does).
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    specversion: Option<Attr<'a>>,
    #[serde(borrow)]
    id: Option<Attr<'a>>,
    #[serde(borrow)]
    source: Option<Attr<'a>>,
    #[serde(borrow, rename = "type")]
    ty: Option<Attr<'a>>,
    #[serde(borrow)]
    subject: Option<Attr<'a>>,
    #[serde(borrow)]
    time: Option<Attr<'a>>,
    #[serde(borrow)]
    datacontenttype: Option<Attr<'a>>,
    #[serde(borrow)]
    data: Option<Data<'a>>,
}

/// The text of a JSON value, checked by the decoder that found it (serde's `&RawValue`, or the
/// scanner's strict subset of JSON).
struct Data<'a>(&'a str);

impl<'de: 'a, 'a> Deserialize<'de> for Data<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'de RawValue>::deserialize(d).map(|raw| Data(raw.get()))
    }
}

/// A string attribute, borrowed when the JSON string has no escapes; anything but a string is
/// refused as "expected a string", as for a `String`.
struct Attr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Attr<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{Error, Visitor};
        struct Str;
        impl<'de> Visitor<'de> for Str {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }
            fn visit_string<E: Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        d.deserialize_str(Str).map(Attr)
    }
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
    if is_batch(text) {
        match split_batch(text) {
            Ok(items) => items.into_iter().map(|raw| Decoded { raw, result: decode_event(raw) }).collect(),
            Err(e) => vec![Decoded { raw: text, result: Err(EventError::new("body", text, format!("not a JSON array of events: {e}"))) }],
        }
    } else {
        vec![Decoded { raw: text, result: decode_event(text) }]
    }
}

/// Whether a body is a batch (a JSON array) rather than one event.
pub fn is_batch(text: &str) -> bool {
    text.trim_start().starts_with('[')
}

/// The JSON text of each element of a batch body.
pub fn split_batch(text: &str) -> Result<Vec<&str>, serde_json::Error> {
    Ok(serde_json::from_str::<Vec<&RawValue>>(text)?.into_iter().map(RawValue::get).collect())
}

/// A decoded event whose attributes borrow from the message body (no copies unless a string
/// has escapes): the ingest hot path. [`EventRef::into_owned`] gives a [`UsageEvent`].
#[derive(Debug, Clone)]
pub struct EventRef<'a> {
    /// See [`UsageEvent::id`].
    pub id: Cow<'a, str>,
    /// See [`UsageEvent::source`].
    pub source: Cow<'a, str>,
    /// See [`UsageEvent::event_type`].
    pub event_type: Cow<'a, str>,
    /// See [`UsageEvent::subject`].
    pub subject: Cow<'a, str>,
    /// See [`UsageEvent::time`].
    pub time: DateTime<Utc>,
    /// The `data` object's JSON text (valid JSON: decoding checked it).
    pub data: Cow<'a, str>,
}

impl EventRef<'_> {
    /// An owned copy.
    pub fn into_owned(self) -> UsageEvent {
        UsageEvent {
            id: self.id.into_owned(),
            source: self.source.into_owned(),
            event_type: self.event_type.into_owned(),
            subject: self.subject.into_owned(),
            time: self.time,
            // Checked when decoded, so this cannot fail.
            data: RawValue::from_string(self.data.into_owned()).expect("decoding checked the data object's JSON"),
        }
    }
}

impl UsageEvent {
    /// A borrowed view (no copies).
    pub fn as_ref(&self) -> EventRef<'_> {
        EventRef {
            id: Cow::Borrowed(&self.id),
            source: Cow::Borrowed(&self.source),
            event_type: Cow::Borrowed(&self.event_type),
            subject: Cow::Borrowed(&self.subject),
            time: self.time,
            data: Cow::Borrowed(self.data.get()),
        }
    }
}

/// Decodes every event of a message body in one typed pass, borrowing from the body.
///
/// Returns `None` when the body cannot be decoded that way (not UTF-8, not JSON, or an event of
/// the wrong shape, such as a number where a string belongs): the caller then decodes it with
/// [`decode_message`], which isolates the bad event and names it with the same error as always.
/// When `Some`, entry *i* is what [`decode_event`] gives for the *i*-th event (the attribute
/// checks are the same function), without its raw text: [`split_batch`] finds that when needed.
pub fn decode_message_fast(body: &[u8]) -> Option<Vec<Result<EventRef<'_>, EventError>>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut events = Vec::new();
    if scan_each(text, |e| events.push(e)) {
        return Some(events);
    }
    decode_text_typed(text)
}

/// The scanner of [`decode_message_fast`] alone, on a body known to be UTF-8: hands each event
/// to `each` in order instead of collecting them (the ingest hot path).
///
/// Returns `false` when the scanner declines the body. `each` may then have been called for some
/// of its events already: the caller discards those and decodes the body with
/// [`decode_text_typed`] (or event by event).
pub fn scan_each<'a>(text: &'a str, mut each: impl FnMut(Result<EventRef<'a>, EventError>)) -> bool {
    scan::message(text, |w| each(check_wire(w))).is_some()
}

/// serde's typed pass of [`decode_message_fast`], on a body known to be UTF-8.
pub fn decode_text_typed(text: &str) -> Option<Vec<Result<EventRef<'_>, EventError>>> {
    if is_batch(text) {
        let wires: Vec<Wire<'_>> = serde_json::from_str(text).ok()?;
        Some(wires.into_iter().map(check_wire).collect())
    } else {
        let wire: Wire<'_> = serde_json::from_str(text).ok()?;
        Some(vec![check_wire(wire)])
    }
}

/// A scanner for the common shape of event bodies, beside serde: [`decode_message_fast`] tries it
/// first and takes serde's typed pass whenever it declines.
///
/// It accepts only what it can decode to exactly the [`Wire`] serde would give: an object (or an
/// array of objects) whose known attributes are strings without escapes or control characters,
/// each at most once, whose `data` is an object, whose other members are JSON values, with JSON
/// whitespace only and nothing after the body. `data` and unknown members are checked by a
/// strict subset of JSON's grammar (object keys without escapes, string escapes as serde checks
/// them, at most 64 levels), so any text it accepts, serde accepts too, as the same text.
/// Anything else (a `null`, a number where a string belongs, a duplicate attribute, a syntax
/// error) makes it decline, and serde then decodes the whole body, with its errors, as before.
/// Strings are scanned eight bytes at a time.
mod scan {
    use super::{Attr, Data, Wire};
    use crate::json::Cursor;

    impl<'a> Cursor<'a> {
        fn attr(&mut self, slot: &mut Option<Attr<'a>>) -> Option<()> {
            if slot.is_some() {
                return None;
            }
            *slot = Some(Attr(std::borrow::Cow::Borrowed(self.plain_string()?)));
            Some(())
        }

        /// An object key: the CloudEvents attributes are recognized by comparing the bytes
        /// that follow with `name"` (a key is a plain string, so the closing quote ends it),
        /// without scanning for the end; others are read as any plain string.
        #[inline]
        fn key(&mut self) -> Option<&'a str> {
            const KNOWN: [&str; 8] = ["id", "source", "type", "subject", "time", "data", "specversion", "datacontenttype"];
            let rest = self.b.get(self.i + 1..)?;
            if self.b.get(self.i) == Some(&b'"') {
                for name in KNOWN {
                    if rest.len() > name.len() && rest[name.len()] == b'"' && &rest[..name.len()] == name.as_bytes() {
                        self.i += name.len() + 2;
                        return Some(name);
                    }
                }
            }
            self.plain_string()
        }

        fn event(&mut self) -> Option<Wire<'a>> {
            let mut w =
                Wire { specversion: None, id: None, source: None, ty: None, subject: None, time: None, datacontenttype: None, data: None };
            self.eat(b'{')?;
            self.ws();
            if self.eat(b'}').is_some() {
                return Some(w);
            }
            loop {
                let key = self.key()?;
                self.ws();
                self.eat(b':')?;
                self.ws();
                match key {
                    "specversion" => self.attr(&mut w.specversion)?,
                    "id" => self.attr(&mut w.id)?,
                    "source" => self.attr(&mut w.source)?,
                    "type" => self.attr(&mut w.ty)?,
                    "subject" => self.attr(&mut w.subject)?,
                    "time" => self.attr(&mut w.time)?,
                    "datacontenttype" => self.attr(&mut w.datacontenttype)?,
                    "data" => {
                        if w.data.is_some() || self.peek()? != b'{' {
                            return None;
                        }
                        w.data = Some(Data(self.value_text()?));
                    }
                    _ => self.value(0)?,
                }
                if !self.next_or_end(b'}')? {
                    return Some(w);
                }
            }
        }
    }

    /// Calls `each` with the wire form of each event of a body (one object, or an array of
    /// objects) in order, or returns `None` (having called it for a prefix of them) for serde to
    /// decode the body.
    pub(super) fn message<'a>(text: &'a str, mut each: impl FnMut(Wire<'a>)) -> Option<()> {
        let mut c = Cursor { s: text, b: text.as_bytes(), i: 0 };
        c.ws();
        if c.eat(b'[').is_some() {
            c.ws();
            if c.eat(b']').is_none() {
                loop {
                    each(c.event()?);
                    if !c.next_or_end(b']')? {
                        break;
                    }
                }
            }
        } else {
            each(c.event()?);
        }
        c.ws();
        (c.i == c.b.len()).then_some(())
    }

    /// Every event's wire form, or `None` (see [`message`]).
    #[cfg(test)]
    pub(super) fn wires(text: &str) -> Option<Vec<Wire<'_>>> {
        let mut wires = Vec::new();
        message(text, |w| wires.push(w))?;
        Some(wires)
    }
}

/// Decodes and validates one CloudEvent from its JSON text.
pub fn decode_event(text: &str) -> Result<UsageEvent, EventError> {
    decode_event_ref(text).map(EventRef::into_owned)
}

/// Like [`decode_event`], borrowing from `text`.
pub fn decode_event_ref(text: &str) -> Result<EventRef<'_>, EventError> {
    let wire: Wire<'_> =
        serde_json::from_str(text).map_err(|e| EventError::new("event", text, format!("not a CloudEvents JSON object: {e}")))?;
    check_wire(wire)
}

/// The attribute checks of one decoded CloudEvent, in a fixed order (the first failure is the
/// error reported).
fn check_wire<'a>(wire: Wire<'a>) -> Result<EventRef<'a>, EventError> {
    // The common case first, with plain tests and each attribute moved once; anything that
    // fails a test takes the checks below, in their order, for the error.
    let visible = |s: &str| s.as_bytes().first().is_some_and(u8::is_ascii_graphic);
    let fast = match (&wire.specversion, &wire.id, &wire.source, &wire.ty, &wire.subject, &wire.time, &wire.data) {
        (Some(v), Some(id), Some(source), Some(ty), Some(subject), Some(time), Some(Data(data)))
            if v.0 == "1.0"
                && visible(&id.0)
                && visible(&source.0)
                && visible(&ty.0)
                && visible(&subject.0)
                && data.starts_with('{')
                && wire.datacontenttype.as_ref().is_none_or(|ct| ct.0.starts_with("application/json")) =>
        {
            parse_time_common(time.0.as_bytes())
        }
        _ => None,
    };
    if let Some(time) = fast
        && let Wire { id: Some(id), source: Some(source), ty: Some(ty), subject: Some(subject), data: Some(Data(data)), .. } = wire
    {
        return Ok(EventRef { id: id.0, source: source.0, event_type: ty.0, subject: subject.0, time, data: Cow::Borrowed(data) });
    }
    check_wire_slow(wire)
}

/// [`check_wire`]'s checks one by one.
fn check_wire_slow<'a>(wire: Wire<'a>) -> Result<EventRef<'a>, EventError> {
    let attr = |a: Option<Attr<'a>>| a.map(|a| a.0);
    match wire.specversion.as_ref().map(|a| a.0.as_ref()) {
        Some("1.0") => {}
        Some(other) => return Err(EventError::new("specversion", quoted(other), "must be \"1.0\"")),
        None => return Err(EventError::missing("specversion")),
    }
    let id = required(attr(wire.id), "id")?;
    let source = required(attr(wire.source), "source")?;
    let event_type = required(attr(wire.ty), "type")?;
    let subject = required(attr(wire.subject), "subject")?;
    let time_text = required(attr(wire.time), "time")?;
    let time =
        parse_time(&time_text).map_err(|e| EventError::new("time", quoted(&time_text), format!("is not an RFC 3339 timestamp ({e})")))?;
    if let Some(ct) = wire.datacontenttype.as_ref().map(|a| a.0.as_ref())
        && !ct.starts_with("application/json")
    {
        return Err(EventError::new("datacontenttype", quoted(ct), "must be application/json"));
    }
    let data = match wire.data {
        Some(Data(raw)) if raw.trim_start().starts_with('{') => Cow::Borrowed(raw),
        Some(Data(raw)) => return Err(EventError::new("data", raw, "must be a JSON object")),
        None => return Err(EventError::missing("data")),
    };
    Ok(EventRef { id, source, event_type, subject, time, data })
}

/// Parses an RFC 3339 timestamp into UTC. The common shapes (`2026-10-05T12:00:00Z`, with
/// fractional seconds and/or a `±HH:MM` offset) are read directly; anything else (lower-case
/// separators, leap seconds, invalid text) goes to chrono, which gives the same result or the
/// error.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    match parse_time_common(text.as_bytes()) {
        Some(t) => Ok(t),
        None => Ok(DateTime::parse_from_rfc3339(text)?.with_timezone(&Utc)),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)`, or `None` for chrono to decide.
fn parse_time_common(b: &[u8]) -> Option<DateTime<Utc>> {
    use chrono::{NaiveDate, NaiveTime, TimeDelta};
    fn num(b: &[u8]) -> Option<u32> {
        b.iter().try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    }
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(i32::try_from(num(&b[0..4])?).ok()?, num(&b[5..7])?, num(&b[8..10])?)?;
    let (h, mi, s) = (num(&b[11..13])?, num(&b[14..16])?, num(&b[17..19])?);
    let mut rest = &b[19..];
    let mut nanos = 0u32;
    if rest.first() == Some(&b'.') {
        let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&digits) {
            return None;
        }
        nanos = num(&rest[1..=digits])? * 10u32.pow(9 - u32::try_from(digits).ok()?);
        rest = &rest[1 + digits..];
    }
    let offset_secs = match rest {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (oh, om) = (num(&[*h1, *h2])?, num(&[*m1, *m2])?);
            if oh > 23 || om > 59 {
                return None;
            }
            let secs = i64::from(oh * 3600 + om * 60);
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return None,
    };
    // Seconds = 60 (a leap second) is left to chrono.
    let time = if s < 60 { NaiveTime::from_hms_nano_opt(h, mi, s, nanos)? } else { return None };
    let local = date.and_time(time);
    let utc = if offset_secs == 0 { local } else { local.checked_sub_signed(TimeDelta::seconds(offset_secs))? };
    Some(DateTime::from_naive_utc_and_offset(utc, Utc))
}

fn required<'a>(v: Option<Cow<'a, str>>, field: &str) -> Result<Cow<'a, str>, EventError> {
    // A visible ASCII first character is not blank: no Unicode trim for the common case.
    let not_blank = |s: &str| s.as_bytes().first().is_some_and(u8::is_ascii_graphic) || !s.trim().is_empty();
    match v {
        Some(s) if not_blank(&s) => Ok(s),
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

    /// The one-pass decoder gives exactly what the event-by-event decoder gives.
    fn same_as_slow(body: &str) {
        let fast = decode_message_fast(body.as_bytes()).expect("decodable in one pass");
        let slow = decode_message(body.as_bytes());
        assert_eq!(fast.len(), slow.len(), "{body}");
        for (f, s) in fast.into_iter().zip(slow) {
            match (f, s.result) {
                (Ok(f), Ok(s)) => {
                    let f = f.into_owned();
                    assert_eq!(
                        (&f.id, &f.source, &f.event_type, &f.subject, f.time),
                        (&s.id, &s.source, &s.event_type, &s.subject, s.time)
                    );
                    assert_eq!(f.data.get(), s.data.get());
                }
                (Err(f), Err(s)) => assert_eq!(f, s),
                (f, s) => panic!("{body}: fast {f:?} vs slow {s:?}"),
            }
        }
    }

    #[test]
    fn one_pass_matches_event_by_event() {
        same_as_slow(GOOD);
        same_as_slow(&format!("  [{GOOD}, {}]", GOOD.replace("e1", "e2")));
        // Escapes decode (owned), the rest borrows.
        let escaped = GOOD.replace(r#""id":"e1""#, r#""id":"e\u00e9\"1""#);
        same_as_slow(&escaped);
        let e = decode_message_fast(escaped.as_bytes()).unwrap().remove(0).unwrap();
        assert_eq!(e.id, "e\u{e9}\"1");
        assert!(matches!(e.id, Cow::Owned(_)) && matches!(e.subject, Cow::Borrowed(_)));
        // Attribute errors: the same error, per event, in the same position.
        let missing = GOOD.replace(r#""subject":"acme","#, "");
        let bad_time = GOOD.replace("2026-10-05T12:00:00Z", "2026-13-05T12:00:00Z");
        let array_data = GOOD.replace(r#"{"tokens":12}"#, "[1,2]");
        let bad_ct = GOOD.replace(r#""source":"api","#, r#""source":"api","datacontenttype":"text/plain","#);
        same_as_slow(&format!("[{GOOD},{missing},{bad_time},{array_data},{bad_ct}]"));
        same_as_slow("[]");
    }

    /// Whatever the scanner accepts, serde's typed pass decodes to the same events and errors.
    fn scanner_agrees(body: &str, accepted: bool) {
        let scanned = scan::wires(body);
        assert_eq!(scanned.is_some(), accepted, "scanner on {body}");
        let Some(scanned) = scanned else { return };
        let typed: Vec<Wire<'_>> = if is_batch(body) {
            serde_json::from_str(body).expect("serde decodes")
        } else {
            vec![serde_json::from_str(body).expect("serde decodes")]
        };
        assert_eq!(scanned.len(), typed.len());
        for (a, b) in scanned.into_iter().zip(typed) {
            let raw = |w: &Wire<'_>| w.data.as_ref().map(|d| d.0.to_owned());
            assert_eq!(raw(&a), raw(&b), "{body}");
            match (check_wire(a), check_wire(b)) {
                (Ok(a), Ok(b)) => assert_eq!(
                    (&a.id, &a.source, &a.event_type, &a.subject, a.time, &a.data),
                    (&b.id, &b.source, &b.event_type, &b.subject, b.time, &b.data)
                ),
                (Err(a), Err(b)) => assert_eq!(a, b),
                (a, b) => panic!("{body}: scanned {a:?} vs serde {b:?}"),
            }
        }
    }

    #[test]
    fn scanner_reads_common_bodies_as_serde_does_and_declines_the_rest() {
        let spaced = " {\n \"specversion\" : \"1.0\" ,\"id\":\"e1\",\t\"source\":\"api\",\"type\":\"t\",\"subject\":\"acme\",\"time\":\"2026-10-05T12:00:00Z\",\"data\" : { \"a\" : [1, {\"b\":\"}]\\\"\"}], \"c\": -1.5e3 } }\r\n";
        let extensions =
            GOOD.replace(r#""source":"api","#, r#""source":"api","traceparent":"00-ab","n":[1,{"x":null}],"b":true,"u":"\u00e9","#);
        let bad_ct = GOOD.replace(r#""source":"api","#, r#""source":"api","datacontenttype":"text/plain","#);
        let missing = GOOD.replace(r#""subject":"acme","#, "");
        for body in [
            GOOD.to_owned(),
            format!("[{GOOD}, {}]", GOOD.replace("e1", "e2")),
            spaced.to_owned(),
            extensions,
            bad_ct,
            missing,
            GOOD.replace("2026-10-05T12:00:00Z", "yesterday"),
            GOOD.replace(r#""1.0""#, r#""0.3""#),
            "[]".into(),
            " [ ] ".into(),
            "{}".into(),
        ] {
            scanner_agrees(&body, true);
        }
        let declined = [
            GOOD.replace(r#""id":"e1""#, r#""id":"e\"1""#),                   // escape in an attribute
            GOOD.replace(r#""id":"e1""#, r#""id":null"#),                     // null: serde says None
            GOOD.replace(r#""id":"e1""#, r#""id":7"#),                        // wrong type
            GOOD.replace(r#""id":"e1""#, r#""id":"e1","id":"e2""#),           // duplicate attribute
            GOOD.replace(r#"{"tokens":12}"#, "[1,2]"),                        // data not an object
            GOOD.replace(r#"{"tokens":12}"#, "{\"tokens\":12,}"),             // invalid data
            GOOD.replace(r#""source":"api","#, r#""source":"api","x":tru,"#), // invalid member
            GOOD.replace(r#""id":"e1""#, "\"id\":\"e\u{1}1\""),               // control character
            format!("{GOOD} x"),
            format!("[{GOOD},]"),
            format!("[{GOOD}"),
            format!("\u{a0}[{GOOD}]"),
            "[1]".into(),
            "not json".into(),
            GOOD[..40].to_owned(),
        ];
        for body in declined {
            assert!(scan::wires(&body).is_none(), "scanner should decline {body}");
        }
        let deep = GOOD.replace(r#"{"tokens":12}"#, &format!("{{\"a\":{}1{}}}", "[".repeat(70), "]".repeat(70)));
        scanner_agrees(&deep, false);
    }

    /// A small deterministic generator (xorshift), for the randomized agreement test.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    #[test]
    fn whatever_the_scanner_accepts_serde_decodes_the_same() {
        // Bodies near the common shape, mutated at random with JSON's significant characters:
        // every body the scanner accepts must be one serde decodes to the same events (the
        // scanner may decline more than serde refuses, never less).
        let data = r#"{"tokens":12,"model":"m\u00e9","n":[1,-0.5e3,{"x":null}],"t":true,"s":"a\"b\\c"}"#;
        let event = GOOD.replace(r#"{"tokens":12}"#, data).replace(r#""source":"api","#, r#""source":"api","ext":[false,"x"],"#);
        let seeds = [event.clone(), format!("[{event},{}]", event.replace("e1", "e2")), format!(" [ {GOOD} ] ")];
        let alphabet: Vec<char> = "{}[]\",:\\/ \t\n0123456789-+.eEtrufalsnbu\u{e9}\u{1}x".chars().collect();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut accepted, mut declined) = (0, 0);
        for round in 0..20_000 {
            let mut body: Vec<char> = seeds[round % seeds.len()].chars().collect();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(body.len());
                let c = alphabet[rng.below(alphabet.len())];
                match rng.below(3) {
                    0 => body[at] = c,
                    1 => body.insert(at, c),
                    _ => {
                        body.remove(at);
                    }
                }
            }
            let body: String = body.into_iter().collect();
            match scan::wires(&body) {
                Some(_) => {
                    accepted += 1;
                    scanner_agrees(&body, true);
                }
                None => declined += 1,
            }
        }
        // Both outcomes are exercised.
        assert!(accepted > 1_000 && declined > 1_000, "accepted {accepted}, declined {declined}");
    }

    #[test]
    fn one_pass_declines_what_only_event_by_event_can_isolate() {
        // Wrong types and non-objects fail the typed pass; the slow path refuses just that event.
        let wrong_type = GOOD.replace(r#""id":"e1""#, r#""id":7"#);
        for body in [format!("[{GOOD},{wrong_type}]"), format!("[{GOOD},1]"), wrong_type.clone(), "not json".into(), "[1, ".into()] {
            assert!(decode_message_fast(body.as_bytes()).is_none(), "{body}");
        }
        assert!(decode_message_fast(&[0xff, 0xfe]).is_none());
        let body = format!("[{GOOD},{wrong_type}]");
        let slow = decode_message(body.as_bytes());
        assert!(slow[0].result.is_ok());
        let err = slow[1].result.as_ref().unwrap_err();
        assert_eq!(err.field, "event");
        assert!(err.reason.contains("invalid type: integer `7`"), "{err}");
    }

    #[test]
    fn fast_time_parser_agrees_with_chrono() {
        let cases = [
            "2026-10-05T12:00:00Z",
            "2026-10-05T12:00:00.5Z",
            "2026-10-05T12:00:00.123456789Z",
            "2026-10-05T12:00:00.1234567891Z",
            "2026-10-05T14:00:00+02:00",
            "2026-10-05T00:30:00-05:30",
            "2026-01-01T00:00:00+23:59",
            "1970-01-01T00:00:00Z",
            "2024-02-29T23:59:59.999Z",
            "2025-02-29T00:00:00Z",
            "2026-10-05t12:00:00z",
            "2026-10-05 12:00:00Z",
            "2016-12-31T23:59:60Z",
            "2026-10-05T24:00:00Z",
            "2026-10-05T12:00:00",
            "2026-10-05T12:00:00.Z",
            "2026-10-05T12:00:00+0200",
            "2026-1O-05T12:00:00Z",
            "+2026-10-05T12:00:00Z",
            "yesterday",
            "",
        ];
        for c in cases {
            let chrono = DateTime::parse_from_rfc3339(c).map(|t| t.with_timezone(&Utc));
            assert_eq!(parse_time(c), chrono, "{c}");
            if let Some(fast) = parse_time_common(c.as_bytes()) {
                assert_eq!(Ok(fast), chrono, "{c}");
            }
        }
        assert!(parse_time_common(b"2026-10-05T12:00:00.5Z").is_some());
        assert!(parse_time_common(b"2026-10-05T14:00:00+02:00").is_some());
    }

    #[test]
    fn borrowing_attributes_fail_like_owned_ones() {
        // The serde errors (shown in dead letters) are those of plain `Option<String>` fields.
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Wire {
            specversion: Option<String>,
            id: Option<String>,
            source: Option<String>,
            #[serde(rename = "type")]
            ty: Option<String>,
            subject: Option<String>,
            time: Option<String>,
            datacontenttype: Option<String>,
            data: Option<Box<RawValue>>,
        }
        for body in [
            GOOD.replace(r#""id":"e1""#, r#""id":7"#),
            GOOD.replace(r#""id":"e1""#, r#""id":{"a":1}"#),
            GOOD.replace(r#""id":"e1""#, r#""id":true"#),
            GOOD.replace(r#""id":"e1""#, r#""id":"e1","id":"e2""#),
            GOOD.replace(r#""id":"e1""#, r#""id":"\x""#),
            GOOD.replace(r#""id":"e1""#, r#""id":null"#),
            r#"["1.0","e1"]"#.to_owned(),
            "7".to_owned(),
        ] {
            let owned = serde_json::from_str::<Wire>(&body).map(|o| o.id).map_err(|e| e.to_string());
            let wire = serde_json::from_str::<super::Wire<'_>>(&body).map(|w| w.id.map(|a| a.0.into_owned())).map_err(|e| e.to_string());
            assert_eq!(wire, owned, "{body}");
        }
        let e = decode_event(&GOOD.replace(r#""id":"e1""#, r#""id":null"#)).unwrap_err();
        assert_eq!((e.field.as_str(), e.value.as_str()), ("id", MISSING));
    }
}
