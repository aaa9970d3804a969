//! Producer batching (`--events-per-message N`): which events go in which JetStream message, and
//! when each message is sent.
//!
//! One JetStream message per event tops out near 35k events/s end to end on a 2-core machine;
//! high-volume producers buffer their events and publish several per message as a JSON array
//! (CloudEvents batch mode), which ingest decodes event by event: an invalid event is
//! dead-lettered on its own (header `Meterline-Source-Index` names its place), the others are
//! kept, and the message is acked once all of them are durable.
//!
//! **The schedule does not change.** Event `i` is still due at `start + i / rate`
//! ([`crate::schedule`]), and each event keeps its own customer, type and kind from the mix
//! (fresh, late, duplicate, invalid). Batching only decides how due events are carried.
//!
//! **Grouping: consecutive events of one partition.** A message holds up to `N` consecutive
//! events (in schedule order) whose customers belong to the same stream partition; with one
//! partition (the default) message `k` is simply events `kN .. kN+N-1`, customers mixed, as a
//! gateway that buffers whatever it handles would send them. It is published to the subject of
//! its first event's customer, which is in that partition. Why by partition:
//! - Every event of a message is then ingested by the worker that owns the message's
//!   partition, in stream order, and written into the same segment as the rest of its message.
//!   So publish → durable is exact per event (the message's stream sequence under the
//!   partition's ack floor), and so is publish → current spend (a customer's first `k` ledger
//!   rows are their first `k` valid events by stream sequence and place in the message). An
//!   event of another partition's customer would be republished by ingest under a new stream
//!   sequence the load test never sees, and reach the ledger out of that order.
//! - A duplicate repeats an earlier event byte for byte (same source and id), so it has the same
//!   customer and partition and meets its original in the same dedup index. A batch message
//!   carries no `Nats-Msg-Id` (no single event's key names it, and the load test never retries),
//!   so JetStream's duplicate window never drops a batch: every duplicate reaches ingest's exact
//!   (source, id) dedup.
//! - Grouping by customer instead (as `bench-ingest` does) would keep an event waiting until its
//!   customer has `N` of them: with 1,000 customers at 100,000 events/s and `N` = 100, about a
//!   second. By partition the wait is about `N × partitions / rate` (1 ms at that rate with one
//!   partition).
//!
//! **When a message is sent: when its last event is due.** The sender takes events as they
//! fall due; the event that fills a message releases it at once. Every latency is still
//! measured from each event's *own* scheduled time, so the time an event waits in the
//! producer's buffer (up to `(N − 1) / rate` × partitions for a message's first event) is part of
//! every latency reported, publish ack included: batching is not free, and the report does not
//! hide its cost. At the end of a run the messages not yet full are sent at once, after the
//! last event is due.

use bytes::{BufMut, Bytes, BytesMut};

/// Most events per message: 1,000 of the mix's events (at most about 300 bytes each) stay well
/// under NATS's default 1 MB payload limit and ingest's 4 MiB pull size.
pub const MAX_EVENTS_PER_MESSAGE: u64 = 1_000;

/// Events buffered into messages: one open message per group (stream partition).
#[derive(Debug)]
pub struct Batcher<T> {
    per_message: usize,
    open: Vec<Vec<T>>,
}

impl<T> Batcher<T> {
    /// `per_message` events per message (at least 1), over `groups` groups (at least 1).
    pub fn new(per_message: usize, groups: usize) -> Self {
        let per_message = per_message.max(1);
        Batcher { per_message, open: (0..groups.max(1)).map(|_| Vec::with_capacity(per_message)).collect() }
    }

    /// Events per message.
    pub fn per_message(&self) -> usize {
        self.per_message
    }

    /// Adds a due event to its group's open message. When the event fills the message, returns
    /// the message, to be sent now: its last event is the one just due. Groups out of range go
    /// to the last group (callers pass partitions below the count they gave).
    pub fn push(&mut self, group: usize, event: T) -> Option<Vec<T>> {
        let last = self.open.len() - 1;
        let open = &mut self.open[group.min(last)];
        open.push(event);
        (open.len() >= self.per_message).then(|| std::mem::replace(open, Vec::with_capacity(self.per_message)))
    }

    /// The messages not yet full (at the end of a run), by group.
    pub fn flush(&mut self) -> Vec<Vec<T>> {
        self.open.iter_mut().filter(|m| !m.is_empty()).map(std::mem::take).collect()
    }

    /// Events waiting in open messages.
    pub fn waiting(&self) -> usize {
        self.open.iter().map(Vec::len).sum()
    }
}

/// The body of a message: the event itself when it is alone (as before batching), otherwise
/// the events as a JSON array, in order.
pub fn body<'a>(events: impl ExactSizeIterator<Item = &'a Bytes>) -> Bytes {
    let n = events.len();
    let mut events = events.peekable();
    if n == 1 {
        return events.next().cloned().unwrap_or_default();
    }
    let mut out = BytesMut::new();
    out.put_u8(b'[');
    while let Some(e) = events.next() {
        out.put_slice(e);
        if events.peek().is_some() {
            out.put_u8(b',');
        }
    }
    out.put_u8(b']');
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Schedule;

    /// A due event as the sender holds it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Due {
        index: u64,
        scheduled_ns: u64,
    }

    /// A message as sent: its events and when it was sent (ns since the start).
    type Sent = (Vec<Due>, u64);

    /// What the sender does: take event `i` when it is due (`scheduled_ns`), push it, send what
    /// comes back at that moment; at the end, send the open messages at the last due time.
    fn simulate(rate: u64, events: u64, per_message: usize, groups: usize, group_of: impl Fn(u64) -> usize) -> Vec<Sent> {
        let s = Schedule::new(rate);
        let mut b = Batcher::new(per_message, groups);
        let mut sent = Vec::new();
        let mut now = 0;
        for i in 0..events {
            now = s.offset_ns(i);
            if let Some(m) = b.push(group_of(i), Due { index: i, scheduled_ns: now }) {
                sent.push((m, now));
            }
        }
        sent.extend(b.flush().into_iter().map(|m| (m, now)));
        assert_eq!(b.waiting(), 0);
        sent
    }

    fn indices(m: &[Due]) -> Vec<u64> {
        m.iter().map(|d| d.index).collect()
    }

    #[test]
    fn one_partition_sends_consecutive_blocks_when_their_last_event_is_due() {
        // 1,000 ev/s, 10 per message: message k holds events 10k .. 10k+9 and leaves at 10k+9's
        // due time, (10k + 9) ms.
        let sent = simulate(1_000, 35, 10, 1, |_| 0);
        assert_eq!(sent.len(), 4);
        for (k, (m, at)) in sent.iter().take(3).enumerate() {
            let k = k as u64;
            assert_eq!(indices(m), (10 * k..10 * k + 10).collect::<Vec<_>>());
            assert_eq!(*at, (10 * k + 9) * 1_000_000);
            // Each event keeps its own scheduled time: i ms.
            assert!(m.iter().all(|d| d.scheduled_ns == d.index * 1_000_000));
            assert_eq!(m.last().map(|d| d.scheduled_ns), Some(*at));
        }
        // The last five events go out together at the end, when the last of them is due.
        assert_eq!(indices(&sent[3].0), vec![30, 31, 32, 33, 34]);
        assert_eq!(sent[3].1, 34_000_000);
    }

    #[test]
    fn the_batching_wait_counts_from_each_events_own_schedule() {
        // 100,000 ev/s, 100 per message: the first event of a message waits 99 × 10 µs = 990 µs
        // in the producer, the last one nothing; that wait is part of its latency.
        let sent = simulate(100_000, 1_000, 100, 1, |_| 0);
        assert_eq!(sent.len(), 10);
        for (m, at) in &sent {
            let waits: Vec<u64> = m.iter().map(|d| crate::schedule::latency_ns(d.scheduled_ns, *at)).collect();
            assert_eq!(waits[0], 990_000);
            assert_eq!(waits[99], 0);
            assert!(waits.windows(2).all(|w| w[0] - w[1] == 10_000), "10 µs apart");
        }
    }

    #[test]
    fn several_partitions_keep_each_message_in_one_partition_in_schedule_order() {
        // Events alternate between partitions 0, 1, 1, 0, 2, …: every message holds events of one
        // partition only, consecutive among that partition's events, and leaves when its last
        // one is due.
        let group_of = |i: u64| [0, 1, 1, 0, 2][(i % 5) as usize];
        let sent = simulate(1_000, 50, 4, 3, group_of);
        let mut seen = Vec::new();
        for (m, at) in &sent {
            let g = group_of(m[0].index);
            assert!(m.iter().all(|d| group_of(d.index) == g), "one partition per message: {m:?}");
            assert!(m.windows(2).all(|w| w[0].index < w[1].index));
            assert!(m.len() <= 4);
            if m.len() == 4 {
                assert_eq!(m[3].scheduled_ns, *at, "a full message leaves when its last event is due");
            } else {
                assert_eq!(*at, 49_000_000, "partial messages leave at the end");
            }
            seen.extend(indices(m));
        }
        // Partition 1 gets events 1, 2, 6, 7, …: its first message fills first and leaves at 7 ms;
        // partition 0's (0, 3, 5, 8) at 8 ms; partition 2's (4, 9, 14, 19) at 19 ms.
        let first: Vec<(Vec<u64>, u64)> = sent.iter().take(3).map(|(m, at)| (indices(m), *at)).collect();
        assert_eq!(
            first,
            vec![(vec![1, 2, 6, 7], 7_000_000), (vec![0, 3, 5, 8], 8_000_000), (vec![1 + 10, 2 + 10, 6 + 10, 7 + 10], 17_000_000)]
        );
        let p2 = sent.iter().find(|(m, _)| m[0].index == 4).expect("partition 2's first message");
        assert_eq!((indices(&p2.0), p2.1), (vec![4, 9, 14, 19], 19_000_000));
        // Every event is sent exactly once.
        seen.sort_unstable();
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn one_event_per_message_is_sent_when_due_as_before() {
        let sent = simulate(4, 5, 1, 2, |i| (i % 2) as usize);
        assert_eq!(
            sent.iter().map(|(m, at)| (indices(m), *at)).collect::<Vec<_>>(),
            (0..5).map(|i| (vec![i], i * 250_000_000)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn ingest_keeps_the_valid_events_of_a_mixed_batch_and_refuses_only_the_invalid_ones() {
        use chrono::TimeZone;
        use meterline_ingest::validate::Validator;
        // A batch of the mix with many invalid events and duplicates, checked as ingest checks it.
        let now = chrono::Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).single().expect("valid time");
        let start = chrono::Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().expect("valid time");
        let shares = crate::mix::MixShares { duplicates_ppm: 100_000, late_ppm: 100_000, invalid_ppm: 100_000 };
        let mut mix = crate::mix::Mix::new(5, shares, 20, "loadtest/batch-test");
        let events: Vec<_> = (0..100).map(|i| mix.next(i, now, start)).collect();
        let catalog = crate::catalog::build(20, start).expect("catalog");
        let v = Validator::new(catalog.meters_by_event_type());
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        v.check(&body(events.iter().map(|g| &g.body)), &mut ok, &mut bad);
        let invalid: Vec<usize> = events.iter().enumerate().filter(|(_, g)| g.kind == crate::mix::Kind::Invalid).map(|(i, _)| i).collect();
        assert!(!invalid.is_empty() && events.iter().any(|g| g.kind == crate::mix::Kind::Duplicate));
        // Each invalid event is refused with its own place and text; every other one is kept
        // (duplicates too: dropping them is the dedup's job, after validation).
        assert_eq!(bad.iter().map(|r| r.index).collect::<Vec<_>>(), invalid);
        assert!(bad.iter().all(|r| r.raw.as_bytes() == events[r.index].body.as_ref()));
        assert_eq!(ok.len(), 100 - invalid.len());
        let valid_ids: Vec<String> =
            events.iter().filter(|g| g.kind != crate::mix::Kind::Invalid).map(|g| g.msg_id.clone().unwrap_or_default()).collect();
        let got: Vec<String> = ok.iter().map(|a| meterline_schemas::ledger::msg_id(&a.event.source, &a.event.id)).collect();
        assert_eq!(got, valid_ids, "kept in order, with their (source, id)");
    }

    #[test]
    fn a_batch_body_is_a_json_array_of_the_events_in_order() {
        let e = [Bytes::from_static(br#"{"id":"1"}"#), Bytes::from_static(br#"{"id":"2"}"#), Bytes::from_static(br#"{"id":"3"}"#)];
        assert_eq!(body(e.iter()), Bytes::from_static(br#"[{"id":"1"},{"id":"2"},{"id":"3"}]"#));
        // Alone, an event is sent as it is, not as a one-element array.
        assert_eq!(body(e[..1].iter()), e[0]);
        let v: serde_json::Value = serde_json::from_slice(&body(e[..2].iter())).expect("JSON");
        assert_eq!(v, serde_json::json!([{"id": "1"}, {"id": "2"}]));
    }
}
