//! Decoding a message into events and checking each against the meters.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use meterline_schemas::catalog::Catalog;
use meterline_schemas::event::{EventError, UsageEvent, decode_message};
use meterline_schemas::ledger::event_key;
use meterline_schemas::meter::{Meter, MeterValue};
use meterline_schemas::period::{PeriodLabel, Schedule};

use crate::partition::{customer_token, partition_of};

/// An accepted event with what it contributes to each of its meters.
#[derive(Debug)]
pub struct Accepted {
    /// Dedup key of (source, id).
    pub key: u128,
    /// UTC month of the event time (its ledger directory and dedup month).
    pub month: PeriodLabel,
    /// Whether the event arrived after its billing period's deadline (period end + grace): it is
    /// kept in the ledger like any other, and billed as an adjustment on the next invoice.
    pub late: bool,
    /// The event.
    pub event: UsageEvent,
    /// (meter key, value) per matching meter.
    pub values: Vec<(String, MeterValue)>,
}

/// A refused event: its JSON text and why.
#[derive(Debug)]
pub struct Refused {
    /// The event's own JSON text (or the whole body when it is not JSON).
    pub raw: String,
    /// Position of the event in its message (0 for single events).
    pub index: usize,
    /// The reason.
    pub error: EventError,
}

/// An accepted event that belongs to another partition: republished to its own subject.
#[derive(Debug)]
pub struct Rerouted {
    /// The event's own JSON text.
    pub raw: String,
    /// Its customer's routing token.
    pub token: String,
    /// Its dedup key (for `Nats-Msg-Id`).
    pub key: u128,
}

/// Which partition the validating worker owns, out of how many.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// This worker's partition.
    pub partition: u32,
    /// Partitions of the stream.
    pub partitions: u32,
}

/// A subscription's start, end and cycle schedule.
type SubscriptionSpan = (DateTime<Utc>, Option<DateTime<Utc>>, Schedule);

/// When each customer's billing periods close: (start, end, cycle schedule) of their
/// subscriptions, and the grace window after a cycle's end during which its events still count
/// in it.
#[derive(Debug, Default)]
pub struct Deadlines {
    by_customer: HashMap<String, Vec<SubscriptionSpan>>,
    grace: chrono::Duration,
}

impl Deadlines {
    /// From the catalog's subscriptions and the grace window.
    pub fn new(catalog: &Catalog, grace: std::time::Duration) -> Self {
        let mut by_customer: HashMap<String, Vec<_>> = HashMap::new();
        for s in catalog.subscriptions.values() {
            by_customer.entry(s.customer.clone()).or_default().push((s.start, s.end, s.schedule()));
        }
        Deadlines { by_customer, grace: chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX) }
    }

    /// The deadline of the billing period containing `t` for `customer`: the end of the cycle
    /// containing `t` of the subscription active at `t` (a quarter's end for a quarterly one;
    /// calendar months without a subscription) plus the grace window.
    pub fn deadline(&self, customer: &str, t: DateTime<Utc>) -> DateTime<Utc> {
        let schedule = self
            .by_customer
            .get(customer)
            .and_then(|subs| subs.iter().find(|(start, end, _)| *start <= t && end.is_none_or(|e| t < e)))
            .map_or(Schedule::monthly(1), |s| s.2);
        let end = schedule.cycle_containing(t).end;
        end.checked_add_signed(self.grace).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// Meters indexed by event type.
#[derive(Debug, Default)]
pub struct Validator {
    by_type: HashMap<String, Vec<Meter>>,
    deadlines: Option<Deadlines>,
}

impl Validator {
    /// Builds the index from the catalog's meters.
    pub fn new(by_type: HashMap<String, Vec<Meter>>) -> Self {
        Validator { by_type, deadlines: None }
    }

    /// Also marks events that arrive after their period's deadline ([`Accepted::late`]).
    pub fn with_deadlines(mut self, deadlines: Deadlines) -> Self {
        self.deadlines = Some(deadlines);
        self
    }

    /// Decodes one message body and checks every event in it.
    pub fn check(&self, body: &[u8], accepted: &mut Vec<Accepted>, refused: &mut Vec<Refused>) {
        let mut none = Vec::new();
        self.check_routed(body, None, accepted, refused, &mut none);
    }

    /// Like [`Self::check`]; with a `route`, valid events of another partition's customers go to
    /// `rerouted` instead of `accepted` (their dedup state lives in that partition).
    pub fn check_routed(
        &self,
        body: &[u8],
        route: Option<Route>,
        accepted: &mut Vec<Accepted>,
        refused: &mut Vec<Refused>,
        rerouted: &mut Vec<Rerouted>,
    ) {
        for (index, d) in decode_message(body).into_iter().enumerate() {
            match d.result.and_then(|e| self.check_event(e)) {
                Ok(a) => match route {
                    Some(r) if r.partitions > 1 => {
                        let token = customer_token(&a.event.subject);
                        if partition_of(&token, r.partitions) == r.partition {
                            accepted.push(a);
                        } else {
                            rerouted.push(Rerouted { raw: d.raw.to_owned(), token, key: a.key });
                        }
                    }
                    _ => accepted.push(a),
                },
                Err(error) => refused.push(Refused { raw: d.raw.to_owned(), index, error }),
            }
        }
    }

    fn check_event(&self, event: UsageEvent) -> Result<Accepted, EventError> {
        let meters = self
            .by_type
            .get(&event.event_type)
            .ok_or_else(|| EventError::new("type", format!("{:?}", event.event_type), "matches no meter in the catalog"))?;
        let mut values = Vec::with_capacity(meters.len());
        for m in meters {
            values.push((m.key.clone(), m.extract(&event.data)?));
        }
        check_time(event.time)?;
        let late = self.deadlines.as_ref().is_some_and(|d| Utc::now() > d.deadline(&event.subject, event.time));
        Ok(Accepted { key: event_key(&event.source, &event.id), month: PeriodLabel::containing(event.time), late, event, values })
    }
}

/// Event times must be representable in the ledger and in ClickHouse `DateTime` (1970–2105).
fn check_time(t: DateTime<Utc>) -> Result<(), EventError> {
    let s = t.timestamp();
    if !(0..=i64::from(u32::MAX)).contains(&s) {
        return Err(EventError::new("time", format!("{:?}", t.to_rfc3339()), "is outside 1970-01-01..2106-02-07"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use meterline_schemas::catalog::CatalogFile;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn deadline_is_the_cycle_end_plus_grace() {
        let catalog = CatalogFile::parse(
            r#"
meters: [ { key: calls, event_type: api.request, aggregation: COUNT } ]
plans: [ { key: p, versions: [ { version: 1, currency: USD, prices: [ { meter: calls, model: per_unit, unit_price: "1" } ] } ] } ]
customers: [ { key: acme, name: Acme, currency: USD, jurisdiction: US } ]
tax_rates: [ { jurisdiction: US, name: none, rate: "0" } ]
subscriptions: [ { id: s1, customer: acme, plan: p, plan_version: 1, start: "2026-01-15T00:00:00Z", anchor_day: 15 } ]
"#,
            "yaml",
        )
        .unwrap()
        .validate(&Catalog::default())
        .unwrap();
        let d = Deadlines::new(&catalog, std::time::Duration::from_secs(72 * 3600));
        // Anchor day 15: 2026-10-20 is in the cycle Oct 15 – Nov 15, closing Nov 18.
        assert_eq!(d.deadline("acme", t("2026-10-20T08:00:00Z")), t("2026-11-18T00:00:00Z"));
        // 2026-10-10 is still in Sep 15 – Oct 15, closing Oct 18.
        assert_eq!(d.deadline("acme", t("2026-10-10T08:00:00Z")), t("2026-10-18T00:00:00Z"));
        // No subscription: calendar months.
        assert_eq!(d.deadline("nobody", t("2026-10-10T08:00:00Z")), t("2026-11-04T00:00:00Z"));
    }

    #[test]
    fn quarterly_deadline_is_the_quarter_end_plus_grace() {
        let catalog = CatalogFile::parse(
            r#"
meters: [ { key: calls, event_type: api.request, aggregation: COUNT } ]
plans: [ { key: p, versions: [ { version: 1, currency: USD, prices: [ { meter: calls, model: per_unit, unit_price: "1" } ] } ] } ]
customers: [ { key: acme, name: Acme, currency: USD, jurisdiction: US }, { key: bolt, name: Bolt, currency: USD, jurisdiction: US } ]
tax_rates: [ { jurisdiction: US, name: none, rate: "0" } ]
subscriptions:
  - { id: s1, customer: acme, plan: p, plan_version: 1, start: "2026-02-10T00:00:00Z", cycle: quarterly }
  - { id: s2, customer: bolt, plan: p, plan_version: 1, start: "2026-02-10T00:00:00Z", cycle: annual, alignment: calendar }
"#,
            "yaml",
        )
        .unwrap()
        .validate(&Catalog::default())
        .unwrap();
        let d = Deadlines::new(&catalog, std::time::Duration::from_secs(72 * 3600));
        // Anniversary quarters from 10 Feb: 2026-03-01 is in [10 Feb, 10 May), closing 13 May.
        assert_eq!(d.deadline("acme", t("2026-03-01T08:00:00Z")), t("2026-05-13T00:00:00Z"));
        assert_eq!(d.deadline("acme", t("2026-05-10T00:00:00Z")), t("2026-08-13T00:00:00Z"));
        // Calendar years: 2026-03-01 is in 2026, closing 1 Jan 2027 + 72 h.
        assert_eq!(d.deadline("bolt", t("2026-03-01T08:00:00Z")), t("2027-01-04T00:00:00Z"));
    }
}
