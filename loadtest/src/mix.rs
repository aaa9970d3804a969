//! The event mix: SaaS API requests, LLM completions (tokens per model), storage GB-hours and
//! telecom call records (destination number, duration in seconds), with configurable shares of
//! exact duplicates, late events and invalid events. Deterministic for a seed.
//!
//! Every valid event matches exactly one meter of the load-test catalog ([`crate::catalog`]), so
//! one valid event is one ledger row: that is what lets the spend observer match ledger row
//! counts to events.

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use meterline_schemas::ledger::msg_id;

/// Parts per million.
pub const PPM: u32 = 1_000_000;

/// Shares of the mix, in parts per million of all events sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MixShares {
    /// Exact re-sends of an earlier event (same source and id): counted once.
    pub duplicates_ppm: u32,
    /// Valid events dated earlier in the open period (between its start and an hour ago).
    pub late_ppm: u32,
    /// Invalid events (dead-lettered with the reason).
    pub invalid_ppm: u32,
}

impl Default for MixShares {
    fn default() -> Self {
        MixShares { duplicates_ppm: 20_000, late_ppm: 5_000, invalid_ppm: 1_000 }
    }
}

impl MixShares {
    /// Checks the shares leave room for ordinary events.
    pub fn validate(&self) -> Result<(), String> {
        let sum = u64::from(self.duplicates_ppm) + u64::from(self.late_ppm) + u64::from(self.invalid_ppm);
        if sum > u64::from(PPM) {
            return Err(format!("duplicate, late and invalid shares add up to {sum} ppm, more than 100%"));
        }
        Ok(())
    }
}

/// Parses a share: a percentage (`2%`, `0.5%`) or a fraction (`0.02`) into parts per million.
pub fn parse_share(s: &str) -> Result<u32, String> {
    let (text, scale) = match s.trim().strip_suffix('%') {
        Some(p) => (p.trim(), rust_decimal::Decimal::from(10_000)),
        None => (s.trim(), rust_decimal::Decimal::from(PPM)),
    };
    let v = rust_decimal::Decimal::from_str_exact(text).map_err(|_| format!("share {s:?} is not a number like 2% or 0.02"))?;
    let ppm = (v * scale).round();
    if ppm < rust_decimal::Decimal::ZERO || ppm > rust_decimal::Decimal::from(PPM) {
        return Err(format!("share {s:?} must be between 0 and 100%"));
    }
    u32::try_from(ppm.mantissa() / 10i128.pow(ppm.scale())).map_err(|_| format!("share {s:?} is out of range"))
}

/// What kind of event was generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A new valid event dated now.
    Fresh,
    /// A new valid event dated earlier in the period.
    Late,
    /// A re-send of an earlier valid event.
    Duplicate,
    /// An invalid event.
    Invalid,
}

/// One generated event, ready to publish.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The CloudEvent JSON.
    pub body: Bytes,
    /// Customer index (`lt-cust-<n>`).
    pub customer: u32,
    /// `Nats-Msg-Id` (the event's dedup key), absent for invalid events.
    pub msg_id: Option<String>,
    /// The kind.
    pub kind: Kind,
}

/// Counts of what was generated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MixCounts {
    /// Fresh valid events.
    pub fresh: u64,
    /// Late valid events.
    pub late: u64,
    /// Duplicates.
    pub duplicates: u64,
    /// Invalid events.
    pub invalid: u64,
    /// Of the valid events: API requests, LLM completions, storage readings, call records.
    pub api: u64,
    /// LLM completions.
    pub llm: u64,
    /// Storage readings.
    pub storage: u64,
    /// Telecom call records.
    pub calls: u64,
}

impl MixCounts {
    /// All events generated.
    pub fn total(&self) -> u64 {
        self.fresh + self.late + self.duplicates + self.invalid
    }
}

const ENDPOINTS: &[&str] = &["/v1/search", "/v1/orders", "/v1/users", "/v1/reports"];
const MODELS: &[&str] = &["small", "medium", "large"];
const REGIONS: &[&str] = &["us-east", "eu-west", "ap-northeast"];
const COUNTRY_CODES: &[&str] = &["1", "44", "49", "33", "81", "965"];

/// Customer key of index `n`.
pub fn customer_key(n: u32) -> String {
    format!("lt-cust-{n:05}")
}

/// The deterministic event generator.
#[derive(Debug)]
pub struct Mix {
    rng: fastrand::Rng,
    shares: MixShares,
    customers: u32,
    source: String,
    /// Recent valid events (body, customer, msg id) for duplicates.
    recent: Vec<(Bytes, u32, String)>,
    counts: MixCounts,
}

impl Mix {
    /// A generator over `customers` customers; `source` is the CloudEvents source of every event
    /// (one per run, so runs never collide in dedup).
    pub fn new(seed: u64, shares: MixShares, customers: u32, source: &str) -> Self {
        Mix {
            rng: fastrand::Rng::with_seed(seed),
            shares,
            customers: customers.max(1),
            source: source.to_owned(),
            recent: Vec::with_capacity(1024),
            counts: MixCounts::default(),
        }
    }

    /// Counts so far.
    pub fn counts(&self) -> MixCounts {
        self.counts
    }

    /// Event number `i`, timed `now`, in the period starting `period_start`.
    pub fn next(&mut self, i: u64, now: DateTime<Utc>, period_start: DateTime<Utc>) -> Generated {
        let roll = self.rng.u32(..PPM);
        let s = self.shares;
        if roll < s.invalid_ppm {
            self.counts.invalid += 1;
            let customer = self.rng.u32(..self.customers);
            let body = self.invalid(i, customer, now);
            return Generated { body: body.into(), customer, msg_id: None, kind: Kind::Invalid };
        }
        if roll < s.invalid_ppm + s.duplicates_ppm && !self.recent.is_empty() {
            self.counts.duplicates += 1;
            let (body, customer, id) = self.recent[self.rng.usize(..self.recent.len())].clone();
            return Generated { body, customer, msg_id: Some(id), kind: Kind::Duplicate };
        }
        let late = roll >= s.invalid_ppm + s.duplicates_ppm && roll < s.invalid_ppm + s.duplicates_ppm + s.late_ppm;
        let time = if late {
            let latest = now - chrono::Duration::hours(1);
            let span = (latest - period_start).num_seconds();
            if span > 0 { period_start + chrono::Duration::seconds(self.rng.i64(0..span)) } else { period_start }
        } else {
            now
        };
        let customer = self.rng.u32(..self.customers);
        let body = self.valid(i, customer, time);
        let id = msg_id(&self.source, &i.to_string());
        if late {
            self.counts.late += 1;
        } else {
            self.counts.fresh += 1;
        }
        let body = Bytes::from(body);
        if self.recent.len() < 1024 {
            self.recent.push((body.clone(), customer, id.clone()));
        } else {
            let slot = self.rng.usize(..1024);
            self.recent[slot] = (body.clone(), customer, id.clone());
        }
        Generated { body, customer, msg_id: Some(id), kind: if late { Kind::Late } else { Kind::Fresh } }
    }

    fn envelope(&self, i: u64, customer: u32, ty: &str, time: DateTime<Utc>, data: &str) -> String {
        format!(
            r#"{{"specversion":"1.0","id":"{i}","source":"{}","type":"{ty}","subject":"{}","time":"{}","data":{data}}}"#,
            self.source,
            customer_key(customer),
            time.to_rfc3339_opts(SecondsFormat::Millis, true)
        )
    }

    fn valid(&mut self, i: u64, customer: u32, time: DateTime<Utc>) -> String {
        let r = &mut self.rng;
        let pick = r.u32(..100);
        let (ty, data) = if pick < 40 {
            self.counts.api += 1;
            ("api.request", format!(r#"{{"endpoint":"{}","status":200}}"#, ENDPOINTS[r.usize(..ENDPOINTS.len())]))
        } else if pick < 70 {
            self.counts.llm += 1;
            ("llm.completion", format!(r#"{{"model":"{}","tokens":{}}}"#, MODELS[r.usize(..MODELS.len())], r.u32(1..4000)))
        } else if pick < 80 {
            self.counts.storage += 1;
            (
                "storage.usage",
                format!(r#"{{"region":"{}","gb_hours":{}.{:03}}}"#, REGIONS[r.usize(..REGIONS.len())], r.u32(0..500), r.u32(0..1000)),
            )
        } else {
            self.counts.calls += 1;
            let cc = COUNTRY_CODES[r.usize(..COUNTRY_CODES.len())];
            (
                "telecom.call",
                format!(
                    r#"{{"caller":"+1555{:07}","destination":"+{cc}{:09}","dest_country":"{cc}","duration_seconds":{}}}"#,
                    r.u32(..10_000_000),
                    r.u32(..1_000_000_000),
                    r.u32(1..3600)
                ),
            )
        };
        self.envelope(i, customer, ty, time, &data)
    }

    fn invalid(&mut self, i: u64, customer: u32, now: DateTime<Utc>) -> String {
        match i % 3 {
            // No time.
            0 => format!(
                r#"{{"specversion":"1.0","id":"{i}","source":"{}","type":"api.request","subject":"{}","data":{{}}}}"#,
                self.source,
                customer_key(customer)
            ),
            // A meter value that is not a number.
            1 => self.envelope(i, customer, "llm.completion", now, r#"{"model":"small","tokens":"lots"}"#),
            // A type no meter counts.
            _ => self.envelope(i, customer, "unknown.kind", now, "{}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn run(seed: u64, n: u64, shares: MixShares) -> (MixCounts, Vec<Generated>) {
        let now = Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).single().expect("valid time");
        let start = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().expect("valid time");
        let mut m = Mix::new(seed, shares, 100, "loadtest/t");
        let out: Vec<Generated> = (0..n).map(|i| m.next(i, now, start)).collect();
        (m.counts(), out)
    }

    #[test]
    fn shares_are_within_tolerance_and_exact_for_the_seed() {
        let shares = MixShares { duplicates_ppm: 20_000, late_ppm: 50_000, invalid_ppm: 10_000 };
        let (c, out) = run(7, 100_000, shares);
        assert_eq!(c.total(), 100_000);
        // Exact for seed 7 (the generator is deterministic).
        assert_eq!((c.duplicates, c.late, c.invalid), (2_051, 5_148, 1_004));
        // And within 10% of the configured shares.
        for (got, want) in [(c.duplicates, 2_000u64), (c.late, 5_000), (c.invalid, 1_000)] {
            assert!(got.abs_diff(want) * 10 <= want, "{got} vs {want}");
        }
        assert_eq!(c.api + c.llm + c.storage + c.calls, c.fresh + c.late);
        assert_eq!(out.iter().filter(|g| g.kind == Kind::Duplicate).count() as u64, c.duplicates);
        // Same seed, same events.
        let (c2, out2) = run(7, 100_000, shares);
        assert_eq!(c, c2);
        assert!(out.iter().zip(&out2).all(|(a, b)| a.body == b.body));
    }

    #[test]
    fn events_decode_as_their_kind_says() {
        let (_, out) = run(3, 5_000, MixShares { duplicates_ppm: 100_000, late_ppm: 100_000, invalid_ppm: 100_000 });
        for g in &out {
            let decoded = meterline_schemas::event::decode_message(&g.body);
            assert_eq!(decoded.len(), 1);
            match g.kind {
                Kind::Invalid => {}
                _ => {
                    let ev = decoded[0].result.as_ref().expect("valid events decode");
                    assert_eq!(ev.subject, customer_key(g.customer));
                    assert_eq!(g.msg_id.as_deref(), Some(msg_id(&ev.source, &ev.id).as_str()));
                    if g.kind == Kind::Late {
                        assert!(ev.time < Utc.with_ymd_and_hms(2026, 11, 20, 11, 0, 1).single().expect("valid time"));
                    }
                }
            }
        }
        // A duplicate repeats an earlier valid event byte for byte.
        let dup = out.iter().position(|g| g.kind == Kind::Duplicate).expect("a duplicate");
        assert!(out[..dup].iter().any(|g| g.body == out[dup].body && g.kind != Kind::Duplicate));
    }

    #[test]
    fn shares_parse_as_percent_or_fraction() {
        assert_eq!(parse_share("2%"), Ok(20_000));
        assert_eq!(parse_share("0.5%"), Ok(5_000));
        assert_eq!(parse_share("0.02"), Ok(20_000));
        assert_eq!(parse_share("0"), Ok(0));
        assert!(parse_share("abc").is_err());
        assert!(parse_share("150%").is_err());
        assert!(MixShares { duplicates_ppm: PPM, late_ppm: 1, invalid_ppm: 0 }.validate().is_err());
    }
}
