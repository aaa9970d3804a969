//! Meters: which events count, what value they carry and how values aggregate over a period.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use smallvec::SmallVec;

use crate::event::{EventError, MISSING};
use crate::money::{COLUMN_SCALE, parse_decimal};

/// How a meter's values combine over a billing period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Aggregation {
    /// Sum of the numeric value.
    Sum,
    /// Number of events (no value path).
    Count,
    /// Largest value.
    Max,
    /// Smallest value.
    Min,
    /// Sum divided by count, unrounded.
    Avg,
    /// Number of distinct values (any JSON scalar, compared as text).
    UniqueCount,
    /// The value of the event with the latest `time` (ties broken by event id).
    Latest,
}

impl Aggregation {
    /// Whether the meter needs a value path.
    pub fn needs_value(self) -> bool {
        !matches!(self, Aggregation::Count)
    }

    /// Whether the value must be numeric (all but COUNT and UNIQUE_COUNT).
    pub fn numeric(self) -> bool {
        !matches!(self, Aggregation::Count | Aggregation::UniqueCount)
    }
}

impl fmt::Display for Aggregation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Aggregation::Sum => "SUM",
            Aggregation::Count => "COUNT",
            Aggregation::Max => "MAX",
            Aggregation::Min => "MIN",
            Aggregation::Avg => "AVG",
            Aggregation::UniqueCount => "UNIQUE_COUNT",
            Aggregation::Latest => "LATEST",
        };
        f.write_str(s)
    }
}

/// A meter definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meter {
    /// Unique key, e.g. `api_calls`.
    pub key: String,
    /// Human-readable name; defaults to the key.
    #[serde(default)]
    pub name: Option<String>,
    /// CloudEvents `type` this meter counts.
    pub event_type: String,
    /// How values aggregate.
    pub aggregation: Aggregation,
    /// Dot path of the value inside `data` (`tokens`, `usage.input_tokens`); not for COUNT.
    #[serde(default)]
    pub value: Option<String>,
    /// Group-by dimensions: name → dot path inside `data`.
    #[serde(default)]
    pub group_by: BTreeMap<String, String>,
}

/// What one event contributes to one meter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterValue {
    /// Numeric value (SUM, MAX, MIN, AVG, LATEST); `None` for COUNT and UNIQUE_COUNT.
    pub value: Option<Decimal>,
    /// Text of the value for UNIQUE_COUNT.
    pub unique: Option<String>,
    /// Canonical group key: JSON object of dimension → text value, `""` without dimensions.
    pub group_key: String,
}

/// What one event contributes to one meter, borrowing from the event's `data`: the ingest hot
/// path, which writes the group key straight into the ledger column instead of building a
/// `String` per event ([`Meter::write_group_key`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterValueRef<'a> {
    /// See [`MeterValue::value`].
    pub value: Option<Decimal>,
    /// See [`MeterValue::unique`].
    pub unique: Option<Cow<'a, str>>,
    /// The text of each group-by dimension, in the order of the meter's `group_by` (empty text
    /// when the event lacks it).
    pub dims: SmallVec<[Cow<'a, str>; 2]>,
}

impl MeterValueRef<'_> {
    /// The same value, borrowing nothing (so of any lifetime).
    pub fn detach<'b>(self) -> MeterValueRef<'b> {
        let own = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
        MeterValueRef { value: self.value, unique: self.unique.map(own), dims: self.dims.into_iter().map(own).collect() }
    }

    /// The owned value, its group key built for `meter`.
    pub fn to_owned_for(&self, meter: &Meter) -> MeterValue {
        MeterValue { value: self.value, unique: self.unique.as_deref().map(str::to_owned), group_key: meter.group_key(&self.dims) }
    }
}

impl Meter {
    /// Reads this meter's value and group key out of an event's `data` object.
    pub fn extract(&self, data: &RawValue) -> Result<MeterValue, EventError> {
        self.extract_json(data.get())
    }

    /// Like [`Self::extract`], from the `data` object's JSON text (valid JSON, as decoding
    /// leaves it: [`crate::event::EventRef::data`]).
    pub fn extract_json(&self, data: &str) -> Result<MeterValue, EventError> {
        self.extract_ref(data).map(|v| v.to_owned_for(self))
    }

    /// Like [`Self::extract_json`], borrowing from `data`.
    pub fn extract_ref<'a>(&self, data: &'a str) -> Result<MeterValueRef<'a>, EventError> {
        let mut out = MeterValueRef { value: None, unique: None, dims: SmallVec::new() };
        // The value path and every group-by path are looked up in one pass over `data` (this runs
        // once per event and meter): the first segment of each, nested paths continuing from
        // there. Same results as one `lookup` per path.
        let value_path = self.aggregation.needs_value().then(|| self.value.as_deref().unwrap_or_default());
        let paths = || value_path.into_iter().chain(self.group_by.values().map(String::as_str));
        let n = paths().count();
        let mut found: [Option<&str>; MAX_PATHS_AT_ONCE] = [None; MAX_PATHS_AT_ONCE];
        if n <= MAX_PATHS_AT_ONCE {
            let mut heads = [""; MAX_PATHS_AT_ONCE];
            let mut nested = false;
            for (head, path) in heads.iter_mut().zip(paths()) {
                let (h, rest) = split_path(path);
                *head = h;
                nested |= rest.is_some();
            }
            object_get_many(data, &heads[..n], &mut found[..n]);
            if nested {
                for (slot, path) in found.iter_mut().zip(paths()) {
                    if let Some(rest) = split_path(path).1 {
                        *slot = slot.and_then(|v| rest.split('.').try_fold(v, object_get_text));
                    }
                }
            }
        }
        let mut found = found.into_iter().take(n);
        let mut next = |path: &str| if n <= MAX_PATHS_AT_ONCE { found.next().flatten() } else { lookup_text(data, path) };
        if let Some(path) = value_path {
            // The field name is built only for an error (this runs once per event and meter).
            let field = || format!("data.{path}");
            let text = next(path).ok_or_else(|| EventError::new(field(), MISSING, format!("is required by meter {}", self.key)))?;
            if self.aggregation.numeric() {
                // Numbers are read from their JSON text (never through f64); numeric strings too
                // (a string with escapes is not a number: it stays quoted and fails to parse).
                let unquoted = if text.starts_with('"') { unescaped(text).unwrap_or(text) } else { text };
                let v = parse_decimal(unquoted)
                    .ok_or_else(|| EventError::new(field(), text, format!("is not a number (meter {})", self.key)))?;
                let v = v.normalize();
                if v.scale() > COLUMN_SCALE {
                    return Err(EventError::new(field(), text, format!("has more than {COLUMN_SCALE} decimal places")));
                }
                out.value = Some(v);
            } else {
                out.unique =
                    Some(scalar_text(text).ok_or_else(|| {
                        EventError::new(field(), text, format!("must be a string, number or boolean (meter {})", self.key))
                    })?);
            }
        }
        for path in self.group_by.values() {
            out.dims.push(next(path).and_then(scalar_text).unwrap_or_default());
        }
        Ok(out)
    }

    /// The group key of an event whose dimensions' texts are `dims` (as in
    /// [`MeterValueRef::dims`]): the canonical JSON object of dimension → text, keys in
    /// `group_by` order, compact; `""` for a meter without dimensions.
    pub fn group_key(&self, dims: &[Cow<'_, str>]) -> String {
        let mut key = String::new();
        // Writing to a `String` cannot fail.
        let _ = self.write_group_key(dims, &mut key);
        key
    }

    /// Writes [`Self::group_key`] to `out`.
    pub fn write_group_key(&self, dims: &[Cow<'_, str>], out: &mut (impl fmt::Write + ?Sized)) -> fmt::Result {
        if self.group_by.is_empty() {
            return Ok(());
        }
        out.write_char('{')?;
        for (i, (name, v)) in self.group_by.keys().zip(dims).enumerate() {
            if i > 0 {
                out.write_char(',')?;
            }
            write_json_string(out, name)?;
            out.write_char(':')?;
            write_json_string(out, v)?;
        }
        out.write_char('}')
    }
}

/// Writes `s` as a JSON string literal, escaped exactly as `serde_json` writes it.
fn write_json_string(out: &mut (impl fmt::Write + ?Sized), s: &str) -> fmt::Result {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.write_char('"')?;
        out.write_str(s)?;
        out.write_char('"')
    } else {
        out.write_str(&serde_json::Value::String(s.to_owned()).to_string())
    }
}

/// Paths of a meter looked up in one pass over `data`; a meter with more takes one pass each.
const MAX_PATHS_AT_ONCE: usize = 8;

/// A dot path's first segment and the rest, as [`lookup`] splits it.
fn split_path(path: &str) -> (&str, Option<&str>) {
    let path = path.strip_prefix("$.").unwrap_or(path);
    match path.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    }
}

/// The raw values of several members of a JSON object, found in one pass: `found[i]` is what
/// [`object_get`] gives for `names[i]` (last occurrence winning; all `None` if `object` is not a
/// valid JSON object). At most [`MAX_PATHS_AT_ONCE`] names.
fn object_get_many<'a>(object: &'a str, names: &[&str], found: &mut [Option<&'a str>]) {
    if crate::json::members(object, names, found).is_some() {
        return;
    }
    use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};
    struct Find<'k, 'f, 'a>(&'k [&'k str], &'f mut [Option<&'a RawValue>]);
    impl<'de> Visitor<'de> for Find<'_, '_, 'de> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(k) = map.next_key::<Cow<'de, str>>()? {
                if self.0.contains(&k.as_ref()) {
                    let v = map.next_value::<&'de RawValue>()?;
                    for (name, slot) in self.0.iter().zip(self.1.iter_mut()) {
                        if *name == k {
                            *slot = Some(v);
                        }
                    }
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(())
        }
    }
    let mut local = [None; MAX_PATHS_AT_ONCE];
    let local = &mut local[..found.len()];
    let mut de = serde_json::Deserializer::from_str(object);
    if de.deserialize_map(Find(names, local)).is_ok() {
        for (slot, raw) in found.iter_mut().zip(local.iter()) {
            *slot = raw.map(RawValue::get);
        }
    }
}

/// Finds the raw JSON value at a dot path inside a JSON object.
pub fn lookup<'a>(data: &'a RawValue, path: &str) -> Option<&'a RawValue> {
    let path = path.strip_prefix("$.").unwrap_or(path);
    let mut current = data;
    for part in path.split('.') {
        current = object_get(current, part)?;
    }
    Some(current)
}

/// The raw value of `key` in a JSON object, found in one pass without allocating (other values
/// are skipped, not built). The last occurrence wins, as when decoding into a map.
fn object_get<'a>(object: &'a RawValue, key: &str) -> Option<&'a RawValue> {
    use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};
    struct Find<'k>(&'k str);
    impl<'de> Visitor<'de> for Find<'_> {
        type Value = Option<&'de RawValue>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(k) = map.next_key::<Cow<'de, str>>()? {
                if k == self.0 {
                    found = Some(map.next_value::<&'de RawValue>()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }
    let mut de = serde_json::Deserializer::from_str(object.get());
    de.deserialize_map(Find(key)).ok().flatten()
}

/// [`lookup`] on the JSON text of an object.
fn lookup_text<'a>(data: &'a str, path: &str) -> Option<&'a str> {
    let path = path.strip_prefix("$.").unwrap_or(path);
    path.split('.').try_fold(data, object_get_text)
}

/// [`object_get`] on the JSON text of an object.
fn object_get_text<'a>(object: &'a str, key: &str) -> Option<&'a str> {
    let mut found = [None];
    object_get_many(object, &[key], &mut found);
    found[0]
}

/// The contents of a JSON string literal without escapes (`None` when it has any). `text` is a
/// whole literal of JSON already checked (a member's value), so no control character is in it
/// and the closing quote is its last byte: what `serde_json::from_str::<&str>` gives, without a
/// deserializer per value (this runs per event and dimension).
fn unescaped(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    memchr::memchr2(b'\\', b'"', inner.as_bytes()).is_none().then_some(inner)
}

/// The text of a JSON scalar: strings unquoted, numbers and booleans as written; `None` otherwise.
/// Borrowed unless the string has escapes.
fn scalar_text(raw: &str) -> Option<Cow<'_, str>> {
    let t = raw.trim();
    if t.starts_with('"') {
        // Borrowed unless it has escapes; then the decoded copy.
        match unescaped(t) {
            Some(s) => Some(Cow::Borrowed(s)),
            None => serde_json::from_str::<String>(t).ok().map(Cow::Owned),
        }
    } else if t.starts_with(['{', '[']) || t == "null" {
        None
    } else {
        Some(Cow::Borrowed(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter(aggregation: Aggregation, value: Option<&str>) -> Meter {
        Meter {
            key: "m".into(),
            name: None,
            event_type: "t".into(),
            aggregation,
            value: value.map(Into::into),
            group_by: BTreeMap::from([("model".to_string(), "model".to_string()), ("region".to_string(), "where.region".to_string())]),
        }
    }

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn group_key_is_the_canonical_json_of_the_dimensions() {
        let mut m: Meter =
            serde_json::from_str(r#"{"key":"k","event_type":"t","aggregation":"COUNT","group_by":{"z":"a","é\"q":"b.c"}}"#).unwrap();
        m.group_by.insert("ctl".into(), "d".into());
        let data = RawValue::from_string(r#"{"a":"x\"y\\z","b":{"c":"ünï\u0001"},"d":7.50}"#.into()).unwrap();
        let got = m.extract(&data).unwrap().group_key;
        let mut expected = serde_json::Map::new();
        expected.insert("z".into(), "x\"y\\z".into());
        expected.insert("é\"q".into(), "ünï\u{1}".into());
        expected.insert("ctl".into(), "7.50".into());
        assert_eq!(got, serde_json::Value::Object(expected).to_string());
        assert_eq!(got, r#"{"ctl":"7.50","z":"x\"y\\z","é\"q":"ünï\u0001"}"#);
    }

    #[test]
    fn extracts_exact_decimal_and_group_key() {
        let data = raw(r#"{"usage":{"tokens":0.1},"model":"gpt","where":{"region":"eu"}}"#);
        let v = meter(Aggregation::Sum, Some("usage.tokens")).extract(&data).unwrap();
        assert_eq!(v.value, Some(Decimal::new(1, 1)));
        assert_eq!(v.group_key, r#"{"model":"gpt","region":"eu"}"#);
    }

    #[test]
    fn one_pass_lookup_agrees_with_one_lookup_per_path() {
        let paths = ["a", "$.a", "b.c", "b", "a.", "", "x.y.z", "$.b.c"];
        let bodies = [
            r#"{"a":1,"b":{"c":"d"},"a":2}"#,
            r#"{"b":{"c":{"d":1}},"x":{"y":{"z":true}},"":5}"#,
            r#"{"a":"\u00e9","b\u0041":1,"b":[1]}"#,
            r#"{"a":1,"b":}"#,
            r#"{"a":1} trailing"#,
            r#"[1]"#,
        ];
        for body in bodies {
            let data = raw_or_string(body);
            for n in 1..=paths.len() {
                let names: Vec<&str> = paths[..n].iter().map(|p| split_path(p).0).collect();
                let mut found = vec![None; n];
                object_get_many(data.get(), &names, &mut found);
                for (i, p) in paths[..n].iter().enumerate() {
                    let one_pass = found[i].and_then(|v| match split_path(p).1 {
                        Some(rest) => rest.split('.').try_fold(v, object_get_text),
                        None => Some(v),
                    });
                    assert_eq!(one_pass, lookup(&data, p).map(RawValue::get), "{body} {p}");
                    assert_eq!(lookup_text(data.get(), p), lookup(&data, p).map(RawValue::get), "{body} {p}");
                }
            }
        }
    }

    /// `RawValue` refuses invalid JSON; lookups must still treat it as any text (they get it
    /// from events whose `data` was checked, but the function is public).
    fn raw_or_string(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap_or_else(|_| RawValue::from_string(serde_json::to_string(s).unwrap()).unwrap())
    }

    #[test]
    fn numeric_strings_and_scientific_notation() {
        let m = meter(Aggregation::Max, Some("v"));
        assert_eq!(m.extract(&raw(r#"{"v":"12.50"}"#)).unwrap().value, Some(Decimal::new(125, 1)));
        assert_eq!(m.extract(&raw(r#"{"v":1e3}"#)).unwrap().value, Some(Decimal::from(1000)));
    }

    #[test]
    fn missing_or_bad_value_names_the_path() {
        let m = meter(Aggregation::Sum, Some("usage.tokens"));
        let e = m.extract(&raw(r#"{"usage":{}}"#)).unwrap_err();
        assert_eq!((e.field.as_str(), e.value.as_str()), ("data.usage.tokens", MISSING));
        let e = m.extract(&raw(r#"{"usage":{"tokens":"many"}}"#)).unwrap_err();
        assert_eq!((e.field.as_str(), e.value.as_str()), ("data.usage.tokens", "\"many\""));
        let e = m.extract(&raw(r#"{"usage":{"tokens":0.0000000001}}"#)).unwrap_err();
        assert!(e.reason.contains("decimal places"), "{e}");
    }

    #[test]
    fn count_needs_no_value_and_unique_takes_text() {
        let c = meter(Aggregation::Count, None).extract(&raw(r#"{"model":"x"}"#)).unwrap();
        assert_eq!((c.value, c.unique), (None, None));
        assert_eq!(c.group_key, r#"{"model":"x","region":""}"#);
        let u = meter(Aggregation::UniqueCount, Some("user")).extract(&raw(r#"{"user":"u-1"}"#)).unwrap();
        assert_eq!(u.unique.as_deref(), Some("u-1"));
        let e = meter(Aggregation::UniqueCount, Some("user")).extract(&raw(r#"{"user":{"a":1}}"#)).unwrap_err();
        assert_eq!(e.field, "data.user");
    }
}
