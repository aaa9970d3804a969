//! Decoding a message into events and checking each against the meters.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use meterline_schemas::catalog::Catalog;
use meterline_schemas::event::{
    EventError, EventRef, UsageEvent, decode_event_ref, decode_message, decode_text_typed, is_batch, scan_each, split_batch,
};
use meterline_schemas::ledger::event_key;
use meterline_schemas::meter::{Meter, MeterValue, MeterValueRef};
use meterline_schemas::period::{PeriodLabel, Schedule};
use meterline_schemas::price::PriceModel;
use meterline_schemas::telecom::{CallRecord, RateIndex, TelecomError, parse_call};
use smallvec::SmallVec;

use crate::partition::{customer_partition, customer_token};

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

/// An accepted event that borrows from its message body and from the validator's meters: what
/// the ingest hot path builds ledger rows from without copying strings.
#[derive(Debug)]
pub struct AcceptedRef<'a> {
    /// See [`Accepted::key`].
    pub key: u128,
    /// See [`Accepted::month`].
    pub month: PeriodLabel,
    /// See [`Accepted::late`].
    pub late: bool,
    /// The event.
    pub event: EventRef<'a>,
    /// (meter, value) per matching meter; inline for one meter (no allocation per event).
    pub values: SmallVec<[(&'a Meter, MeterValueRef<'a>); 1]>,
}

impl AcceptedRef<'_> {
    /// An owned copy.
    pub fn into_owned(self) -> Accepted {
        let values = self.values.iter().map(|(m, v)| (m.key.clone(), v.to_owned_for(m))).collect();
        Accepted { key: self.key, month: self.month, late: self.late, event: self.event.into_owned(), values }
    }

    /// The group key of the `i`-th meter's value.
    pub fn group_key(&self, i: usize) -> String {
        let (m, v) = &self.values[i];
        m.group_key(&v.dims)
    }
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

/// The maps looked up per event (by event type, by customer): foldhash instead of SipHash, which
/// was 3 % of decoding a 200-byte event. Their keys come from the catalog, not from events.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A subscription's start, end and cycle schedule.
type SubscriptionSpan = (DateTime<Utc>, Option<DateTime<Utc>>, Schedule);

/// When each customer's billing periods close: (start, end, cycle schedule) of their
/// subscriptions, and the grace window after a cycle's end during which its events still count
/// in it.
#[derive(Debug, Default)]
pub struct Deadlines {
    by_customer: Map<String, Vec<SubscriptionSpan>>,
    grace: chrono::Duration,
}

impl Deadlines {
    /// From the catalog's subscriptions and the grace window.
    pub fn new(catalog: &Catalog, grace: std::time::Duration) -> Self {
        let mut by_customer: Map<String, Vec<_>> = Map::default();
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

/// The telecom prices of one subscription: (start, end, meter key, rate table).
type CallPrice = (DateTime<Utc>, Option<DateTime<Utc>>, String, Arc<RateIndex>);

/// Call records checked at ingest: an event of a meter that its customer's plan prices with a
/// rate table (model `telecom`) must be a call record that table can rate, with the same code
/// the period close rates it with ([`parse_call`], [`RateIndex::rate`]). One that cannot (no
/// destination, a destination no prefix matches, a time no band covers, a fractional duration)
/// goes to the dead-letter stream naming the field, instead of failing the close weeks later.
/// The subscription is the one active at the event's time; events of customers without one are
/// not checked (no plan prices them).
#[derive(Debug, Default)]
pub struct CallChecks {
    by_customer: Map<String, Vec<CallPrice>>,
    /// Meters some plan prices with a rate table (events of other meters skip the lookup).
    meters: Vec<String>,
}

impl CallChecks {
    /// From the catalog's subscriptions, plans and rate tables.
    pub fn new(catalog: &Catalog) -> Self {
        let mut indexes: HashMap<&str, Arc<RateIndex>> = HashMap::new();
        let mut by_customer: Map<String, Vec<CallPrice>> = Map::default();
        for s in catalog.subscriptions.values() {
            let Some(plan) = catalog.plans.get(&(s.plan.clone(), s.plan_version)) else { continue };
            for p in &plan.prices {
                let PriceModel::Telecom { rate_table } = &p.model else { continue };
                // The catalog's validation guarantees the table exists; rating reports it if not.
                let Some(table) = catalog.rate_tables.get(rate_table) else { continue };
                let index = indexes.entry(rate_table.as_str()).or_insert_with(|| Arc::new(RateIndex::new(table.clone())));
                by_customer.entry(s.customer.clone()).or_default().push((s.start, s.end, p.meter.clone(), index.clone()));
            }
        }
        let mut meters: Vec<String> = by_customer.values().flatten().map(|(_, _, m, _)| m.clone()).collect();
        meters.sort();
        meters.dedup();
        CallChecks { by_customer, meters }
    }

    /// Whether no plan prices any meter with a rate table.
    pub fn is_empty(&self) -> bool {
        self.by_customer.is_empty()
    }

    /// Checks `event`'s value for `meter` as a call record, if its customer's plan prices the
    /// meter with a rate table at the event's time.
    fn check(&self, event: &EventRef<'_>, meter: &Meter, value: &MeterValueRef<'_>) -> Result<(), EventError> {
        if !self.meters.contains(&meter.key) {
            return Ok(());
        }
        let Some(prices) = self.by_customer.get(event.subject.as_ref()) else { return Ok(()) };
        let t = event.time;
        for (_, _, _, table) in prices.iter().filter(|(start, end, m, _)| *m == meter.key && *start <= t && end.is_none_or(|e| t < e)) {
            let duration = value.value.unwrap_or_default();
            let call = parse_call(&event.id, t, duration, &event.data).map_err(|e| {
                EventError::new(
                    e.event_field(meter.value.as_deref().unwrap_or_default()),
                    e.value,
                    format!("{} (a call record of meter {})", e.reason, meter.key),
                )
            })?;
            table.rate(&call).map_err(|e| call_error(&call, table.table().key.as_str(), event, e))?;
        }
        Ok(())
    }
}

/// A rating error of a call record, naming the field that decides it.
fn call_error(call: &CallRecord, table: &str, event: &EventRef<'_>, e: TelecomError) -> EventError {
    let quoted = serde_json::to_string(&call.destination).unwrap_or_default();
    match e {
        TelecomError::BadDestination { reason, .. } => {
            EventError::new("data.destination", quoted, format!("is not a phone number: {reason}"))
        }
        TelecomError::NoRate { digits, .. } => {
            EventError::new("data.destination", quoted, format!("(digits {digits}) matches no rate prefix in rate table {table}"))
        }
        TelecomError::NoBand { .. } => {
            // The band is chosen by the answer time when the record has one, else by `time`.
            let field = if call.start == event.time { "time" } else { "data.answered_at" };
            EventError::new(field, format!("{:?}", call.start.to_rfc3339()), format!("cannot be rated with rate table {table}: {e}"))
        }
        other => EventError::new("data", event.data.as_ref(), format!("cannot be rated with rate table {table}: {other}")),
    }
}

/// Where [`Validator::check_borrowed`] puts events: accepted, refused, rerouted.
type Out<'v, 'a> = (&'v mut Vec<AcceptedRef<'a>>, &'v mut Vec<Refused>, &'v mut Vec<Rerouted>);

/// Meters indexed by event type.
#[derive(Debug, Default)]
pub struct Validator {
    by_type: Map<String, Vec<Meter>>,
    deadlines: Option<Deadlines>,
    calls: CallChecks,
}

impl Validator {
    /// Builds the index from the catalog's meters.
    pub fn new(by_type: HashMap<String, Vec<Meter>>) -> Self {
        Validator { by_type: by_type.into_iter().collect(), deadlines: None, calls: CallChecks::default() }
    }

    /// Also checks call records of telecom-priced meters ([`CallChecks`]).
    pub fn with_call_checks(mut self, calls: CallChecks) -> Self {
        self.calls = calls;
        self
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
        let mut borrowed = Vec::new();
        self.check_borrowed(body, route, &mut borrowed, refused, rerouted);
        accepted.extend(borrowed.into_iter().map(AcceptedRef::into_owned));
    }

    /// Like [`Self::check_routed`], borrowing from `body`: the ingest hot path.
    ///
    /// The body is decoded in one pass, by the scanner ([`scan_each`]) or, when it declines,
    /// serde's typed pass ([`decode_text_typed`]); the events' own JSON texts are looked up only
    /// when one is refused or rerouted. A body that one pass cannot decode (not JSON, an event
    /// of the wrong shape) takes the event-by-event path ([`decode_message`]), which refuses
    /// only the bad events, with the same errors.
    pub fn check_borrowed<'a>(
        &'a self,
        body: &'a [u8],
        route: Option<Route>,
        accepted: &mut Vec<AcceptedRef<'a>>,
        refused: &mut Vec<Refused>,
        rerouted: &mut Vec<Rerouted>,
    ) {
        // The events' JSON texts, found on the first refusal or reroute.
        // SIMD validation: this runs over every byte received.
        let text = simdutf8::basic::from_utf8(body).ok();
        let mut raws: Option<Vec<&str>> = None;
        let mut raw_of = |index: usize| -> String {
            let Some(text) = text else { return String::new() };
            if !is_batch(text) {
                return text.to_owned();
            }
            let raws = raws.get_or_insert_with(|| split_batch(text).unwrap_or_default());
            raws.get(index).copied().unwrap_or(text).to_owned()
        };
        let place =
            |index: usize, result: Result<EventRef<'a>, EventError>, raw: &mut dyn FnMut(usize) -> String, out: &mut Out<'_, 'a>| {
                // Accepted events are built in place at the end of `accepted` (they are large and
                // this runs per event); one of another partition's customers is taken back out.
                match result.and_then(|e| self.check_event_into(e, out.0)) {
                    Ok(()) => {
                        if let Some(r) = route.filter(|r| r.partitions > 1)
                            && let Some(a) = out.0.pop_if(|a| customer_partition(&a.event.subject, r.partitions) != r.partition)
                        {
                            out.2.push(Rerouted { raw: raw(index), token: customer_token(&a.event.subject), key: a.key });
                        }
                    }
                    Err(error) => out.1.push(Refused { raw: raw(index), index, error }),
                }
            };
        let out = &mut (accepted, refused, rerouted);
        if let Some(text) = text {
            let before = (out.0.len(), out.1.len(), out.2.len());
            let mut index = 0;
            if scan_each(text, |e| {
                place(index, e, &mut raw_of, out);
                index += 1;
            }) {
                return;
            }
            // Declined part-way: drop what the scanner placed, and decode with serde.
            out.0.truncate(before.0);
            out.1.truncate(before.1);
            out.2.truncate(before.2);
            if let Some(decoded) = decode_text_typed(text) {
                for (index, result) in decoded.into_iter().enumerate() {
                    place(index, result, &mut raw_of, out);
                }
                return;
            }
        }
        // Event by event: the bad ones are refused with their own error, the good ones decoded
        // again, borrowed (a rare path: only bodies with a malformed event).
        for (index, d) in decode_message(body).into_iter().enumerate() {
            let result = d.result.and_then(|_| decode_event_ref(d.raw));
            place(index, result, &mut |_| d.raw.to_owned(), out);
        }
    }

    /// Checks `event` against its meters and appends it to `accepted`.
    fn check_event_into<'a>(&'a self, event: EventRef<'a>, accepted: &mut Vec<AcceptedRef<'a>>) -> Result<(), EventError> {
        let meters = self
            .by_type
            .get(event.event_type.as_ref())
            .ok_or_else(|| EventError::new("type", format!("{:?}", event.event_type), "matches no meter in the catalog"))?;
        let mut values: SmallVec<[(&'a Meter, MeterValueRef<'a>); 1]> = SmallVec::with_capacity(meters.len());
        for m in meters {
            // `data` borrows from the body when the event was scanned: the values borrow from it
            // too (owned `data` happens only on serde's path, for bodies with escapes).
            let v = match &event.data {
                Cow::Borrowed(data) => m.extract_ref(data)?,
                Cow::Owned(data) => m.extract_ref(data)?.detach(),
            };
            values.push((m, v));
        }
        check_time(event.time)?;
        if !self.calls.is_empty() {
            for (m, v) in &values {
                self.calls.check(&event, m, v)?;
            }
        }
        let late = self.deadlines.as_ref().is_some_and(|d| Utc::now() > d.deadline(&event.subject, event.time));
        let (key, month) = (event_key(&event.source, &event.id), PeriodLabel::containing(event.time));
        accepted.push(AcceptedRef { key, month, late, event, values });
        Ok(())
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
    use crate::partition::partition_of;
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

    fn validator() -> Validator {
        let meter: Meter = serde_json::from_str(
            r#"{"key":"tokens","event_type":"llm","aggregation":"SUM","value":"tokens","group_by":{"model":"model"}}"#,
        )
        .unwrap();
        Validator::new(HashMap::from([("llm".to_string(), vec![meter])]))
    }

    fn ev(id: &str, customer: &str, data: &str) -> String {
        format!(
            r#"{{"specversion":"1.0","id":"{id}","source":"s","type":"llm","subject":"{customer}","time":"2026-10-05T12:00:00Z","data":{data}}}"#
        )
    }

    #[test]
    fn batch_with_bad_events_refuses_only_those_with_their_text() {
        let v = validator();
        let good = ev("e1", "acme", r#"{"tokens":12,"model":"m\u00e9"}"#);
        let no_value = ev("e2", "acme", r#"{"model":"m"}"#);
        let not_number = ev("e3", "acme", r#"{"tokens":"many"}"#);
        let body = format!("[{good}, {no_value},{not_number}]");
        let (mut ok, mut bad, mut moved) = (Vec::new(), Vec::new(), Vec::new());
        v.check_borrowed(body.as_bytes(), None, &mut ok, &mut bad, &mut moved);
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].event.id, "e1");
        assert_eq!(ok[0].values[0].1.value, Some(rust_decimal::Decimal::from(12)));
        assert_eq!(ok[0].group_key(0), r#"{"model":"mé"}"#);
        assert_eq!(ok[0].key, event_key("s", "e1"));
        let got: Vec<_> = bad.iter().map(|r| (r.index, r.raw.as_str(), r.error.field.as_str(), r.error.value.as_str())).collect();
        assert_eq!(got, [(1, no_value.as_str(), "data.tokens", "<missing>"), (2, not_number.as_str(), "data.tokens", "\"many\"")]);
    }

    #[test]
    fn wrong_types_take_the_event_by_event_path_with_the_same_errors() {
        let v = validator();
        let good = ev("e1", "acme", r#"{"tokens":1}"#);
        let wrong = good.replace(r#""id":"e1""#, r#""id":1"#);
        let body = format!("[{good},{wrong},{}]", ev("e3", "acme", r#"{"tokens":3}"#));
        let (mut ok, mut bad, mut moved) = (Vec::new(), Vec::new(), Vec::new());
        v.check_borrowed(body.as_bytes(), None, &mut ok, &mut bad, &mut moved);
        assert_eq!(ok.iter().map(|a| a.event.id.as_ref()).collect::<Vec<_>>(), ["e1", "e3"]);
        assert_eq!((bad.len(), bad[0].index, bad[0].raw.as_str(), bad[0].error.field.as_str()), (1, 1, wrong.as_str(), "event"));
        // The owned API gives the same.
        let (mut ok2, mut bad2) = (Vec::new(), Vec::new());
        v.check(body.as_bytes(), &mut ok2, &mut bad2);
        assert_eq!(ok2.len(), 2);
        assert_eq!(bad2[0].error, bad[0].error);
        // Not JSON at all: one refusal for the body.
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        v.check_borrowed(b"[{", None, &mut ok, &mut bad, &mut moved);
        assert_eq!((ok.len(), bad.len(), bad[0].error.field.as_str()), (0, 1, "body"));
    }

    #[test]
    fn other_partitions_events_are_rerouted_with_their_text() {
        let v = validator();
        let route = Route { partition: 0, partitions: 4 };
        let customers: Vec<String> = (0..40).map(|i| format!("c{i}")).collect();
        let events: Vec<String> = customers.iter().enumerate().map(|(i, c)| ev(&format!("e{i}"), c, r#"{"tokens":1}"#)).collect();
        let body = format!("[{}]", events.join(","));
        let (mut ok, mut bad, mut moved) = (Vec::new(), Vec::new(), Vec::new());
        v.check_borrowed(body.as_bytes(), Some(route), &mut ok, &mut bad, &mut moved);
        assert!(bad.is_empty());
        assert_eq!(ok.len() + moved.len(), 40);
        assert!(!ok.is_empty() && !moved.is_empty());
        for r in &moved {
            let i: usize = events.iter().position(|e| *e == r.raw).expect("the event's own text");
            assert_eq!(r.token, customer_token(&customers[i]));
            assert_ne!(partition_of(&r.token, 4), 0);
        }
    }

    #[test]
    fn unratable_call_records_are_refused_naming_the_field() {
        let catalog = CatalogFile::parse(
            r#"
meters: [ { key: calls, event_type: call.completed, aggregation: SUM, value: secs } ]
rate_tables:
  - key: uk
    currency: USD
    rates:
      - { prefix: "44", description: UK, increments: { first: 60, next: 60 }, bands: [ { name: any, from: "00:00", to: "00:00", price_per_minute: "0.05" } ] }
      - { prefix: "1", description: US, increments: { first: 1, next: 1 },
          bands: [ { name: office, days: [mon, tue, wed, thu, fri], from: "08:00", to: "18:00", price_per_minute: "0.01" } ] }
plans: [ { key: voice, versions: [ { version: 1, currency: USD, prices: [ { meter: calls, model: telecom, rate_table: uk } ] } ] } ]
customers: [ { key: acme, name: Acme, currency: USD, jurisdiction: US } ]
tax_rates: [ { jurisdiction: US, name: none, rate: "0" } ]
subscriptions: [ { id: s1, customer: acme, plan: voice, plan_version: 1, start: "2026-03-01T00:00:00Z", anchor_day: 1 } ]
"#,
            "yaml",
        )
        .unwrap()
        .validate(&Catalog::default())
        .unwrap();
        let v = Validator::new(catalog.meters_by_event_type()).with_call_checks(CallChecks::new(&catalog));
        // 2026-03-07 is a Saturday, 2026-03-02 a Monday.
        let call = |customer: &str, time: &str, data: &str| {
            format!(
                r#"{{"specversion":"1.0","id":"c","source":"s","type":"call.completed","subject":"{customer}","time":"{time}","data":{data}}}"#
            )
        };
        let check = |event: String| {
            let (mut ok, mut bad) = (Vec::new(), Vec::new());
            v.check(event.as_bytes(), &mut ok, &mut bad);
            match bad.pop() {
                None => Ok(ok.len()),
                Some(r) => Err((r.error.field, r.error.value, r.error.reason)),
            }
        };
        let mon = "2026-03-02T10:00:00Z";
        assert_eq!(check(call("acme", mon, r#"{"destination":"+44 20 7946","secs":61}"#)), Ok(1));
        assert_eq!(check(call("acme", mon, r#"{"destination":"1 555 0100","secs":0,"answered_at":null}"#)), Ok(1));
        let refused = |event| check(event).unwrap_err();
        let (field, value, reason) = refused(call("acme", mon, r#"{"secs":61}"#));
        assert_eq!((field.as_str(), value.as_str()), ("data.destination", "<missing>"));
        assert!(reason.starts_with("is required (the called number) (a call record of meter calls)"), "{reason}");
        let (field, value, reason) = refused(call("acme", mon, r#"{"destination":"+33 1 2345","secs":61}"#));
        assert_eq!(
            (field.as_str(), value.as_str(), reason.as_str()),
            ("data.destination", "\"+33 1 2345\"", "(digits 3312345) matches no rate prefix in rate table uk")
        );
        let (field, value, reason) = refused(call("acme", mon, r#"{"destination":"44 ext. 5","secs":61}"#));
        assert_eq!((field.as_str(), value.as_str()), ("data.destination", "\"44 ext. 5\""));
        assert!(reason.starts_with("is not a phone number: only digits"), "{reason}");
        let (field, value, reason) = refused(call("acme", mon, r#"{"destination":"44","secs":1.5}"#));
        assert_eq!((field.as_str(), value.as_str()), ("data.secs", "1.5"));
        assert!(reason.starts_with("is not a whole number of seconds"), "{reason}");
        // The US rate has no weekend band: by the event time, or by the answer time when given.
        let (field, value, reason) = refused(call("acme", "2026-03-07T10:00:00Z", r#"{"destination":"1 555","secs":5}"#));
        assert_eq!((field.as_str(), value.as_str()), ("time", "\"2026-03-07T10:00:00+00:00\""));
        assert!(
            reason.contains("rate table uk: rate \"1\" (US) has no band covering the call's start, 2026-03-07 10:00:00 +00:00 (sat)"),
            "{reason}"
        );
        let (field, _, _) = refused(call("acme", mon, r#"{"destination":"1 555","secs":5,"answered_at":"2026-03-01T10:00:00Z"}"#));
        assert_eq!(field, "data.answered_at");
        let (field, value, _) = refused(call("acme", mon, r#"{"destination":"1 555","secs":5,"answered_at":"soon"}"#));
        assert_eq!((field.as_str(), value.as_str()), ("data.answered_at", "\"soon\""));
        // No plan prices these with a rate table: before the subscription starts, or another
        // customer. They are kept like any usage.
        assert_eq!(check(call("acme", "2026-02-27T10:00:00Z", r#"{"destination":"+33","secs":1}"#)), Ok(1));
        assert_eq!(check(call("bolt", mon, r#"{"destination":"+33","secs":1}"#)), Ok(1));
    }
}
