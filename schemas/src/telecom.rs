//! Telecom rating: each call detail record (CDR) priced on its own against a rate table.
//!
//! Pure functions over values: no I/O, no ledger, no NATS. A [`RateTable`] is loaded and checked
//! once with [`RateTable::validate`]; [`rate_call`] prices one [`CallRecord`] into a
//! [`RatedCall`], [`rate_calls`] a batch (keeping the failures beside the successes), and
//! [`total`] adds the amounts of rated calls exactly. Nothing here rounds to a minor unit: the
//! invoice rounds a line once, with `crate::money::round_line`.
//!
//! # A rate table
//!
//! Decimals are strings (or integers), never binary floats, as in catalog files:
//!
//! ```json
//! { "key": "uk-retail", "currency": "GBP", "timezone_offset_minutes": 0,
//!   "rates": [
//!     { "prefix": "44", "description": "United Kingdom", "increments": { "first": 60, "next": 60 },
//!       "connect_fee": "0.05",
//!       "bands": [
//!         { "name": "peak",     "days": ["mon","tue","wed","thu","fri"], "from": "08:00", "to": "18:00", "price_per_minute": "0.05" },
//!         { "name": "off-peak", "days": ["mon","tue","wed","thu","fri"], "from": "18:00", "to": "08:00", "price_per_minute": "0.02" },
//!         { "name": "weekend",  "days": ["sat","sun"],                   "from": "00:00", "to": "00:00", "price_per_minute": "0.01" } ] },
//!     { "prefix": "447", "description": "UK mobile", "increments": { "first": 30, "next": 6 }, "min_duration_secs": 10,
//!       "bands": [ { "name": "any time", "from": "00:00", "to": "00:00", "price_per_minute": "0.12" } ] },
//!     { "prefix": "", "description": "Rest of world", "increments": { "first": 60, "next": 60 },
//!       "bands": [ { "name": "any time", "from": "00:00", "to": "00:00", "price_per_minute": "1.00" } ] } ] }
//! ```
//!
//! # Semantics
//!
//! 1. **Destination.** The destination is trimmed; one leading `+` is allowed; spaces and `-` are
//!    ignored; every other character must be an ASCII digit, and at least one digit must remain
//!    (else [`TelecomError::BadDestination`]). No dial-plan conversion happens here: `0044…` or
//!    `011 44…` are *not* turned into `44…`; turning national or international dialling forms
//!    into E.164 is the job of the mediation step that produces the records.
//! 2. **Rate: longest prefix.** The rate whose `prefix` is the longest prefix of the destination's
//!    digits prices the call, whatever the order of `rates`: with prefixes `44`, `447` and
//!    `4479`, `+44 20 7946 0000` → `44`, `+44 7700 900123` → `447`, `+44 7900 900123` → `4479`.
//!    The empty prefix `""` is a catch-all that matches every destination with length 0, so any
//!    real prefix beats it. No match → [`TelecomError::NoRate`] naming the destination.
//!    [`RateTable::validate`] refuses duplicate prefixes; an unvalidated table with duplicates is
//!    priced by the first of them (by [`rate_call`] and [`rate_calls`] alike).
//! 3. **Band: chosen by the start, in the table's offset.** The call's `start` (UTC) is moved to
//!    the fixed offset `timezone_offset_minutes` (default 0 = UTC, at most ±18:00) and the *first*
//!    band in list order is chosen whose `days` contain that local weekday (an empty list = every
//!    day) and whose range contains that local time of day (compared to the second and below,
//!    against `HH:MM:00`):
//!    - `from < to`: `from ≤ t < to` (`to` exclusive): 08:00–18:00 covers 17:59:59.999 but not
//!      18:00:00;
//!    - `from == to`: the whole day;
//!    - `from > to`: wraps past midnight, `t ≥ from` or `t < to`: 18:00–08:00 covers 18:00:00 to
//!      07:59:59.999; `18:00`–`00:00` means 18:00 to midnight.
//!
//!    The weekday is always the weekday *of the start itself*: a wrap-around band listing only
//!    `fri` covers Friday 00:00–08:00 and Friday 18:00–24:00, not the early hours of Saturday
//!    (list `sat` as well, or add a Saturday band, to price "Friday night" into Saturday).
//!    **A call is priced entirely by the band of its start**: a one-hour call starting at
//!    17:59:59 on a weekday is all peak; calls are not split at band boundaries. The offset is
//!    fixed, with no summer time: named zones (`Europe/London`) are future work; until then a
//!    table for a zone with summer time must have its offset changed at the transitions.
//!    No band covers the start → [`TelecomError::NoBand`] naming the local time and weekday.
//! 4. **Billed seconds** ([`billed_secs`]). A call of 0 seconds is an unanswered attempt: billed
//!    0 seconds, *no connect fee*, amount 0; the minimum duration does not apply to it, but its
//!    rate and band are still resolved, so the record says where the attempt went and an
//!    unknown destination is still reported. Otherwise, with `d = max(duration,
//!    min_duration_secs)`: `billed = first` when `d ≤ first`, else
//!    `first + ⌈(d − first) ÷ next⌉ × next`. Examples:
//!
//!    | increments | min | duration | billed |
//!    | --- | --- | --- | --- |
//!    | 60/60 | 0 | 1, 60, 61, 121 | 60, 60, 120, 180 |
//!    | 30/6 | 0 | 1, 30, 31, 36, 37 | 30, 30, 36, 36, 42 |
//!    | 1/1 | 0 | 37 | 37 |
//!    | 30/6 | 45 | 10 | 48 (45 → 30 + ⌈15 ÷ 6⌉ × 6) |
//!    | 1/1 | 60 | 10, 75 | 60, 75 |
//!
//! 5. **Amounts.** `usage_amount = billed_secs × price_per_minute ÷ 60`, the product taken first
//!    and divided once, last; `amount = connect_fee + usage_amount`. The connect fee is charged
//!    once per answered call. Nothing is rounded to the currency's minor unit here. The product
//!    is exact; the quotient is exact whenever it terminates within `Decimal`'s 28 digits, which
//!    is always the case when the billed seconds are a multiple of 60 (60/60 increments), and
//!    often otherwise (36 s at 0.0137/min = 0.00822 exactly). When it does not terminate
//!    (37 s at 0.0137/min = 0.008448333…), `Decimal` rounds it at its last (28th) digit: a
//!    relative error below 10⁻²⁷, dozens of orders below any minor unit, and the only inexact
//!    step. Amounts are normalized (no trailing zeros) like the other price models'. [`total`]
//!    sums amounts with checked, exact additions and refuses to mix currencies.
//! 6. **Validation** ([`RateTable::validate`]): the key (1–128 letters, digits, `_`, `-`), the
//!    currency (an active ISO 4217 code), the offset (±18:00), and per rate: the prefix (ASCII
//!    digits only, possibly empty, unique in the table), at least one band, every `from`/`to` a
//!    valid `HH:MM` (00:00 to 23:59, two digits each), increments of at least 1, and no negative
//!    price or connect fee. Errors name the rate by its prefix and the field by its path, bands by
//!    their 0-based index, like catalog errors: `rates[44].bands[1].from: "25:00" is not HH:MM
//!    (00:00 to 23:59)`; the catch-all rate is `rates[]`. [`rate_call`] re-checks the table's
//!    currency and offset and the matched rate (not the other rates, nor duplicates), so an
//!    unvalidated table can neither panic nor divide by zero, only fail with the same errors.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, FixedOffset, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::money::{Currency, exact};
pub use crate::rate_table::{Band, Increments, MAX_OFFSET_MINUTES, Rate, RateTable, Result, TelecomError, Weekday};
use crate::rate_table::{check_rate, invalid};

/// One call detail record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallRecord {
    /// Identifier of the record, copied onto the rated call and onto errors of [`rate_calls`].
    pub id: String,
    /// Called number, E.164-like: digits, an optional leading `+`, spaces and `-` ignored.
    pub destination: String,
    /// When the call was answered (or attempted, for 0 seconds), UTC.
    pub start: DateTime<Utc>,
    /// Duration in whole seconds; 0 = unanswered attempt.
    pub duration_secs: u64,
}

/// A priced call: what was matched and how the amount was reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatedCall {
    /// The record's id.
    pub call_id: String,
    /// Prefix of the rate that priced the call (`""` for the catch-all).
    pub matched_prefix: String,
    /// Description of that rate.
    pub description: String,
    /// Name of the band chosen by the call's start.
    pub band: String,
    /// The record's duration, for comparison with `billed_secs`.
    pub duration_secs: u64,
    /// Seconds charged after the minimum and the increments.
    pub billed_secs: u64,
    /// The band's price per minute.
    #[serde(with = "exact")]
    pub price_per_minute: Decimal,
    /// Connect fee charged (0 for an unanswered attempt).
    #[serde(with = "exact")]
    pub connect_fee: Decimal,
    /// `billed_secs × price_per_minute ÷ 60`, unrounded.
    #[serde(with = "exact")]
    pub usage_amount: Decimal,
    /// `connect_fee + usage_amount`, unrounded: the invoice rounds a line once.
    #[serde(with = "exact")]
    pub amount: Decimal,
    /// Currency of the table.
    pub currency: Currency,
}

/// `data` field holding the called number.
pub const DESTINATION_FIELD: &str = "destination";
/// `data` field holding when the call was answered (optional; default: the event's `time`).
pub const ANSWERED_AT_FIELD: &str = "answered_at";

/// Why an event is not a call record: the field (`data.destination`, `data.answered_at`, or
/// `duration` for the meter's value), its value as received and the reason. Ingest dead-letters
/// such an event naming the field; rating reports it as [`TelecomError::Invalid`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFieldError {
    /// The field.
    pub field: &'static str,
    /// Its value as received (JSON text), or `<missing>`.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl CallFieldError {
    /// The field as an event path: `duration` is the meter's value path (`data.duration_secs`).
    pub fn event_field(&self, value_path: &str) -> String {
        if self.field == "duration" { format!("data.{value_path}") } else { self.field.to_owned() }
    }
}

impl From<CallFieldError> for TelecomError {
    fn from(e: CallFieldError) -> Self {
        invalid(e.field.to_owned(), format!("{} {}", e.value, e.reason))
    }
}

/// The call record of an event: its id, time, meter value (the duration in whole seconds) and
/// `data` object text (`destination`, a string; `answered_at`, optional, RFC 3339, choosing
/// the band; absent, the event's time). Ingest and rating both read call records with it, so an
/// event ingest accepts is one rating can read.
pub fn parse_call(event_id: &str, time: DateTime<Utc>, duration: Decimal, data: &str) -> std::result::Result<CallRecord, CallFieldError> {
    #[derive(Deserialize)]
    struct CallData<'a> {
        #[serde(borrow, default)]
        destination: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow, default)]
        answered_at: Option<&'a serde_json::value::RawValue>,
    }
    let err = |field, value: &str, reason: String| CallFieldError { field, value: value.to_owned(), reason };
    if !data.trim_start().starts_with('{') {
        return Err(err("data", data, "is not a JSON object".into()));
    }
    let fields: CallData<'_> = serde_json::from_str(data).map_err(|e| err("data", data, format!("is not a JSON object: {e}")))?;
    let destination = match fields.destination {
        None => return Err(err("data.destination", crate::event::MISSING, "is required (the called number)".into())),
        Some(raw) => serde_json::from_str::<String>(raw.get()).map_err(|_| err("data.destination", raw.get(), "is not a string".into()))?,
    };
    let start = match fields.answered_at.map(|r| r.get()) {
        None | Some("null") => time,
        Some(raw) => {
            let s: String = serde_json::from_str(raw).map_err(|_| err("data.answered_at", raw, "is not an RFC 3339 string".into()))?;
            DateTime::parse_from_rfc3339(&s).map_err(|e| err("data.answered_at", raw, format!("is not an RFC 3339 time: {e}")))?.to_utc()
        }
    };
    let whole = duration.normalize();
    if whole.is_sign_negative() || whole.scale() != 0 {
        return Err(err("duration", &duration.to_string(), "is not a whole number of seconds of 0 or more".into()));
    }
    let duration_secs = u64::try_from(whole).map_err(|_| err("duration", &duration.to_string(), "does not fit 64 bits".into()))?;
    Ok(CallRecord { id: event_id.to_owned(), destination, start, duration_secs })
}

/// [`parse_call`] for rating: the error as a [`TelecomError`].
pub fn call_from_row(event_id: &str, time: DateTime<Utc>, duration: Decimal, data: &str) -> Result<CallRecord> {
    parse_call(event_id, time, duration, data).map_err(TelecomError::from)
}

/// The digits of a destination (point 1): trimmed, one optional leading `+`, spaces and `-`
/// dropped, anything else refused.
pub fn normalize_destination(destination: &str) -> Result<String> {
    let bad = |reason| TelecomError::BadDestination { destination: destination.to_owned(), reason };
    let trimmed = destination.trim();
    let body = trimmed.strip_prefix('+').unwrap_or(trimmed);
    let mut digits = String::with_capacity(body.len());
    for c in body.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' => {}
            '+' => return Err(bad("'+' is only allowed as the first character")),
            _ => return Err(bad("only digits, a leading '+', spaces and '-' are allowed")),
        }
    }
    if digits.is_empty() {
        return Err(bad("it has no digits"));
    }
    Ok(digits)
}

/// Seconds charged for a call of `duration_secs` (point 4): 0 for 0; otherwise the duration
/// raised to `min_duration_secs`, then to `first`, then to `first` plus whole `next` blocks.
pub fn billed_secs(duration_secs: u64, min_duration_secs: u32, increments: Increments) -> Result<u64> {
    if increments.first == 0 || increments.next == 0 {
        let field = if increments.first == 0 { "first" } else { "next" };
        return Err(invalid(format!("increments.{field}"), "0 must be at least 1"));
    }
    if duration_secs == 0 {
        return Ok(0);
    }
    let d = duration_secs.max(u64::from(min_duration_secs));
    let (first, next) = (u64::from(increments.first), u64::from(increments.next));
    if d <= first {
        return Ok(first);
    }
    (d - first)
        .div_ceil(next)
        .checked_mul(next)
        .and_then(|blocks| blocks.checked_add(first))
        .ok_or_else(|| TelecomError::Overflow { what: format!("billed seconds of a {duration_secs} s call in {first}/{next} increments") })
}

/// The rate with the longest prefix of `digits`, by a scan of the table (first of equals wins).
fn longest_prefix<'a>(rates: &'a [Rate], digits: &str) -> Option<&'a Rate> {
    let mut best: Option<&Rate> = None;
    for rate in rates {
        if digits.starts_with(rate.prefix.as_str()) && best.is_none_or(|b| rate.prefix.len() > b.prefix.len()) {
            best = Some(rate);
        }
    }
    best
}

/// Prices `call` against `table` (the module documentation gives every rule).
pub fn rate_call(table: &RateTable, call: &CallRecord) -> Result<RatedCall> {
    let context = table.context()?;
    let digits = normalize_destination(&call.destination)?;
    let rate = longest_prefix(&table.rates, &digits).ok_or_else(|| no_rate(table, call, digits))?;
    price(context, rate, call)
}

/// Prices every call, in order: the rated calls, and the ids of the others with their errors.
///
/// Same results as [`rate_call`] on each record, through a [`RateIndex`].
pub fn rate_calls(table: &RateTable, calls: &[CallRecord]) -> (Vec<RatedCall>, Vec<(String, TelecomError)>) {
    let index = RateIndex::new(table.clone());
    let mut rated = Vec::with_capacity(calls.len());
    let mut failed = Vec::new();
    for call in calls {
        match index.rate(call) {
            Ok(r) => rated.push(r),
            Err(e) => failed.push((call.id.clone(), e)),
        }
    }
    (rated, failed)
}

/// A rate table with its prefixes indexed, for rating many calls: same results as [`rate_call`],
/// but a call costs one hash lookup per digit of its destination instead of a scan of the table.
#[derive(Debug, Clone)]
pub struct RateIndex {
    table: RateTable,
    context: Result<(Currency, FixedOffset)>,
    /// Prefix → position in `table.rates` (the first of duplicate prefixes, as [`rate_call`]).
    by_prefix: HashMap<String, usize>,
}

impl RateIndex {
    /// Indexes `table` (checked again at each call, like [`rate_call`]).
    pub fn new(table: RateTable) -> Self {
        let context = table.context();
        let mut by_prefix = HashMap::with_capacity(table.rates.len());
        for (i, rate) in table.rates.iter().enumerate() {
            by_prefix.entry(rate.prefix.clone()).or_insert(i);
        }
        RateIndex { table, context, by_prefix }
    }

    /// The indexed table.
    pub fn table(&self) -> &RateTable {
        &self.table
    }

    /// Prices `call` (the module documentation gives every rule).
    pub fn rate(&self, call: &CallRecord) -> Result<RatedCall> {
        let context = self.context.clone()?;
        let digits = normalize_destination(&call.destination)?;
        // Digits are ASCII, so every byte offset is a character boundary.
        let rate = (0..=digits.len()).rev().find_map(|n| self.by_prefix.get(&digits[..n]).map(|&i| &self.table.rates[i]));
        let rate = rate.ok_or_else(|| no_rate(&self.table, call, digits))?;
        price(context, rate, call)
    }
}

fn no_rate(table: &RateTable, call: &CallRecord, digits: String) -> TelecomError {
    TelecomError::NoRate { destination: call.destination.clone(), digits, table: table.key.clone() }
}

/// Prices `call` with `rate`: band, billed seconds, amounts (points 3 to 5).
fn price((currency, offset): (Currency, FixedOffset), rate: &Rate, call: &CallRecord) -> Result<RatedCall> {
    let bands = check_rate(rate)?;
    let local = call.start.with_timezone(&offset);
    let (day, time) = (Weekday::from(local.weekday()), local.time());
    let band = bands.iter().find(|b| b.covers(day, time)).map(|b| b.band).ok_or_else(|| TelecomError::NoBand {
        prefix: rate.prefix.clone(),
        description: rate.description.clone(),
        local_time: local.format("%Y-%m-%d %H:%M:%S %:z").to_string(),
        weekday: day,
    })?;
    let billed = billed_secs(call.duration_secs, rate.min_duration_secs, rate.increments)?;
    let overflow = || TelecomError::Overflow {
        what: format!("call {}: {billed} s at {}/min plus {}", call.id, band.price_per_minute, rate.connect_fee),
    };
    let connect_fee = if call.duration_secs == 0 { Decimal::ZERO } else { rate.connect_fee };
    // Multiply first and divide once, last, so the only possibly inexact step is the ÷ 60.
    let usage_amount = Decimal::from(billed)
        .checked_mul(band.price_per_minute)
        .and_then(|p| p.checked_div(Decimal::from(60)))
        .ok_or_else(overflow)?
        .normalize();
    let amount = connect_fee.checked_add(usage_amount).ok_or_else(overflow)?.normalize();
    Ok(RatedCall {
        call_id: call.id.clone(),
        matched_prefix: rate.prefix.clone(),
        description: rate.description.clone(),
        band: band.name.clone(),
        duration_secs: call.duration_secs,
        billed_secs: billed,
        price_per_minute: band.price_per_minute,
        connect_fee: connect_fee.normalize(),
        usage_amount,
        amount,
        currency,
    })
}

/// The exact sum of the calls' amounts (0 for none); refuses calls in different currencies.
pub fn total(calls: &[RatedCall]) -> Result<Decimal> {
    let Some(first) = calls.first() else { return Ok(Decimal::ZERO) };
    let mut sum = Decimal::ZERO;
    for call in calls {
        if call.currency != first.currency {
            return Err(TelecomError::MixedCurrencies { first: first.currency, other: call.currency, call_id: call.call_id.clone() });
        }
        sum = sum.checked_add(call.amount).ok_or_else(|| TelecomError::Overflow { what: format!("the total at call {}", call.call_id) })?;
    }
    Ok(sum.normalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_table::{TimedBand, parse_hhmm};
    use chrono::NaiveTime;

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    fn inc(first: u32, next: u32) -> Increments {
        Increments { first, next }
    }

    #[test]
    fn hhmm_is_strict() {
        assert_eq!(parse_hhmm("00:00"), NaiveTime::from_hms_opt(0, 0, 0));
        assert_eq!(parse_hhmm("23:59"), NaiveTime::from_hms_opt(23, 59, 0));
        for bad in ["24:00", "25:00", "12:60", "8:00", "08:0", "08-00", "0800", "", "+8:00", "08:00 ", "١٢:٠٠"] {
            assert_eq!(parse_hhmm(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn destinations_normalize_to_digits() {
        assert_eq!(normalize_destination("+44 20-7946 0000").unwrap(), "442079460000");
        assert_eq!(normalize_destination("  447700900123 ").unwrap(), "447700900123");
        for (bad, reason) in [
            ("", "no digits"),
            ("+", "no digits"),
            (" - ", "no digits"),
            ("44+1", "first"),
            ("++44", "first"),
            ("(020) 7946", "only digits"),
        ] {
            let e = normalize_destination(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")) && e.contains(reason), "{bad:?}: {e}");
        }
    }

    #[test]
    fn billed_seconds_follow_increments() {
        // 60/60: every started minute. 61 = 60 + ⌈1/60⌉ × 60 = 120.
        let per_minute = [(0, 0), (1, 60), (60, 60), (61, 120), (121, 180)];
        // 30/6: 30 s first, then 6 s blocks. 31 = 30 + ⌈1/6⌉ × 6 = 36; 37 = 30 + ⌈7/6⌉ × 6 = 42.
        let thirty_six = [(1, 30), (30, 30), (31, 36), (36, 36), (37, 42)];
        for (duration, billed) in per_minute {
            assert_eq!(billed_secs(duration, 0, inc(60, 60)).unwrap(), billed, "{duration} s in 60/60");
        }
        for (duration, billed) in thirty_six {
            assert_eq!(billed_secs(duration, 0, inc(30, 6)).unwrap(), billed, "{duration} s in 30/6");
        }
        assert_eq!(billed_secs(37, 0, inc(1, 1)).unwrap(), 37);
        // Minimum first, then increments: 10 → 45 → 30 + ⌈15/6⌉ × 6 = 48.
        assert_eq!(billed_secs(10, 45, inc(30, 6)).unwrap(), 48);
        // A 0-second attempt is not raised to the minimum.
        assert_eq!(billed_secs(0, 45, inc(30, 6)).unwrap(), 0);
        assert_eq!(billed_secs(5, 0, inc(0, 6)).unwrap_err().to_string(), "increments.first: 0 must be at least 1");
        assert!(matches!(billed_secs(u64::MAX, 0, inc(1, 60)), Err(TelecomError::Overflow { .. })));
    }

    #[test]
    fn wrap_around_band_days_are_the_start_day() {
        let band =
            Band { name: "fri night".into(), days: vec![Weekday::Fri], from: "22:00".into(), to: "06:00".into(), price_per_minute: d("0") };
        let t = TimedBand { band: &band, from: parse_hhmm("22:00").unwrap(), to: parse_hhmm("06:00").unwrap() };
        let at = |h, m, s| NaiveTime::from_hms_opt(h, m, s).unwrap();
        assert!(t.covers(Weekday::Fri, at(23, 0, 0)));
        assert!(t.covers(Weekday::Fri, at(5, 59, 59)));
        assert!(!t.covers(Weekday::Fri, at(6, 0, 0)));
        assert!(!t.covers(Weekday::Sat, at(1, 0, 0)), "Saturday's early hours are Saturday's");
        assert!(!t.covers(Weekday::Fri, at(21, 59, 59)));
    }

    #[test]
    fn weekdays_convert_and_print_as_in_tables() {
        assert_eq!(Weekday::from(chrono::Weekday::Sun), Weekday::Sun);
        assert_eq!(Weekday::Wed.to_string(), "wed");
        assert_eq!(serde_json::to_string(&Weekday::Sat).unwrap(), "\"sat\"");
    }
    #[test]
    fn events_become_call_records() {
        let t = |s: &str| -> DateTime<Utc> { s.parse().unwrap() };
        let d = |s: &str| Decimal::from_str_exact(s).unwrap();
        let c =
            call_from_row("e1", t("2026-03-02T12:00:00Z"), d("125"), r#"{"destination":"+44 20","answered_at":"2026-03-02T11:59:00Z"}"#)
                .unwrap();
        assert_eq!((c.destination.as_str(), c.start, c.duration_secs), ("+44 20", t("2026-03-02T11:59:00Z"), 125));
        let c = call_from_row("e1", t("2026-03-02T12:00:00Z"), d("125.000"), r#"{"destination":"44","answered_at":null}"#).unwrap();
        assert_eq!((c.start, c.duration_secs), (t("2026-03-02T12:00:00Z"), 125));
        for (value, data, field, shown, reason) in [
            ("1", r#"{}"#, "data.destination", "<missing>", "is required"),
            ("1", r#"{"destination":44}"#, "data.destination", "44", "is not a string"),
            ("1.5", r#"{"destination":"44"}"#, "duration", "1.5", "is not a whole number"),
            ("-1", r#"{"destination":"44"}"#, "duration", "-1", "is not a whole number"),
            ("1", r#"{"destination":"44","answered_at":"noon"}"#, "data.answered_at", "\"noon\"", "is not an RFC 3339 time"),
            ("1", r#"{"destination":"44","answered_at":5}"#, "data.answered_at", "5", "is not an RFC 3339 string"),
            ("1", r#"[1]"#, "data", "[1]", "is not a JSON object"),
        ] {
            let e = parse_call("e1", t("2026-03-02T12:00:00Z"), d(value), data).unwrap_err();
            assert_eq!((e.field, e.value.as_str()), (field, shown), "{data}");
            assert!(e.reason.starts_with(reason), "{e:?}");
            let whole = call_from_row("e1", t("2026-03-02T12:00:00Z"), d(value), data).unwrap_err().to_string();
            assert!(whole.starts_with(&format!("{field}: {shown} {reason}")), "{whole}");
        }
    }
}
