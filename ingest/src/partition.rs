//! Partitions: how usage subjects map onto ingest workers.
//!
//! Producers publish to `<prefix>.events.<token>`, where the token is [`customer_token`] of the
//! events' customer (16 hex digits of xxh3-64 of the customer key). The usage stream's subject
//! transform (JetStream subject mapping) stores each message as `<prefix>.p.<n>.<token>` with
//! `n = partition(N, token)`, the server's FNV-1a hash of the token modulo N ([`partition_of`]
//! computes the same). Each partition has its own durable consumer, dedup index and ledger
//! segments (`seg-p<n>-…`), so a partition's whole state moves with it to whichever worker owns it.
//!
//! Dedup is exact per partition because every copy of an event has the same customer, hence the
//! same token and partition. Messages that break the rule (a batch mixing customers, or the plain
//! subject `<prefix>.events` without a token, which partition 0 consumes) are handled by ingest:
//! an event that belongs to another partition is republished to its own subject (with its
//! `Nats-Msg-Id`) before the message is acked, never written in the wrong partition.
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
    let mut h: u32 = 0x811c_9dc5;
    for b in token.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % partitions.max(1)
}

/// Subject a producer publishes an event of `customer` to.
pub fn publish_subject(prefix: &str, customer: &str) -> String {
    format!("{prefix}.events.{}", customer_token(customer))
}

/// Subjects of the usage stream, and its transform (source → destination).
pub fn stream_subjects(prefix: &str, partitions: u32) -> (Vec<String>, String, String) {
    (
        vec![format!("{prefix}.events"), format!("{prefix}.events.*")],
        format!("{prefix}.events.*"),
        format!("{prefix}.p.{{{{partition({partitions},1)}}}}.{{{{wildcard(1)}}}}"),
    )
}

/// Subjects a partition's consumer reads: its mapped subjects, and for partition 0 also the plain
/// subject without a token.
pub fn consumer_filters(prefix: &str, partition: u32) -> Vec<String> {
    let mut f = vec![format!("{prefix}.p.{partition}.*")];
    if partition == 0 {
        f.push(format!("{prefix}.events"));
    }
    f
}

/// The partition a stored message subject says it belongs to (`<prefix>.p.<n>.<token>`), or
/// `None` for the plain subject.
pub fn token_of_subject<'a>(prefix: &str, subject: &'a str) -> Option<&'a str> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix(".p.")?;
    let (_, token) = rest.split_once('.')?;
    Some(token)
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
    fn subjects() {
        assert_eq!(token_of_subject("usage", "usage.p.3.00ff"), Some("00ff"));
        assert_eq!(token_of_subject("usage", "usage.events"), None);
        assert_eq!(consumer_filters("usage", 0), vec!["usage.p.0.*", "usage.events"]);
        assert_eq!(stream_subjects("usage", 4).2, "usage.p.{{partition(4,1)}}.{{wildcard(1)}}");
        assert_eq!(customer_token("acme").len(), 16);
    }
}
