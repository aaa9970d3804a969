//! Rate tables for telecom rating: the price of calls by destination prefix, with time-of-day
//! bands, charging increments, a connect fee and a minimum duration.
//!
//! The types live here because catalog files carry them (`rate_tables:`) and the catalog checks
//! them ([`RateTable::validate`]); rating calls against them is `meterline_rater::telecom`, whose
//! module documentation gives every rule (longest prefix, bands, increments, amounts) and re-exports
//! these types. Errors of both (one enum, [`TelecomError`]) name the rate by prefix and the field
//! by path: `rates[44].bands[1].from: "25:00" is not HH:MM (00:00 to 23:59)`.

use std::collections::HashSet;
use std::fmt;

use chrono::{FixedOffset, NaiveTime};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::money::{Currency, exact};

/// The largest `timezone_offset_minutes` in either direction: ±18:00, the bound of ISO 8601
/// offsets as most libraries implement it (real zones lie within −12:00 and +14:00).
pub const MAX_OFFSET_MINUTES: i32 = 18 * 60;

/// Errors raised validating a rate table or rating a call. Every one names the value at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TelecomError {
    /// A field of the rate table is invalid; `path` is like `rates[44].bands[1].from`.
    #[error("{path}: {message}")]
    Invalid {
        /// Where in the table, e.g. `rates[44].increments.next`.
        path: String,
        /// What is wrong, quoting the value.
        message: String,
    },
    /// The destination is not a phone number this module can match.
    #[error("destination {destination:?} is not a phone number: {reason}")]
    BadDestination {
        /// The destination as written in the record.
        destination: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// No rate prefix matches the destination (and the table has no `""` catch-all).
    #[error("destination {destination:?} (digits {digits}) matches no rate prefix in table {table}")]
    NoRate {
        /// The destination as written in the record.
        destination: String,
        /// Its normalized digits.
        digits: String,
        /// The rate table's key.
        table: String,
    },
    /// The matched rate has no band covering the call's start.
    #[error("rate {prefix:?} ({description}) has no band covering the call's start, {local_time} ({weekday})")]
    NoBand {
        /// Prefix of the matched rate.
        prefix: String,
        /// Description of the matched rate.
        description: String,
        /// The start in the table's offset, `2026-03-07 10:00:00 +00:00`.
        local_time: String,
        /// The local weekday of the start.
        weekday: Weekday,
    },
    /// A duration or amount does not fit `u64` seconds or a 28-digit `Decimal`.
    #[error("overflow rating {what}")]
    Overflow {
        /// The computation, with its operands.
        what: String,
    },
    /// [`total`](crate::telecom::total) was given calls rated in different currencies.
    #[error("cannot total calls in {first} and {other} (call {call_id}): totals are per currency")]
    MixedCurrencies {
        /// Currency of the first call.
        first: Currency,
        /// The differing currency.
        other: Currency,
        /// The call that has it.
        call_id: String,
    },
}

/// `Result` with [`TelecomError`].
pub type Result<T, E = TelecomError> = std::result::Result<T, E>;

pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> TelecomError {
    TelecomError::Invalid { path: path.into(), message: message.into() }
}

/// A day of the week, written `mon` … `sun` in rate tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl From<chrono::Weekday> for Weekday {
    fn from(w: chrono::Weekday) -> Self {
        match w {
            chrono::Weekday::Mon => Weekday::Mon,
            chrono::Weekday::Tue => Weekday::Tue,
            chrono::Weekday::Wed => Weekday::Wed,
            chrono::Weekday::Thu => Weekday::Thu,
            chrono::Weekday::Fri => Weekday::Fri,
            chrono::Weekday::Sat => Weekday::Sat,
            chrono::Weekday::Sun => Weekday::Sun,
        }
    }
}

impl fmt::Display for Weekday {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Weekday::Mon => "mon",
            Weekday::Tue => "tue",
            Weekday::Wed => "wed",
            Weekday::Thu => "thu",
            Weekday::Fri => "fri",
            Weekday::Sat => "sat",
            Weekday::Sun => "sun",
        })
    }
}

/// A price list for calls: rates by destination prefix, each with time-of-day bands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateTable {
    /// Key of the table, recorded in errors (1–128 letters, digits, `_`, `-`).
    pub key: String,
    /// ISO 4217 code of every price in the table; kept as text so that a bad code is reported by
    /// [`RateTable::validate`] with its path rather than by the parser.
    pub currency: String,
    /// Fixed offset from UTC, in minutes, in which band days and times are read (default 0 =
    /// UTC; `60` = UTC+01:00, `-300` = UTC−05:00). Named zones with summer time are future work.
    #[serde(default)]
    pub timezone_offset_minutes: i32,
    /// Rates, in any order: the longest matching prefix wins.
    pub rates: Vec<Rate>,
}

/// The price of calls to the destinations starting with one prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Leading digits of the destination (country and network code, no `+`); `""` matches every
    /// destination and serves as a catch-all.
    pub prefix: String,
    /// Human-readable destination, copied onto rated calls (`United Kingdom mobile`).
    pub description: String,
    /// Time-of-day bands, tried in order; the first covering the call's start prices it.
    pub bands: Vec<Band>,
    /// Charged once per answered call (not for 0-second attempts), on top of the usage.
    #[serde(default, with = "exact")]
    pub connect_fee: Decimal,
    /// How the duration is rounded up into billed seconds.
    pub increments: Increments,
    /// Shortest duration charged for an answered call, before increments apply (default 0).
    #[serde(default)]
    pub min_duration_secs: u32,
}

/// A time-of-day and day-of-week window with its price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Band {
    /// Name copied onto rated calls (`peak`, `off-peak`, `weekend`).
    pub name: String,
    /// Local weekdays of the call's start this band applies to; empty = every day.
    #[serde(default)]
    pub days: Vec<Weekday>,
    /// Local start time, `HH:MM`, inclusive. Kept as text so that a bad time is reported by
    /// [`RateTable::validate`] with its path.
    pub from: String,
    /// Local end time, `HH:MM`, exclusive; equal to `from` = the whole day; before `from` =
    /// wrapping past midnight (`22:00`–`06:00`).
    pub to: String,
    /// Price of one billed minute; billed seconds pay `price_per_minute ÷ 60` each.
    #[serde(with = "exact")]
    pub price_per_minute: Decimal,
}

/// Charging increments: the first `first` seconds are charged as a block, then blocks of `next`
/// seconds (60/60 = per started minute, 30/6, 1/1 = per second). Both at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Increments {
    /// Seconds of the first block.
    pub first: u32,
    /// Seconds of every following block.
    pub next: u32,
}

impl RateTable {
    /// Checks the whole table (see the module documentation, point 6) and returns the first
    /// error, naming its path. Rating re-checks only what each call uses, so validating once at
    /// load time is what catches duplicate prefixes and errors in rates no call has hit yet.
    pub fn validate(&self) -> Result<()> {
        let ok_key =
            !self.key.is_empty() && self.key.len() <= 128 && self.key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok_key {
            return Err(invalid("key", format!("{:?} is not a valid key: use 1-128 letters, digits, '_' or '-'", self.key)));
        }
        self.context()?;
        let mut seen = HashSet::with_capacity(self.rates.len());
        for rate in &self.rates {
            check_rate(rate)?;
            if !seen.insert(rate.prefix.as_str()) {
                return Err(invalid(format!("rates[{}].prefix", rate.prefix), format!("{:?} is defined twice", rate.prefix)));
            }
        }
        Ok(())
    }

    /// The currency and offset, checked: what every call of the table needs.
    pub fn context(&self) -> Result<(Currency, FixedOffset)> {
        let currency = Currency::from_code(&self.currency).map_err(|e| invalid("currency", e.to_string()))?;
        let minutes = self.timezone_offset_minutes;
        let offset = (-MAX_OFFSET_MINUTES..=MAX_OFFSET_MINUTES)
            .contains(&minutes)
            .then(|| FixedOffset::east_opt(minutes * 60))
            .flatten()
            .ok_or_else(|| {
            invalid(
                "timezone_offset_minutes",
                format!("{minutes} is outside ±18:00 (-{MAX_OFFSET_MINUTES} to {MAX_OFFSET_MINUTES} minutes)"),
            )
        })?;
        Ok((currency, offset))
    }
}

/// A band with its times parsed.
#[derive(Debug)]
pub struct TimedBand<'a> {
    /// The band.
    pub band: &'a Band,
    /// Its parsed `from`.
    pub from: NaiveTime,
    /// Its parsed `to`.
    pub to: NaiveTime,
}

impl TimedBand<'_> {
    /// Whether the band covers a start at local weekday `day` and local time `t` (point 3).
    pub fn covers(&self, day: Weekday, t: NaiveTime) -> bool {
        let on_day = self.band.days.is_empty() || self.band.days.contains(&day);
        let in_range = match self.from.cmp(&self.to) {
            std::cmp::Ordering::Equal => true,
            std::cmp::Ordering::Less => self.from <= t && t < self.to,
            std::cmp::Ordering::Greater => t >= self.from || t < self.to,
        };
        on_day && in_range
    }
}

/// Parses `HH:MM` (exactly two digits each, 00:00 to 23:59).
pub fn parse_hhmm(text: &str) -> Option<NaiveTime> {
    let b = text.as_bytes();
    let digit = |i: usize| b.get(i).filter(|c| c.is_ascii_digit()).map(|c| u32::from(c - b'0'));
    if b.len() != 5 || b[2] != b':' {
        return None;
    }
    let hours = digit(0)? * 10 + digit(1)?;
    let minutes = digit(3)? * 10 + digit(4)?;
    NaiveTime::from_hms_opt(hours, minutes, 0)
}

/// Checks one rate on its own (everything but uniqueness) and parses its band times.
pub fn check_rate(rate: &Rate) -> Result<Vec<TimedBand<'_>>> {
    let at = format!("rates[{}]", rate.prefix);
    if !rate.prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(format!("{at}.prefix"), format!("{:?} must be ASCII digits only (no '+', spaces or dashes)", rate.prefix)));
    }
    if rate.bands.is_empty() {
        return Err(invalid(format!("{at}.bands"), "must list at least one band"));
    }
    if rate.increments.first == 0 {
        return Err(invalid(format!("{at}.increments.first"), "0 must be at least 1"));
    }
    if rate.increments.next == 0 {
        return Err(invalid(format!("{at}.increments.next"), "0 must be at least 1"));
    }
    if rate.connect_fee < Decimal::ZERO {
        return Err(invalid(format!("{at}.connect_fee"), format!("{} must not be negative", rate.connect_fee)));
    }
    let mut timed = Vec::with_capacity(rate.bands.len());
    for (i, band) in rate.bands.iter().enumerate() {
        let bat = format!("{at}.bands[{i}]");
        let time = |field: &str, text: &str| {
            parse_hhmm(text).ok_or_else(|| invalid(format!("{bat}.{field}"), format!("{text:?} is not HH:MM (00:00 to 23:59)")))
        };
        let from = time("from", &band.from)?;
        let to = time("to", &band.to)?;
        if band.price_per_minute < Decimal::ZERO {
            return Err(invalid(format!("{bat}.price_per_minute"), format!("{} must not be negative", band.price_per_minute)));
        }
        timed.push(TimedBand { band, from, to });
    }
    Ok(timed)
}
