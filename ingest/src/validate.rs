//! Decoding a message into events and checking each against the meters.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use meterline_schemas::event::{EventError, UsageEvent, decode_message};
use meterline_schemas::ledger::event_key;
use meterline_schemas::meter::{Meter, MeterValue};
use meterline_schemas::period::PeriodLabel;

use crate::partition::{customer_token, partition_of};

/// An accepted event with what it contributes to each of its meters.
#[derive(Debug)]
pub struct Accepted {
    /// Dedup key of (source, id).
    pub key: u128,
    /// UTC month of the event time (its ledger directory and dedup month).
    pub month: PeriodLabel,
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

/// Meters indexed by event type.
#[derive(Debug, Default)]
pub struct Validator {
    by_type: HashMap<String, Vec<Meter>>,
}

impl Validator {
    /// Builds the index from the catalog's meters.
    pub fn new(by_type: HashMap<String, Vec<Meter>>) -> Self {
        Validator { by_type }
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
        Ok(Accepted { key: event_key(&event.source, &event.id), month: PeriodLabel::containing(event.time), event, values })
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
