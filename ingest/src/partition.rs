//! Partitions: how usage subjects map onto ingest workers.
//!
//! Producers publish to `<prefix>.events.<token>`, where the token is [`customer_token`] of the
//! events' customer (16 hex digits of xxh3-64 of the customer key). The usage stream's subject
//! transform (JetStream subject mapping) stores each message as `<prefix>.p.<n>` with
//! `n = partition(N, token)`, the server's FNV-1a hash of the token modulo N ([`partition_of`]
//! computes the same). Each partition has its own durable consumer, dedup index and ledger
//! segments (`seg-p<n>-…`), so a partition's whole state moves with it to whichever worker owns it.
//!
//! Dedup is exact per partition because every copy of an event has the same customer, hence the
//! same token and partition. Messages that break the rule (a batch mixing customers, or any other
//! token) are handled by ingest: an event that belongs to another partition is republished to its
//! own subject (with its `Nats-Msg-Id`) before the message is acked, never written in the wrong
//! partition. The plain subject `<prefix>.events` is not captured: publishing there fails at once
//! (no stream answers), so nothing is stored where no partition would read it.
//!
//! Stored subjects are one literal subject per partition, so a partition's consumer filters on a
//! single literal subject (and with one partition, not at all): measured on nats-server 2.15, a
//! consumer filtering a wildcard over 1,000 token subjects delivered 40k messages/s where an
//! unfiltered one delivered 517k/s, and two filter subjects were slower still.
//!
//! The number of partitions is fixed for the life of a stream, like Kafka's: changing it would
//! move customers between partitions and their dedup state with them.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// Most partitions a stream may have.
pub const MAX_PARTITIONS: u32 = 1024;

/// The routing token of a customer: 16 lowercase hex digits.
pub fn customer_token(customer: &str) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(customer.as_bytes()))
}

/// The partition JetStream's `{{partition(n,1)}}` assigns to a subject token (FNV-1a 32-bit).
pub fn partition_of(token: &str, partitions: u32) -> u32 {
    fnv1a(token.as_bytes()) % partitions.max(1)
}

/// The partition of a customer's events: [`partition_of`] its [`customer_token`], without
/// allocating the token (this runs once per event).
pub fn customer_partition(customer: &str, partitions: u32) -> u32 {
    let h = xxhash_rust::xxh3::xxh3_64(customer.as_bytes());
    let mut token = [0u8; 16];
    for (i, digit) in token.iter_mut().enumerate() {
        *digit = b"0123456789abcdef"[usize::try_from((h >> (60 - 4 * i)) & 0xf).unwrap_or_default()];
    }
    fnv1a(&token) % partitions.max(1)
}

fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Subject a producer publishes an event of `customer` to.
pub fn publish_subject(prefix: &str, customer: &str) -> String {
    format!("{prefix}.events.{}", customer_token(customer))
}

/// Subject for a message whose events' customers are not known (a batch mixing customers, a
/// line that is not an event): any token works, ingest reroutes or dead-letters what is inside.
pub fn unrouted_subject(prefix: &str) -> String {
    format!("{prefix}.events.unrouted")
}

/// Subjects of the usage stream, and its transform (source → destination).
pub fn stream_subjects(prefix: &str, partitions: u32) -> (Vec<String>, String, String) {
    (vec![format!("{prefix}.events.*")], format!("{prefix}.events.*"), format!("{prefix}.p.{{{{partition({partitions},1)}}}}"))
}

/// The subject a partition's consumer reads (`None`: the whole stream, with one partition).
pub fn consumer_filter(prefix: &str, partition: u32, partitions: u32) -> Option<String> {
    (partitions > 1).then(|| format!("{prefix}.p.{partition}"))
}

/// The partition of a stored message subject (`<prefix>.p.<n>`).
pub fn partition_of_subject(prefix: &str, subject: &str) -> Option<u32> {
    subject.strip_prefix(prefix)?.strip_prefix(".p.")?.parse().ok()
}

/// A set of partitions, written `0-3`, `1,5,7` or `0-1,4`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSet(pub BTreeSet<u32>);

impl PartitionSet {
    /// All partitions `0..n`.
    pub fn all(n: u32) -> Self {
        PartitionSet((0..n).collect())
    }

    /// Checks every member is below the stream's partition count.
    pub fn check(&self, partitions: u32) -> Result<(), String> {
        match self.0.iter().find(|&&p| p >= partitions) {
            Some(p) => {
                Err(format!("--partitions: partition {p} does not exist (ingest.partitions = {partitions}: 0..={})", partitions - 1))
            }
            None => Ok(()),
        }
    }
}

impl fmt::Display for PartitionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v: Vec<String> = self.0.iter().map(u32::to_string).collect();
        f.write_str(&v.join(","))
    }
}

impl FromStr for PartitionSet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut set = BTreeSet::new();
        let num = |t: &str| t.trim().parse::<u32>().map_err(|_| format!("partitions {s:?}: {t:?} is not a partition number"));
        for part in s.split(',') {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (num(a)?, num(b)?);
                    if a > b {
                        return Err(format!("partitions {s:?}: range {a}-{b} is empty"));
                    }
                    set.extend(a..=b);
                }
                None => {
                    set.insert(num(part)?);
                }
            }
        }
        if set.is_empty() {
            return Err(format!("partitions {s:?}: no partition"));
        }
        Ok(PartitionSet(set))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_reference_values() {
        // FNV-1a 32-bit reference values: "" = 0x811c9dc5, "a" = 0xe40c292c, "foobar" = 0xbf9cf968.
        assert_eq!(partition_of("", u32::MAX), 0x811c_9dc5);
        assert_eq!(partition_of("a", u32::MAX), 0xe40c_292c);
        assert_eq!(partition_of("foobar", u32::MAX), 0xbf9c_f968);
        assert_eq!(partition_of("foobar", 4), 0xbf9c_f968 % 4);
    }

    #[test]
    fn partition_sets_parse_and_name_bad_input() {
        assert_eq!("0-3".parse::<PartitionSet>().unwrap().0, (0..=3).collect());
        assert_eq!("1,5,7".parse::<PartitionSet>().unwrap().to_string(), "1,5,7");
        assert_eq!("0-1,4".parse::<PartitionSet>().unwrap().to_string(), "0,1,4");
        assert!("3-1".parse::<PartitionSet>().unwrap_err().contains("range 3-1 is empty"));
        assert!("x".parse::<PartitionSet>().unwrap_err().contains("\"x\" is not a partition number"));
        assert!("0-4".parse::<PartitionSet>().unwrap().check(4).unwrap_err().contains("partition 4 does not exist"));
    }

    #[test]
    fn customer_partition_is_the_partition_of_its_token() {
        for c in ["acme", "", "cust-0001", "ünï", "a much longer customer key than sixteen bytes"] {
            for n in [1, 2, 3, 4, 7, 16, 1024] {
                assert_eq!(customer_partition(c, n), partition_of(&customer_token(c), n), "{c} {n}");
            }
        }
    }

    #[test]
    fn subjects() {
        assert_eq!(partition_of_subject("usage", "usage.p.3"), Some(3));
        assert_eq!(partition_of_subject("usage", "usage.events.x"), None);
        assert_eq!(consumer_filter("usage", 2, 4).as_deref(), Some("usage.p.2"));
        assert_eq!(consumer_filter("usage", 0, 1), None);
        assert_eq!(stream_subjects("usage", 4).2, "usage.p.{{partition(4,1)}}");
        assert_eq!(customer_token("acme").len(), 16);
    }
}
