//! Call records in the pipeline: a ledger row of a `telecom`-priced meter becomes a
//! [`CallRecord`](crate::telecom::CallRecord), is rated on its own by [`crate::telecom`], and the rated calls of a period are
//! summed into invoice lines, one per (matched prefix, band, price per minute).
//!
//! # The CloudEvent of a call
//!
//! ```json
//! { "specversion": "1.0", "id": "cdr-0001", "source": "switch-lon-1", "type": "call.completed",
//!   "subject": "acme", "time": "2026-03-02T12:00:00Z",
//!   "data": { "destination": "+44 20 7946 0000", "duration_secs": 125, "answered_at": "2026-03-02T12:00:00Z" } }
//! ```
//!
//! - the meter is a `SUM` meter whose `value` path is the duration in whole seconds (here
//!   `duration_secs`); a missing, non-numeric, negative or fractional one is refused;
//! - `data.destination` ([`DESTINATION_FIELD`]): the called number, a string;
//! - `data.answered_at` ([`ANSWERED_AT_FIELD`], optional): when the call was answered, RFC 3339;
//!   it chooses the time band. Absent, the event's `time` is used. The event's `time` (not
//!   `answered_at`) decides the billing period, like every other event.
//!
//! Ingest runs the same parsing and rating on each call record of a customer whose plan prices
//! the meter with a rate table (`meterline_ingest::validate::CallChecks`), so a record that
//! cannot be rated is dead-lettered naming the field instead of failing the close.
//!
//! # Exact sums
//!
//! A call's own amount (`billed × price ÷ 60`) is exact only when the quotient terminates within
//! 28 digits: 37 s at 0.0137/min is 0.008448333…, rounded at the 28th digit. Adding such
//! quotients call by call could drift by 10⁻²⁸ per call. So a line is computed from integers and
//! the price: `usage = (Σ billed_secs) × price_per_minute ÷ 60`, one division per line, and
//! `connect_fees = Σ connect_fee` (exact additions). The line's amount `connect_fees + usage` is
//! rounded once, by the invoicer (`money::round_line`). The per-call amounts stored with each
//! rated call (the ledger's `rated-calls/` files and ClickHouse `rated_calls`) are for
//! explanation; the invoice never adds them up.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use meterline_schemas::rate_table::TelecomError;

use crate::telecom::RatedCall;

pub use meterline_schemas::telecom::{ANSWERED_AT_FIELD, DESTINATION_FIELD, call_from_row};

/// One rated call with where it came from: a row of ClickHouse `rated_calls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RatedCallRecord {
    /// CloudEvents id of the call record.
    pub event_id: String,
    /// CloudEvents source.
    pub source: String,
    /// Customer key.
    pub customer: String,
    /// Subscription that billed it.
    pub subscription: String,
    /// Meter key.
    pub meter: String,
    /// Rate table key.
    pub rate_table: String,
    /// The event's time (which period it belongs to).
    pub event_time: DateTime<Utc>,
    /// Ledger segment of the row.
    pub segment: String,
    /// The destination as written in the record.
    pub destination: String,
    /// When the call was answered (chooses the band).
    pub answered_at: DateTime<Utc>,
    /// The rating.
    pub call: RatedCall,
}

/// A telecom price's usage for one subscription and period.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TelecomUsage {
    /// Rate table key.
    pub rate_table: String,
    /// One per (prefix, band, price per minute), see [`sum_calls`].
    pub lines: Vec<CallLine>,
    /// Every rated call, in ledger event-key order.
    pub calls: Vec<RatedCallRecord>,
}

/// Rated calls of one (matched prefix, band, price per minute): one invoice line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallLine {
    /// Prefix of the rate (`""` for the catch-all).
    pub matched_prefix: String,
    /// Description of the rate.
    pub description: String,
    /// Band name.
    pub band: String,
    /// The band's price per minute.
    pub price_per_minute: Decimal,
    /// Call records on the line, 0-second attempts included.
    pub calls: u64,
    /// Calls that were answered (more than 0 seconds).
    pub answered: u64,
    /// Σ duration seconds.
    pub duration_secs: u64,
    /// Σ billed seconds.
    pub billed_secs: u64,
    /// Σ connect fees (exact).
    pub connect_fees: Decimal,
    /// `billed_secs × price_per_minute ÷ 60`, one division.
    pub usage_amount: Decimal,
    /// `connect_fees + usage_amount`, unrounded: the invoicer rounds it once.
    pub amount: Decimal,
}

/// Sums rated calls into lines, ordered by prefix, band and price. See the module documentation
/// for why the seconds are summed before dividing.
pub fn sum_calls(calls: &[RatedCall]) -> Result<Vec<CallLine>, TelecomError> {
    let mut lines = CallLines::default();
    for c in calls {
        lines.add(c)?;
    }
    lines.lines()
}

/// The running sums of [`sum_calls`]: calls can be added at any time (current spend adds each
/// new segment's), and the lines read as often as needed; the result is the same as summing all
/// the calls at once.
#[derive(Debug, Clone, Default)]
pub struct CallLines {
    groups: BTreeMap<(String, String, Decimal), CallLine>,
}

impl CallLines {
    /// Adds one rated call to its line.
    pub fn add(&mut self, c: &RatedCall) -> Result<(), TelecomError> {
        let overflow = |what: &str| TelecomError::Overflow { what: what.to_owned() };
        let key = (c.matched_prefix.clone(), c.band.clone(), c.price_per_minute.normalize());
        let line = self.groups.entry(key).or_insert_with(|| CallLine {
            matched_prefix: c.matched_prefix.clone(),
            description: c.description.clone(),
            band: c.band.clone(),
            price_per_minute: c.price_per_minute.normalize(),
            calls: 0,
            answered: 0,
            duration_secs: 0,
            billed_secs: 0,
            connect_fees: Decimal::ZERO,
            usage_amount: Decimal::ZERO,
            amount: Decimal::ZERO,
        });
        line.calls += 1;
        line.answered += u64::from(c.duration_secs > 0);
        line.duration_secs = line.duration_secs.checked_add(c.duration_secs).ok_or_else(|| overflow("duration seconds"))?;
        line.billed_secs = line.billed_secs.checked_add(c.billed_secs).ok_or_else(|| overflow("billed seconds"))?;
        line.connect_fees = line.connect_fees.checked_add(c.connect_fee).ok_or_else(|| overflow("connect fees"))?;
        Ok(())
    }

    /// The lines of the calls added so far, ordered by prefix, band and price.
    pub fn lines(&self) -> Result<Vec<CallLine>, TelecomError> {
        let overflow = |what: &str| TelecomError::Overflow { what: what.to_owned() };
        let mut out = Vec::with_capacity(self.groups.len());
        for line in self.groups.values() {
            let mut line = line.clone();
            // Multiply first, divide once: the only possibly inexact step of the line.
            line.usage_amount = Decimal::from(line.billed_secs)
                .checked_mul(line.price_per_minute)
                .and_then(|p| p.checked_div(Decimal::from(60)))
                .ok_or_else(|| overflow("line usage"))?
                .normalize();
            line.connect_fees = line.connect_fees.normalize();
            line.amount = line.connect_fees.checked_add(line.usage_amount).ok_or_else(|| overflow("line amount"))?.normalize();
            out.push(line);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meterline_schemas::money::Currency;

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    fn rated(prefix: &str, band: &str, ppm: &str, duration: u64, billed: u64, connect: &str) -> RatedCall {
        RatedCall {
            call_id: "c".into(),
            matched_prefix: prefix.into(),
            description: "d".into(),
            band: band.into(),
            duration_secs: duration,
            billed_secs: billed,
            price_per_minute: d(ppm),
            connect_fee: d(connect),
            usage_amount: Decimal::ZERO,
            amount: Decimal::ZERO,
            currency: Currency::from_code("USD").unwrap(),
        }
    }

    #[test]
    fn seconds_are_summed_before_the_division() {
        // Three 37 s calls at 0.0137/min: per call 37 × 0.0137 ÷ 60 = 0.0084483333… (28 digits);
        // the line is 111 × 0.0137 ÷ 60 = 1.5207 ÷ 60 = 0.025345 exactly.
        let calls = vec![rated("44", "peak", "0.0137", 37, 37, "0"); 3];
        let lines = sum_calls(&calls).unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!((lines[0].billed_secs, lines[0].usage_amount, lines[0].amount), (111, d("0.025345"), d("0.025345")));
        // Connect fees add exactly; groups split by prefix, band and price; 0 s attempts count as calls.
        let calls = vec![
            rated("44", "peak", "0.05", 60, 60, "0.05"),
            rated("44", "off-peak", "0.02", 61, 120, "0.05"),
            rated("44", "peak", "0.05", 0, 0, "0"),
            rated("447", "peak", "0.12", 30, 30, "0"),
        ];
        let lines = sum_calls(&calls).unwrap();
        let got: Vec<_> = lines.iter().map(|l| (l.matched_prefix.as_str(), l.band.as_str(), l.calls, l.answered, l.amount)).collect();
        // 44 off-peak: 0.05 + 120 × 0.02 ÷ 60 = 0.09; 44 peak: 0.05 + 60 × 0.05 ÷ 60 = 0.10; 447: 30 × 0.12 ÷ 60 = 0.06
        assert_eq!(got, vec![("44", "off-peak", 1, 1, d("0.09")), ("44", "peak", 2, 1, d("0.1")), ("447", "peak", 1, 1, d("0.06"))]);
    }
}
