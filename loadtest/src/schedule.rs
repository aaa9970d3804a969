//! The open-loop schedule: event `i` is due at `start + i / rate`, whatever happened before.
//!
//! A closed-loop generator (send, wait for the answer, send the next) slows down exactly when the
//! system does, so the slow periods are sampled less and the percentiles look better than what a
//! producer sees: coordinated omission. Here the sender never waits for an answer, and every
//! latency is measured from the event's *scheduled* time, not from when it was actually sent:
//! when the sender falls behind (a pause, a full socket), the delay counts against the system.
//! Integer nanoseconds throughout, so the schedule is exact and reproducible.

use std::time::Duration;

/// Nanoseconds per second.
const NS: u128 = 1_000_000_000;

/// Event `i` is due `i / rate` seconds after the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    rate: u64,
}

impl Schedule {
    /// A schedule of `rate` events per second (at least 1).
    pub fn new(rate: u64) -> Self {
        Schedule { rate: rate.max(1) }
    }

    /// Events per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Offset of event `i` from the start, in nanoseconds (floor of `i × 10⁹ / rate`).
    pub fn offset_ns(&self, i: u64) -> u64 {
        u64::try_from(u128::from(i) * NS / u128::from(self.rate)).unwrap_or(u64::MAX)
    }

    /// Offset of event `i` from the start.
    pub fn offset(&self, i: u64) -> Duration {
        Duration::from_nanos(self.offset_ns(i))
    }

    /// How many events are due once `elapsed_ns` have passed (events `0..n` have offsets at or
    /// before it).
    pub fn due_by(&self, elapsed_ns: u64) -> u64 {
        u64::try_from(u128::from(elapsed_ns) * u128::from(self.rate) / NS + 1).unwrap_or(u64::MAX)
    }

    /// Events in `duration` at this rate.
    pub fn events_in(&self, duration: Duration) -> u64 {
        u64::try_from(duration.as_nanos() * u128::from(self.rate) / NS).unwrap_or(u64::MAX)
    }
}

/// Latency of an event observed at `observed_ns` (since the run's start) that was scheduled at
/// `scheduled_ns`: measured from the schedule, never from the actual send (see the module doc).
pub fn latency_ns(scheduled_ns: u64, observed_ns: u64) -> u64 {
    observed_ns.saturating_sub(scheduled_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduled_times_are_start_plus_i_over_rate() {
        let s = Schedule::new(4);
        assert_eq!((0..5).map(|i| s.offset_ns(i)).collect::<Vec<_>>(), vec![0, 250_000_000, 500_000_000, 750_000_000, 1_000_000_000]);
        let s = Schedule::new(3);
        assert_eq!(s.offset_ns(1), 333_333_333);
        assert_eq!(s.offset_ns(3), 1_000_000_000);
        assert_eq!(Schedule::new(1_000_000).offset(1_000_000), Duration::from_secs(1));
        assert_eq!(Schedule::new(0).rate(), 1);
    }

    #[test]
    fn due_counts_match_offsets() {
        let s = Schedule::new(1000);
        assert_eq!(s.due_by(0), 1);
        assert_eq!(s.due_by(999_999), 1);
        assert_eq!(s.due_by(1_000_000), 2);
        assert_eq!(s.due_by(1_000_000_000), 1001);
        for elapsed in [0, 1, 999_999, 1_000_000, 123_456_789] {
            let n = s.due_by(elapsed);
            assert!(s.offset_ns(n - 1) <= elapsed && s.offset_ns(n) > elapsed);
        }
        assert_eq!(s.events_in(Duration::from_secs(60)), 60_000);
    }

    #[test]
    fn latency_counts_from_the_schedule_when_the_sender_falls_behind() {
        // 1000 ev/s; the sender stalls for 500 ms before event 100 and then sends the backlog at
        // once. Each event is stored 1 ms after its actual send.
        let s = Schedule::new(1000);
        let stall_until = s.offset_ns(100) + 500_000_000;
        let mut corrected = Vec::new();
        let mut naive = Vec::new();
        for i in 0..1000 {
            let scheduled = s.offset_ns(i);
            let sent = scheduled.max(if i >= 100 { stall_until } else { 0 });
            let stored = sent + 1_000_000;
            corrected.push(latency_ns(scheduled, stored));
            naive.push(stored - sent);
        }
        // Measured from the send, the stall disappears; from the schedule, it shows.
        assert!(naive.iter().all(|&l| l == 1_000_000));
        assert_eq!(corrected[99], 1_000_000);
        assert_eq!(corrected[100], 501_000_000);
        assert_eq!(corrected[599], 2_000_000);
        assert_eq!(corrected.iter().filter(|&&l| l > 1_000_000).count(), 500);
        assert_eq!(latency_ns(10, 5), 0);
    }
}
