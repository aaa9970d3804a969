//! Exact deduplication by (source, id) over the dedup horizon.
//!
//! The index holds the 128-bit key ([`meterline_schemas::ledger::event_key`]) of every durable
//! event, grouped by the UTC month of the event time (the ledger's `month=` directories). It is
//! rebuilt at start from the `event_key` column of the partition's segments, so it is exactly as
//! durable as the ledger: an event is a duplicate iff its key is in a durable segment, or in a
//! segment prepared earlier that is being made durable (or earlier in its own batch). Keys enter
//! the index when their segment is prepared, before it is durable: the batch that drops a
//! duplicate because of such a key is acked only after that segment is durable (the write stage
//! acks in order), and a segment that never becomes durable stops the worker, whose index is
//! then dropped and rebuilt from the ledger by the next owner.
//!
//! # Horizon
//! Months inside the horizon (the open billing periods plus the grace window: by default the
//! current and the previous month) stay in memory. Older months are dropped from memory but not
//! from the ledger: an event for such a month (a late event) makes the pipeline load that month's
//! keys from the ledger first ([`DedupIndex::needs_load`]), so dedup stays exact for any age, and
//! only memory is bounded.
//!
//! # Memory: 16–22 bytes per key
//! Each month is a [`KeyTable`]: open addressing over buckets of 8 keys, 16 bytes per slot, no
//! control bytes (the keys are uniform hashes, so the key itself picks the bucket and the empty
//! slot is the value 0). It grows by 1.25× when 90 % full, so the load stays between 72 % and 90 %:
//! 17.8–22.2 bytes per key between growths. The table is 64 shards by the key's top bits, each
//! growing on its own, so a growth briefly holds one shard twice, not the whole table. A
//! `HashSet<u128>` doubles and keeps a control byte per slot: 19–39 bytes per key.

use std::collections::BTreeMap;

use meterline_schemas::period::PeriodLabel;

const BUCKET: usize = 8;
const MAX_LOAD_NUM: usize = 9;
const MAX_LOAD_DEN: usize = 10;
const MIN_BUCKETS: usize = 2;
/// How many inserts ahead [`DedupIndex::insert_batch`] prefetches a key's bucket.
const PREFETCH_AHEAD: usize = 8;
/// [`DedupIndex::insert_batch`] orders a batch's keys by this many top bits (16384 ranges: at
/// 10M keys, 11 KB of a table each).
const SWEEP_BITS: u32 = 14;
/// log2 of the shards of a table.
const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;

/// An exact set of 128-bit uniform hashes: [`SHARDS`] open-addressing tables, chosen by the
/// key's top bits, each growing on its own. A growth copies one shard (1/64 of the keys), so
/// the set never holds two copies of itself: at 10M keys a whole-table growth briefly took
/// ~400 MB instead of ~200 MB.
#[derive(Clone)]
pub struct KeyTable {
    shards: Box<[Shard]>,
    /// Whether the key 0 (which cannot be stored in a slot) is a member.
    has_zero: bool,
}

/// One shard: buckets of [`BUCKET`] slots, linear probing by bucket.
#[derive(Clone)]
struct Shard {
    /// `buckets × BUCKET` slots; 0 is empty.
    slots: Vec<u128>,
    buckets: usize,
    len: usize,
}

impl std::fmt::Debug for KeyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyTable").field("len", &self.len()).field("buckets", &self.buckets()).finish()
    }
}

impl Default for KeyTable {
    fn default() -> Self {
        KeyTable::with_capacity(0)
    }
}

/// A cache hint for the line holding `x`.
#[inline]
fn prefetch<T>(x: &T) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse"))]
    safe_arch::prefetch_t0(x);
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse")))]
    let _ = x;
}

#[inline]
fn shard_of(key: u128) -> usize {
    #[allow(clippy::cast_possible_truncation)] // the top SHARD_BITS bits
    {
        (key >> (128 - SHARD_BITS)) as usize
    }
}

impl KeyTable {
    /// A table sized for `n` keys without growing (spread evenly over the shards).
    pub fn with_capacity(n: usize) -> Self {
        let per_shard = n.div_ceil(SHARDS);
        KeyTable { shards: (0..SHARDS).map(|_| Shard::with_capacity(per_shard)).collect(), has_zero: false }
    }

    /// Whether `key` is a member.
    #[inline]
    pub fn contains(&self, key: u128) -> bool {
        if key == 0 {
            return self.has_zero;
        }
        self.shards[shard_of(key)].contains(key)
    }

    /// Adds `key`; returns whether it was new.
    #[inline]
    pub fn insert(&mut self, key: u128) -> bool {
        if key == 0 {
            let new = !self.has_zero;
            self.has_zero = true;
            return new;
        }
        self.shards[shard_of(key)].insert(key)
    }

    /// Makes room for `keys` (about to be inserted), so that inserting them does not grow a
    /// shard in between (at most one growth per shard, to at least the usual 1.25×).
    ///
    /// Callers that insert keys in key order must reserve first: the keys are uniform but a
    /// sorted prefix of them is not, and in a table grown along the way it piles up in the low
    /// buckets (measured: 1M sorted keys in batches of 100k took 14× as long as in random
    /// order). Into a table sized beforehand, key order is the fast order: each batch sweeps the
    /// table once (1M keys: 10× faster than random order).
    pub fn reserve_for(&mut self, keys: impl IntoIterator<Item = u128>) {
        let mut counts = [0usize; SHARDS];
        for k in keys {
            counts[shard_of(k)] += 1;
        }
        for (shard, n) in self.shards.iter_mut().zip(counts) {
            shard.reserve(n);
        }
    }

    /// Asks the CPU to bring `key`'s home bucket into the cache: a hint, with no effect on the
    /// table (a no-op where there is no prefetch instruction).
    #[inline]
    fn prefetch(&self, key: u128) {
        let shard = &self.shards[shard_of(key)];
        if let Some(slot) = shard.slots.get(shard.home(key) * BUCKET) {
            prefetch(slot);
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len).sum::<usize>() + usize::from(self.has_zero)
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of heap memory held.
    pub fn heap_bytes(&self) -> usize {
        self.shards.iter().map(|s| s.slots.capacity() * size_of::<u128>()).sum::<usize>() + self.shards.len() * size_of::<Shard>()
    }

    /// Buckets over all shards (grows with the table).
    fn buckets(&self) -> usize {
        self.shards.iter().map(|s| s.buckets).sum()
    }

    /// Every key, in no particular order.
    fn keys(&self) -> impl Iterator<Item = u128> + '_ {
        let zero = self.has_zero.then_some(0);
        self.shards.iter().flat_map(|s| s.slots.iter().copied().filter(|&k| k != 0)).chain(zero)
    }
}

impl Shard {
    #[allow(clippy::slow_vector_initialization)] // on purpose: see the comment
    fn with_buckets(buckets: usize) -> Self {
        // Zeroed by writing, not by `vec![0; n]`: that maps the kernel's shared zero page, so
        // the first probe of each page reads it and the insert that follows takes a second,
        // copy-on-write fault with a TLB shootdown on every core (measured: 7% of ingest's
        // samples at 10M keys, under `place`). Written zeros fault each page in once.
        let mut slots = Vec::with_capacity(buckets * BUCKET);
        slots.resize(buckets * BUCKET, 0);
        Shard { slots, buckets, len: 0 }
    }

    fn with_capacity(n: usize) -> Self {
        Shard::with_buckets((n * MAX_LOAD_DEN / MAX_LOAD_NUM / BUCKET + 1).max(MIN_BUCKETS))
    }

    /// First bucket for a key: the 64 bits below the shard bits mapped onto `buckets` without
    /// division.
    #[inline]
    fn home(&self, key: u128) -> usize {
        #[allow(clippy::cast_possible_truncation)] // the product's high half is < buckets
        {
            ((((key << SHARD_BITS) >> 64) as u64 as u128 * self.buckets as u128) >> 64) as usize
        }
    }

    #[inline]
    fn contains(&self, key: u128) -> bool {
        let mut b = self.home(key);
        loop {
            let bucket = &self.slots[b * BUCKET..(b + 1) * BUCKET];
            for &k in bucket {
                if k == key {
                    return true;
                }
                if k == 0 {
                    return false;
                }
            }
            b += 1;
            if b == self.buckets {
                b = 0;
            }
        }
    }

    #[inline]
    fn insert(&mut self, key: u128) -> bool {
        if (self.len + 1) * MAX_LOAD_DEN > self.slots.len() * MAX_LOAD_NUM {
            self.grow_to(self.buckets + (self.buckets / 4).max(1));
        }
        let new = self.place(key);
        self.len += usize::from(new);
        new
    }

    fn place(&mut self, key: u128) -> bool {
        let mut b = self.home(key);
        loop {
            for slot in &mut self.slots[b * BUCKET..(b + 1) * BUCKET] {
                if *slot == key {
                    return false;
                }
                if *slot == 0 {
                    *slot = key;
                    return true;
                }
            }
            b += 1;
            if b == self.buckets {
                b = 0;
            }
        }
    }

    fn reserve(&mut self, additional: usize) {
        let needed = self.len.saturating_add(additional);
        if needed.saturating_mul(MAX_LOAD_DEN) > self.slots.len() * MAX_LOAD_NUM {
            let buckets = Shard::with_capacity(needed).buckets.max(self.buckets + (self.buckets / 4).max(1));
            self.grow_to(buckets);
        }
    }

    fn grow_to(&mut self, buckets: usize) {
        let mut next = Shard::with_buckets(buckets);
        for &k in &self.slots {
            if k != 0 {
                next.place(k);
            }
        }
        next.len = self.len;
        *self = next;
    }
}

/// The dedup keys of durable events, by event month.
#[derive(Debug, Default)]
pub struct DedupIndex {
    months: BTreeMap<PeriodLabel, KeyTable>,
    /// Months with segments in the ledger whose keys are not in memory.
    unloaded: std::collections::BTreeSet<PeriodLabel>,
}

impl DedupIndex {
    /// Whether the keys of `month` must be loaded from the ledger before lookups in it.
    pub fn needs_load(&self, month: PeriodLabel) -> bool {
        self.unloaded.contains(&month)
    }

    /// Whether the key belongs to a durable event of `month`.
    ///
    /// # Panics
    /// Debug builds panic when `month` is unloaded: callers load it first ([`Self::needs_load`]).
    #[inline]
    pub fn contains(&self, month: PeriodLabel, key: u128) -> bool {
        debug_assert!(!self.unloaded.contains(&month), "month {month} must be loaded before a lookup");
        self.months.get(&month).is_some_and(|t| t.contains(key))
    }

    /// Adds a key of `month`; returns whether it was new (false: a duplicate). The month must be
    /// loaded, as for [`Self::contains`].
    #[inline]
    pub fn insert(&mut self, month: PeriodLabel, key: u128) -> bool {
        debug_assert!(!self.unloaded.contains(&month), "month {month} must be loaded before an insert");
        self.months.entry(month).or_default().insert(key)
    }

    /// Makes room for `keys` of `month`, about to be inserted (see [`KeyTable::reserve_for`]).
    pub fn reserve_for(&mut self, month: PeriodLabel, keys: impl IntoIterator<Item = u128>) {
        self.months.entry(month).or_default().reserve_for(keys);
    }

    /// Adds a batch's keys: `fresh[i]` is whether `keys[i]` was new (of two copies in the
    /// batch, the first is the fresh one). Each month's table first makes room for its keys (at
    /// most one growth per shard). The keys then go in by month and by their top bits: a table's
    /// home bucket grows with the key, so the inserts sweep each table once instead of jumping
    /// at random. A stable counting sort (copies keep their batch order) by [`SWEEP_BITS`] bits
    /// does it in two passes: at 10M keys, 100 batches of 100k went in 10 % faster than sorted
    /// by a comparison sort, which cost 3 ms per batch. Each key's bucket is prefetched
    /// [`PREFETCH_AHEAD`] inserts early: at 10M keys every insert misses the cache, and the
    /// misses then overlap (the same 100 batches, growth included: 1.75–1.9 s → 1.2–1.25 s;
    /// 4 or 16 ahead did as well, 32 worse).
    pub fn insert_batch(&mut self, keys: &[(PeriodLabel, u128)]) -> Vec<bool> {
        let mut months: Vec<PeriodLabel> = Vec::new();
        for &(m, _) in keys {
            if months.last() != Some(&m) && !months.contains(&m) {
                months.push(m);
            }
        }
        months.sort_unstable();
        for &m in &months {
            debug_assert!(!self.unloaded.contains(&m), "month {m} must be loaded before an insert");
            self.reserve_for(m, keys.iter().filter(|k| k.0 == m).map(|k| k.1));
        }
        let bin = |&(m, key): &(PeriodLabel, u128)| -> usize {
            let month = months.binary_search(&m).unwrap_or_default();
            #[allow(clippy::cast_possible_truncation)] // the top SWEEP_BITS bits
            let top = (key >> (128 - SWEEP_BITS)) as usize;
            (month << SWEEP_BITS) | top
        };
        let mut starts = vec![0u32; (months.len() << SWEEP_BITS) + 1];
        for k in keys {
            starts[bin(k) + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut sorted = vec![(0u128, 0u32); keys.len()];
        for (i, k) in keys.iter().enumerate() {
            let at = &mut starts[bin(k)];
            sorted[*at as usize] = (k.1, u32::try_from(i).unwrap_or(u32::MAX));
            *at += 1;
        }
        // After the scatter, `starts[b]` is where bin `b` ends: month `m`'s keys end where its
        // last bin does.
        let mut fresh = vec![false; keys.len()];
        let mut from = 0;
        for (m, &month) in months.iter().enumerate() {
            let to = starts[((m + 1) << SWEEP_BITS) - 1] as usize;
            let table = self.months.entry(month).or_default();
            let run = &sorted[from..to];
            for (j, &(key, i)) in run.iter().enumerate() {
                if let Some(&(ahead, _)) = run.get(j + PREFETCH_AHEAD) {
                    table.prefetch(ahead);
                }
                fresh[i as usize] = table.insert(key);
            }
            from = to;
        }
        fresh
    }

    /// Records keys of `month` whose segment is durable.
    pub fn extend(&mut self, month: PeriodLabel, keys: impl IntoIterator<Item = u128>) {
        let table = self.months.entry(month).or_default();
        for k in keys {
            table.insert(k);
        }
    }

    /// Installs the keys of a month read from the ledger.
    pub fn load(&mut self, month: PeriodLabel, keys: KeyTable) {
        self.unloaded.remove(&month);
        match self.months.get_mut(&month) {
            Some(t) => {
                for k in keys.keys() {
                    t.insert(k);
                }
            }
            None => {
                self.months.insert(month, keys);
            }
        }
    }

    /// Marks a month as present in the ledger but kept out of memory.
    pub fn mark_unloaded(&mut self, month: PeriodLabel) {
        if !self.months.contains_key(&month) {
            self.unloaded.insert(month);
        }
    }

    /// Drops months before `first` from memory (they stay in the ledger, and are reloaded when an
    /// event for them arrives). Returns the keys released.
    pub fn evict_before(&mut self, first: PeriodLabel) -> usize {
        let keep = self.months.split_off(&first);
        let old = std::mem::replace(&mut self.months, keep);
        let mut released = 0;
        for (m, t) in old {
            released += t.len();
            self.unloaded.insert(m);
        }
        released
    }

    /// Keys in memory.
    pub fn len(&self) -> usize {
        self.months.values().map(KeyTable::len).sum()
    }

    /// Whether no key is in memory.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of heap memory held by the keys.
    pub fn heap_bytes(&self) -> usize {
        self.months.values().map(KeyTable::heap_bytes).sum()
    }

    /// Months in memory.
    pub fn loaded_months(&self) -> Vec<PeriodLabel> {
        self.months.keys().copied().collect()
    }
}

/// The first month of the horizon: the month of `now - horizon`.
pub fn horizon_start(now: chrono::DateTime<chrono::Utc>, horizon: std::time::Duration) -> PeriodLabel {
    let back = chrono::Duration::from_std(horizon).unwrap_or(chrono::Duration::MAX);
    PeriodLabel::containing(now.checked_sub_signed(back).unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meterline_schemas::ledger::event_key;

    fn oct() -> PeriodLabel {
        "2026-10".parse().unwrap()
    }

    #[test]
    fn exact_membership() {
        let mut d = DedupIndex::default();
        d.extend(oct(), [event_key("a", "1"), event_key("a", "2")]);
        assert!(d.contains(oct(), event_key("a", "1")));
        assert!(!d.contains(oct(), event_key("b", "1")));
        assert!(!d.contains("2026-11".parse().unwrap(), event_key("a", "1")));
        d.extend(oct(), [event_key("a", "1")]);
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn table_is_exact_through_growth_and_wraparound() {
        let mut t = KeyTable::default();
        // Keys whose high bits put them all in the last bucket exercise the wrap to bucket 0.
        let crowded: Vec<u128> = (1..=40u128).map(|i| u128::MAX - i).collect();
        for &k in &crowded {
            assert!(t.insert(k));
        }
        let spread: Vec<u128> = (0..100_000u64).map(|i| event_key("s", &i.to_string())).collect();
        for &k in &spread {
            assert!(t.insert(k));
        }
        assert!(t.insert(0));
        assert!(!t.insert(0));
        assert_eq!(t.len(), 100_041);
        for &k in crowded.iter().chain(&spread) {
            assert!(t.contains(k));
            assert!(!t.insert(k));
        }
        assert!(t.contains(0));
        for i in 100_000..110_000u64 {
            assert!(!t.contains(event_key("s", &i.to_string())));
        }
    }

    #[test]
    fn sorted_batches_after_reserve_are_exact_and_compact() {
        let mut t = KeyTable::default();
        let mut all = Vec::new();
        for batch in 0..10u64 {
            let mut keys: Vec<u128> = (0..20_000u64).map(|i| event_key("s", &(batch * 20_000 + i).to_string())).collect();
            keys.sort_unstable();
            t.reserve_for(keys.iter().copied());
            let buckets = t.buckets();
            for &k in &keys {
                assert!(t.insert(k));
            }
            assert_eq!(t.buckets(), buckets, "no growth inside a reserved batch");
            all.extend(keys);
        }
        assert_eq!(t.len(), 200_000);
        assert!(all.iter().all(|&k| t.contains(k) && !t.insert(k)));
        #[allow(clippy::cast_precision_loss, clippy::float_arithmetic)] // a measurement
        let per_key = t.heap_bytes() as f64 / t.len() as f64;
        assert!(per_key <= 24.0, "{per_key} bytes per key");
    }

    #[test]
    fn a_batch_keeps_the_first_copy_of_each_key_across_months() {
        let nov: PeriodLabel = "2026-11".parse().unwrap();
        let mut d = DedupIndex::default();
        d.extend(oct(), [event_key("s", "durable")]);
        // Batch order: months interleaved, copies within the batch, one copy of a durable key,
        // and a durable key again under another month (the index is kept by event month).
        let mut keys = vec![(oct(), event_key("s", "durable"))];
        let mut expected = vec![false];
        for i in 0..30_000u64 {
            let month = if i % 3 == 0 { nov } else { oct() };
            keys.push((month, event_key("s", &i.to_string())));
            expected.push(true);
        }
        for i in (0..30_000u64).step_by(7) {
            let month = if i % 3 == 0 { nov } else { oct() };
            keys.push((month, event_key("s", &i.to_string())));
            expected.push(false);
        }
        keys.push((nov, event_key("s", "durable")));
        expected.push(true);
        let fresh = d.insert_batch(&keys);
        assert_eq!(fresh.len(), keys.len());
        let wrong: Vec<usize> = (0..keys.len()).filter(|&i| fresh[i] != expected[i]).collect();
        assert!(wrong.is_empty(), "{} keys misjudged, first at {:?}", wrong.len(), wrong.first());
        assert_eq!(d.len(), 30_002);
        assert!(keys.iter().all(|&(m, k)| d.contains(m, k)));
        // Inserting the batch again finds every key.
        assert!(d.insert_batch(&keys).iter().all(|&f| !f));
    }

    #[test]
    fn memory_per_key_stays_within_24_bytes() {
        // Measured at every size from 10k to 1M keys (every growth step is crossed).
        let mut t = KeyTable::default();
        let mut worst: f64 = 0.0;
        for i in 0..1_000_000u64 {
            t.insert(event_key("m", &i.to_string()));
            if i >= 10_000 && i % 997 == 0 {
                #[allow(clippy::cast_precision_loss)]
                let per = t.heap_bytes() as f64 / t.len() as f64;
                worst = worst.max(per);
            }
        }
        eprintln!("worst bytes per key between 10k and 1M keys: {worst:.2}");
        assert!(worst <= 24.0, "worst bytes per key {worst}");
        assert!(worst >= 16.0);
    }

    #[test]
    fn evicted_months_must_be_reloaded() {
        let mut d = DedupIndex::default();
        let sep: PeriodLabel = "2026-09".parse().unwrap();
        d.extend(sep, [event_key("a", "old")]);
        d.extend(oct(), [event_key("a", "new")]);
        assert_eq!(d.evict_before(oct()), 1);
        assert!(d.needs_load(sep));
        assert!(!d.needs_load(oct()));
        let mut keys = KeyTable::default();
        keys.insert(event_key("a", "old"));
        d.load(sep, keys);
        assert!(!d.needs_load(sep));
        assert!(d.contains(sep, event_key("a", "old")));
    }

    #[test]
    fn horizon_starts_a_month_back() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z").unwrap().to_utc();
        assert_eq!(horizon_start(now, std::time::Duration::from_secs(40 * 86_400)).to_string(), "2026-10");
    }
}
