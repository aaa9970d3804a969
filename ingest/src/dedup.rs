//! Exact deduplication by (source, id) over the whole ledger.
//!
//! The index holds the 128-bit key of every event in the ledger. It is rebuilt at start by
//! reading only the `event_key` column of every segment, so it is exactly as durable as the
//! ledger itself: an event is a duplicate iff its key is in a durable segment (or earlier in the
//! batch being written). Keys enter the index only after their segment is durable.
//!
//! Memory: a `HashSet<u128>` costs 16 bytes per key plus hashbrown's control byte and load-factor
//! slack (about 18–37 bytes per key). The horizon today is the whole ledger; bounding it to the
//! open periods plus grace is the ingest issue's work (docs/ARCHITECTURE.md).

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// The keys are already uniform hashes: use their low 64 bits as the hash.
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        #[allow(clippy::cast_possible_truncation)]
        {
            self.0 = v as u64;
        }
    }
}

/// The set of keys of durable events.
#[derive(Debug, Default)]
pub struct DedupIndex {
    keys: HashSet<u128, BuildHasherDefault<KeyHasher>>,
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher")
    }
}

impl DedupIndex {
    /// Whether the key belongs to a durable event.
    pub fn contains(&self, key: u128) -> bool {
        self.keys.contains(&key)
    }

    /// Records keys whose segment is durable.
    pub fn extend(&mut self, keys: impl IntoIterator<Item = u128>) {
        self.keys.extend(keys);
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meterline_schemas::ledger::event_key;

    #[test]
    fn exact_membership() {
        let mut d = DedupIndex::default();
        d.extend([event_key("a", "1"), event_key("a", "2")]);
        assert!(d.contains(event_key("a", "1")));
        assert!(!d.contains(event_key("b", "1")));
        d.extend([event_key("a", "1")]);
        assert_eq!(d.len(), 2);
    }
}
