//! Every aggregate of the rating in one pass over the ledger.
//!
//! DataFusion reads each ledger file (Parquet: filtered by time, meter or customer when that
//! narrows anything, only the needed columns), one task per core taking the next file until none
//! is left, and each task folds its rows here into accumulators per (subscription, meter, group
//! key): sum, count, min and max of the value, the first and last segment, the latest value by
//! (event time, event id), and the entries of the exact distinct count. A row's segment is the
//! file holding it (whose path below the ledger root is what the `segment` column holds), so that
//! column is not read. Rows find their subscription through an index of windows per customer, so
//! customers with several subscriptions (plan changes, mid-period starts) cost the same as the
//! rest: there is no join.
//!
//! Memory, not arithmetic, bounds this on large ledgers: rows hit customers and accumulators at
//! random, and 100k subscriptions × 5 meters of one-cache-line accumulators are far larger than
//! the caches. So the accumulator of group 0 of a subscription's first meters is found by
//! arithmetic (`subscription × SLOTS + meter`, no lookup), and a row's update is not applied at
//! once: updates are collected (two million at a time), grouped by accumulator range in one
//! counting pass, and applied range by range, so each range's accumulators are read from memory
//! once per batch of updates instead of once per row. The latest value keeps its time beside the
//! accumulator, so the many rows older than it cost one look.
//!
//! Why not SQL: the same aggregates as one DataFusion GROUP BY take about 13× the time of a plain
//! sum/count scan on 100M rows, almost all of it in `count(DISTINCT)` over ~17M (customer, value)
//! groups and `last_value(… ORDER BY …)` (docs/PERFORMANCE.md). Here the distinct count is exact
//! without a hash table per group: each row of a UNIQUE_COUNT meter leaves (accumulator, 64-bit
//! hash of the value, where the value is); the entries are sorted once, and entries with equal
//! hashes are told apart by comparing the values themselves, so a hash collision never merges two
//! values.
//!
//! Semantics match the SQL they replace: `count` counts rows (null values included), `sum`,
//! `min` and `max` skip null values (sum of none = 0, min/max of none = none), `latest` is the
//! value (possibly null) of the row with the greatest (event time, event id), the distinct count
//! skips null values, and a row counts in every window of its customer that contains its time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Decimal128Array, LargeStringArray, RecordBatch, StringArray, StringViewArray};
use arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use chrono::{DateTime, Utc};
use datafusion::prelude::{DataFrame, Expr, ParquetReadOptions, SessionConfig, SessionContext, col as df_col, lit};
use datafusion::scalar::ScalarValue;
use foldhash::fast::FixedState;
use futures::StreamExt;
use rust_decimal::Decimal;
use xxhash_rust::xxh3::xxh3_64;

use meterline_schemas::ledger::col;

use crate::aggregate::{Folded, MeterAggregates, SubWindow};
use crate::error::{Error, Result};

/// Maps on the per-row path hash with foldhash (fast on short strings and integers); the
/// results never depend on their iteration order.
type Map<K, V> = HashMap<K, V, FixedState>;

fn map<K, V>() -> Map<K, V> {
    HashMap::with_hasher(FixedState::default())
}

/// What to fold, besides the windows.
#[derive(Debug, Clone, Default)]
pub(crate) struct Wanted {
    /// Keep the group key (matrix prices); otherwise every row is in group "".
    pub grouped: bool,
    /// Meters whose distinct count is needed.
    pub unique_meters: Vec<String>,
    /// Meters whose latest value is needed.
    pub latest_meters: Vec<String>,
}

/// A window: `(start µs, end µs, subscription index)`.
type Window = (i64, i64, u32);

/// A customer's windows: the first, and the rest.
type Windows<'a> = (Window, &'a [Window]);

/// Windows by customer. The first window of a customer sits in the map's own bucket (one cache
/// miss per row for most customers); further windows are a range of `more`.
struct Index {
    by_customer: Map<String, (Window, u32, u32)>,
    /// The same, keyed by the inline string view of customer keys of at most 12 bytes: no string
    /// hashing or comparison for them.
    by_inline: Map<u128, (Window, u32, u32)>,
    more: Vec<Window>,
}

impl Index {
    fn new(windows: &[SubWindow]) -> Index {
        let mut grouped: Map<&str, Vec<Window>> = map();
        for (i, w) in windows.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            grouped.entry(w.customer.as_str()).or_default().push((w.start.timestamp_micros(), w.end.timestamp_micros(), i));
        }
        let (mut by_customer, mut by_inline) = (map(), map());
        let mut more = Vec::new();
        for (c, ws) in grouped {
            let off = u32::try_from(more.len()).unwrap_or(u32::MAX);
            more.extend_from_slice(&ws[1..]);
            let entry = (ws[0], off, u32::try_from(ws.len() - 1).unwrap_or(u32::MAX));
            if let Some(v) = inline_view(c) {
                by_inline.insert(v, entry);
            }
            by_customer.insert(c.to_owned(), entry);
        }
        Index { by_customer, by_inline, more }
    }

    fn windows(&self, entry: Option<&(Window, u32, u32)>) -> Option<Windows<'_>> {
        entry.map(|(first, off, n)| (*first, &self.more[*off as usize..(*off + *n) as usize]))
    }

    /// The windows of customer `c`: the first, and the rest.
    fn of(&self, c: &str) -> Option<Windows<'_>> {
        self.windows(self.by_customer.get(c))
    }
}

/// The columns the fold reads, in this order (a null string in place of a column not needed).
/// The segment of a row is the file holding it, so its column is not read.
pub(crate) fn columns(wanted: &Wanted) -> Vec<Expr> {
    let none = |name: &str| lit(ScalarValue::Utf8(None)).alias(name);
    let mut c: Vec<Expr> = [col::CUSTOMER, col::METER, col::EVENT_TIME, col::VALUE].into_iter().map(df_col).collect();
    c.push(if wanted.unique_meters.is_empty() { none("no_unique") } else { df_col(col::UNIQUE_VALUE) });
    c.push(if wanted.latest_meters.is_empty() { none("no_event_id") } else { df_col(col::EVENT_ID) });
    c.push(if wanted.grouped { df_col(col::GROUP_KEY) } else { none("no_group") });
    c
}

/// Strings interned per fold: index ↔ text.
struct Interner {
    texts: Vec<String>,
    ids: Map<String, u32>,
}

impl Default for Interner {
    fn default() -> Self {
        Interner { texts: Vec::new(), ids: map() }
    }
}

impl Interner {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(i) = self.ids.get(s) {
            return *i;
        }
        let i = u32::try_from(self.texts.len()).unwrap_or(u32::MAX);
        self.texts.push(s.to_owned());
        self.ids.insert(s.to_owned(), i);
        i
    }
}

/// The latest row of an accumulator.
#[derive(Clone)]
struct Latest {
    time: i64,
    id: String,
    value: Option<i128>,
}

/// What every row updates in its accumulator: exactly one cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Hot {
    sum: i128,
    /// The smallest value; greater than `max` while no (non-null) value was added.
    min: i128,
    max: i128,
    /// Rows, null values included.
    count: u64,
    /// The first and last segment of the rows, by name. In the fold of one scan, ranks in the
    /// scan's files sorted by name (so numeric order is name order); in the total, ids of its
    /// segment names, compared as text.
    seg_min: u32,
    seg_max: u32,
}

const EMPTY: Hot = Hot { sum: 0, min: i128::MAX, max: i128::MIN, count: 0, seg_min: u32::MAX, seg_max: 0 };

impl Hot {
    fn valued(&self) -> bool {
        self.min <= self.max
    }

    fn add_values(&mut self, o: &Hot) -> Result<()> {
        self.count += o.count;
        self.sum = self.sum.checked_add(o.sum).ok_or_else(|| overflow("sum"))?;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        Ok(())
    }
}

/// One row's update of its accumulator, deferred (24 bytes): the updates of many rows are
/// applied together, grouped by accumulator range, so that each group's accumulators stay in
/// cache while it is applied (the rows of a large ledger hit accumulators at random).
#[derive(Clone, Copy, Default)]
struct Update {
    acc: u32,
    /// The segment's rank; [`NULL_VALUE`] set when the value is null.
    seg: u32,
    lo: u64,
    hi: u64,
}

const NULL_VALUE: u32 = 1 << 31;

impl Update {
    fn new(acc: u32, seg: u32, v: Option<i128>) -> Update {
        match v {
            Some(v) => {
                let u = v as u128;
                Update { acc, seg, lo: u as u64, hi: (u >> 64) as u64 }
            }
            None => Update { acc, seg: seg | NULL_VALUE, lo: 0, hi: 0 },
        }
    }

    fn apply(&self, hot: &mut [Hot]) -> Result<()> {
        let h = &mut hot[self.acc as usize];
        h.count += 1;
        let seg = self.seg & !NULL_VALUE;
        h.seg_min = h.seg_min.min(seg);
        h.seg_max = h.seg_max.max(seg);
        if self.seg & NULL_VALUE == 0 {
            let v = ((u128::from(self.hi) << 64) | u128::from(self.lo)) as i128;
            h.sum = h.sum.checked_add(v).ok_or_else(|| overflow("sum"))?;
            h.min = h.min.min(v);
            h.max = h.max.max(v);
        }
        Ok(())
    }
}

/// Updates held before they are applied (48 MB): about four per accumulator of 500k.
const FLUSH: usize = 1 << 21;
/// Below this many updates, or accumulators, they are applied in arrival order.
const DIRECT: usize = 1 << 14;
/// Accumulator ranges the updates are grouped by when applied: 100k subscriptions with
/// [`SLOTS`] accumulators of 64 bytes are 51 MB, so a range is about 200 KB (the L2 holds 2 MB).
const RANGE_BITS: u32 = 8;

/// Meters per subscription with a direct accumulator at `subscription × SLOTS + meter`.
const SLOTS: usize = 8;

/// One distinct-count entry: accumulator, value length, hash of the value, offset of the value
/// in the arena (24 bytes).
type Entry = (u32, u32, u64, u64);

/// Accumulators per (subscription, meter, group): the fold of one scan's stream, or the total.
/// Group 0 (no group key) of the first [`SLOTS`] meters has a direct accumulator per
/// subscription (no lookup); other (meter, group) pairs get accumulators after those.
struct Partial {
    meters: Interner,
    groups: Interner,
    /// Segment names (the total only; a scan's fold has ranks, see [`Hot`]).
    segments: Interner,
    unique_meter: Vec<bool>,
    latest_meter: Vec<bool>,
    /// Subscriptions (windows): the direct accumulators are the first `subs × SLOTS`.
    subs: usize,
    hot: Vec<Hot>,
    /// Latest row per accumulator (LATEST meters only).
    latest: Vec<Option<Box<Latest>>>,
    /// Its time, beside it (`i64::MIN`: none), so older rows are skipped without following the box.
    latest_time: Vec<i64>,
    /// (meter, group, accumulator) of the other pairs, per subscription, scanned linearly.
    keys: Vec<Vec<(u32, u32, u32)>>,
    /// (subscription, meter, group) of the other accumulators, from `subs × SLOTS` on.
    others: Vec<(u32, u32, u32)>,
    entries: Vec<Entry>,
    /// The values of the entries, back to back (a batch's column would keep 16 bytes per row
    /// of every meter alive).
    arena: Vec<u8>,
    scale: Option<i8>,
    updates: Vec<Update>,
    sorted: Vec<Update>,
    pairs: Vec<(u32, u32)>,
}

/// A string column of any of arrow's string layouts.
enum Strs<'a> {
    Utf8(&'a StringArray),
    Large(&'a LargeStringArray),
    View(&'a StringViewArray),
}

impl<'a> Strs<'a> {
    fn of(a: &'a ArrayRef) -> Result<Strs<'a>> {
        Ok(match a.data_type() {
            DataType::Utf8 => Strs::Utf8(a.as_string::<i32>()),
            DataType::LargeUtf8 => Strs::Large(a.as_string::<i64>()),
            DataType::Utf8View => Strs::View(a.as_string_view()),
            other => return Err(Error::Ledger { location: "ledger".into(), message: format!("unexpected string column type {other}") }),
        })
    }

    /// Whether rows `i` and `j` hold the same string. String views are compared first: equal
    /// views are equal strings (the same bytes, or the same inline text), and two unequal inline
    /// views (at most 12 bytes) are unequal strings; only longer strings are compared byte-wise.
    fn same(&self, i: usize, j: usize) -> bool {
        if let Strs::View(a) = self {
            let (x, y) = (a.views()[i], a.views()[j]);
            if x == y {
                return a.is_valid(i) == a.is_valid(j);
            }
            if (x as u32) <= 12 && (y as u32) <= 12 {
                return false;
            }
        }
        self.get(i) == self.get(j)
    }

    /// The string at `i` as its inline view, when it is a string view of at most 12 bytes.
    fn inline(&self, i: usize) -> Option<u128> {
        match self {
            Strs::View(a) if a.is_valid(i) && (a.views()[i] as u32) <= 12 => Some(a.views()[i]),
            _ => None,
        }
    }

    fn get(&self, i: usize) -> Option<&'a str> {
        match self {
            Strs::Utf8(a) => a.is_valid(i).then(|| a.value(i)),
            Strs::Large(a) => a.is_valid(i).then(|| a.value(i)),
            Strs::View(a) => a.is_valid(i).then(|| a.value(i)),
        }
    }
}

/// The inline string view of `s` (arrow's layout: length in the low 32 bits, then the bytes, zero
/// padded), when it has at most 12 bytes.
fn inline_view(s: &str) -> Option<u128> {
    let b = s.as_bytes();
    (b.len() <= 12).then(|| {
        let mut v = [0u8; 16];
        v[..4].copy_from_slice(&u32::try_from(b.len()).unwrap_or(0).to_le_bytes());
        v[4..4 + b.len()].copy_from_slice(b);
        u128::from_le_bytes(v)
    })
}

/// Any string column as one of the layouts [`Strs`] reads (dictionaries are unpacked).
fn plain_strings(a: &ArrayRef) -> Result<ArrayRef> {
    Ok(match a.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Arc::clone(a),
        _ => arrow::compute::cast(a, &DataType::Utf8)?,
    })
}

fn overflow(what: &str) -> Error {
    Error::Overflow { what: format!("{what} of ledger values exceeds 128 bits") }
}

impl Partial {
    fn new(wanted: &Wanted, subs: usize) -> Partial {
        let mut p = Partial {
            meters: Interner::default(),
            groups: Interner::default(),
            segments: Interner::default(),
            unique_meter: Vec::new(),
            latest_meter: Vec::new(),
            subs,
            hot: Vec::new(),
            latest: Vec::new(),
            latest_time: Vec::new(),
            keys: Vec::new(),
            others: Vec::new(),
            entries: Vec::new(),
            arena: Vec::new(),
            scale: None,
            updates: Vec::new(),
            sorted: Vec::new(),
            pairs: Vec::new(),
        };
        for m in wanted.unique_meters.iter().chain(&wanted.latest_meters) {
            p.meter(m);
        }
        for m in &wanted.unique_meters {
            let i = p.meters.ids[m.as_str()] as usize;
            p.unique_meter[i] = true;
        }
        for m in &wanted.latest_meters {
            let i = p.meters.ids[m.as_str()] as usize;
            p.latest_meter[i] = true;
        }
        p.groups.id("");
        p
    }

    fn meter(&mut self, m: &str) -> u32 {
        let i = self.meters.id(m);
        if self.unique_meter.len() < self.meters.texts.len() {
            self.unique_meter.push(false);
            self.latest_meter.push(false);
        }
        i
    }

    fn direct(&self) -> usize {
        self.subs * SLOTS
    }

    /// The direct accumulators, allocated at the first row (a fold may see none).
    fn ensure_direct(&mut self) {
        if self.hot.len() < self.direct() {
            self.hot.resize(self.direct(), EMPTY);
        }
    }

    /// (subscription, meter, group) of accumulator `a`.
    fn ident(&self, a: usize) -> (u32, u32, u32) {
        if a < self.direct() {
            (u32::try_from(a / SLOTS).unwrap_or(u32::MAX), (a % SLOTS) as u32, 0)
        } else {
            self.others[a - self.direct()]
        }
    }

    /// The accumulator of (subscription, meter, group): direct, or looked up (created when new).
    fn acc(&mut self, sub: u32, meter: u32, group: u32) -> u32 {
        if group == 0 && (meter as usize) < SLOTS {
            return u32::try_from(sub as usize * SLOTS + meter as usize).unwrap_or(u32::MAX);
        }
        let s = sub as usize;
        if self.keys.len() <= s {
            self.keys.resize_with(s + 1, Vec::new);
        }
        if let Some(&(_, _, a)) = self.keys[s].iter().find(|(m, g, _)| *m == meter && *g == group) {
            return a;
        }
        self.ensure_direct();
        let a = u32::try_from(self.hot.len()).unwrap_or(u32::MAX);
        self.keys[s].push((meter, group, a));
        self.others.push((sub, meter, group));
        self.hot.push(EMPTY);
        a
    }

    fn batch(&mut self, b: &RecordBatch, seg: u32, index: &Index, wanted: &Wanted) -> Result<()> {
        let n = b.num_rows();
        if n == 0 {
            return Ok(());
        }
        self.ensure_direct();
        let cols: Vec<ArrayRef> = [0, 1, 4, 5, 6].iter().map(|i| plain_strings(b.column(*i))).collect::<Result<_>>()?;
        let (customers, meters) = (Strs::of(&cols[0])?, Strs::of(&cols[1])?);
        let (uniques, ids, groups) = (Strs::of(&cols[2])?, Strs::of(&cols[3])?, Strs::of(&cols[4])?);
        let times = arrow::compute::cast(b.column(2), &DataType::Timestamp(TimeUnit::Microsecond, None))?;
        let times = times.as_primitive::<TimestampMicrosecondType>();
        let values: &Decimal128Array = match b.column(3).data_type() {
            DataType::Decimal128(_, s) => {
                if *self.scale.get_or_insert(*s) != *s {
                    return Err(Error::Ledger { location: "ledger".into(), message: format!("value scale {s} differs between segments") });
                }
                b.column(3).as_primitive()
            }
            other => return Err(Error::Ledger { location: "ledger".into(), message: format!("unexpected value type {other}") }),
        };
        // 1. Each row's windows: (row, subscription) for every window holding its time. A loop
        // of independent lookups, so the cache misses of many rows overlap. Consecutive rows
        // often share customer and meter: those are looked up once.
        let mut pairs = std::mem::take(&mut self.pairs);
        pairs.clear();
        let mut last_customer: Option<(usize, Option<Windows<'_>>)> = None;
        for i in 0..n {
            let found = match last_customer {
                Some((j, ws)) if customers.same(i, j) => ws,
                _ => {
                    let ws = match customers.inline(i) {
                        Some(v) => index.windows(index.by_inline.get(&v)),
                        None => customers.get(i).and_then(|c| index.of(c)),
                    };
                    last_customer = Some((i, ws));
                    ws
                }
            };
            let Some((first, rest)) = found else { continue };
            let t = times.value(i);
            let row = u32::try_from(i).unwrap_or(u32::MAX);
            if t >= first.0 && t < first.1 {
                pairs.push((row, first.2));
            }
            for &(start, end, sub) in rest {
                if t >= start && t < end {
                    pairs.push((row, sub));
                }
            }
        }
        // 2. Each pair's accumulator (arithmetic for most), its latest row and distinct-count
        // entry when its meter needs them, and its deferred update.
        let mut last_meter: Option<(usize, u32)> = None;
        let mut last_group: Option<(usize, u32)> = None;
        for &(row, sub) in &pairs {
            let i = row as usize;
            let meter = match last_meter {
                Some((j, id)) if meters.same(i, j) => id,
                _ => {
                    let id = self.meter(meters.get(i).unwrap_or_default());
                    last_meter = Some((i, id));
                    id
                }
            };
            let group = if wanted.grouped {
                match last_group {
                    Some((j, id)) if groups.same(i, j) => id,
                    _ => {
                        let id = self.groups.id(groups.get(i).unwrap_or_default());
                        last_group = Some((i, id));
                        id
                    }
                }
            } else {
                0
            };
            let a = self.acc(sub, meter, group);
            let v = values.is_valid(i).then(|| values.value(i));
            if self.unique_meter[meter as usize]
                && let Some(u) = uniques.get(i)
            {
                let len = u32::try_from(u.len()).map_err(|_| overflow("unique value length"))?;
                self.entries.push((a, len, xxh3_64(u.as_bytes()), self.arena.len() as u64));
                self.arena.extend_from_slice(u.as_bytes());
            }
            if self.latest_meter[meter as usize] {
                if self.latest.len() < self.hot.len() {
                    self.latest.resize(self.hot.len(), None);
                    self.latest_time.resize(self.hot.len(), i64::MIN);
                }
                // Most rows are older than the latest so far: one look at its time decides.
                let t = times.value(i);
                if t < self.latest_time[a as usize] {
                    self.updates.push(Update::new(a, seg, v));
                    continue;
                }
                self.latest_time[a as usize] = t;
                let id = ids.get(i).unwrap_or_default();
                let slot = &mut self.latest[a as usize];
                let newer = slot.as_ref().is_none_or(|l| (t, id) > (l.time, l.id.as_str()));
                if newer {
                    match slot {
                        Some(l) => {
                            l.time = t;
                            l.id.clear();
                            l.id.push_str(id);
                            l.value = v;
                        }
                        None => *slot = Some(Box::new(Latest { time: t, id: id.to_owned(), value: v })),
                    }
                }
            }
            self.updates.push(Update::new(a, seg, v));
        }
        self.pairs = pairs;
        if self.updates.len() >= FLUSH {
            self.flush()?;
        }
        Ok(())
    }

    /// Applies the deferred updates, grouped by accumulator range (one counting pass, one
    /// scatter) so each range's accumulators are read from memory once per flush.
    fn flush(&mut self) -> Result<()> {
        let n = self.updates.len();
        if n < DIRECT || self.hot.len() < DIRECT {
            for u in &self.updates {
                u.apply(&mut self.hot)?;
            }
            self.updates.clear();
            return Ok(());
        }
        let bits = usize::BITS - (self.hot.len() - 1).leading_zeros();
        let shift = bits.saturating_sub(RANGE_BITS);
        let mut start = vec![0usize; (1 << RANGE_BITS) + 1];
        for u in &self.updates {
            start[(u.acc >> shift) as usize + 1] += 1;
        }
        for r in 1..start.len() {
            start[r] += start[r - 1];
        }
        if self.sorted.len() < n {
            self.sorted.resize(n, Update::default());
        }
        for u in &self.updates {
            let r = (u.acc >> shift) as usize;
            self.sorted[start[r]] = *u;
            start[r] += 1;
        }
        for u in &self.sorted[..n] {
            u.apply(&mut self.hot)?;
        }
        self.updates.clear();
        Ok(())
    }

    /// Adds `other`, the fold of one scan whose segment ranks are `names`' indices, into this
    /// total.
    /// Adds `other` (a task's fold of other files) into this one; marks the windows it has rows
    /// of in `touched`.
    fn merge(&mut self, mut other: Partial, names: &[String], touched: &mut [bool]) -> Result<()> {
        match (self.scale, other.scale) {
            (Some(a), Some(b)) if a != b => {
                return Err(Error::Ledger { location: "ledger".into(), message: format!("value scale {b} differs from {a}") });
            }
            (None, s) => self.scale = s,
            _ => {}
        }
        other.flush()?;
        let meters: Vec<u32> = other.meters.texts.iter().map(|m| self.meter(m)).collect();
        for (i, m) in meters.iter().enumerate() {
            self.unique_meter[*m as usize] |= other.unique_meter[i];
            self.latest_meter[*m as usize] |= other.latest_meter[i];
        }
        let groups: Vec<u32> = other.groups.texts.iter().map(|g| self.groups.id(g)).collect();
        let segs: Vec<u32> = names.iter().map(|s| self.segments.id(s)).collect();
        let mut acc_map = vec![u32::MAX; other.hot.len()];
        for (oa, oh) in other.hot.iter().enumerate() {
            if oh.count == 0 {
                continue;
            }
            let (sub, meter, group) = other.ident(oa);
            if let Some(t) = touched.get_mut(sub as usize) {
                *t = true;
            }
            self.ensure_direct();
            let a = self.acc(sub, meters[meter as usize], groups[group as usize]);
            let (first, last) = (segs[oh.seg_min as usize], segs[oh.seg_max as usize]);
            let h = &mut self.hot[a as usize];
            if h.count == 0 {
                *h = Hot { seg_min: first, seg_max: last, ..*oh };
            } else {
                h.add_values(oh)?;
                let text = |s: u32| self.segments.texts[s as usize].as_str();
                if text(first) < text(h.seg_min) {
                    h.seg_min = first;
                }
                if text(last) > text(h.seg_max) {
                    h.seg_max = last;
                }
            }
            if let Some(l) = other.latest.get_mut(oa).and_then(Option::take) {
                if self.latest.len() < self.hot.len() {
                    self.latest.resize(self.hot.len(), None);
                    self.latest_time.resize(self.hot.len(), i64::MIN);
                }
                let slot = &mut self.latest[a as usize];
                if slot.as_ref().is_none_or(|x| (l.time, l.id.as_str()) > (x.time, x.id.as_str())) {
                    self.latest_time[a as usize] = l.time;
                    *slot = Some(l);
                }
            }
            acc_map[oa] = a;
        }
        let offset = self.arena.len() as u64;
        self.entries.extend(other.entries.into_iter().map(|(a, len, h, off)| (acc_map[a as usize], len, h, off + offset)));
        self.arena.extend_from_slice(&other.arena);
        Ok(())
    }

    /// Exact distinct counts per accumulator (module doc). The entries are left sorted and
    /// distinct, their values packed into a new arena: a state that keeps folding (current
    /// spend) holds each distinct value once, not once per row. Large sets are split by
    /// accumulator range and counted on two threads (the sort is the costly part).
    fn distinct_counts(&mut self) -> Result<Vec<u64>> {
        let mut counts = vec![0u64; self.hot.len()];
        let entries = std::mem::take(&mut self.entries);
        let old = std::mem::take(&mut self.arena);
        let halves = if entries.len() < PARALLEL_DISTINCT {
            vec![distinct(entries, &old)]
        } else {
            let mid = u32::try_from(self.hot.len() / 2).unwrap_or(u32::MAX);
            let (lo, hi): (Vec<Entry>, Vec<Entry>) = entries.into_iter().partition(|e| e.0 < mid);
            std::thread::scope(|s| {
                let other = s.spawn(|| distinct(hi, &old));
                let first = distinct(lo, &old);
                other.join().map(|second| vec![first, second])
            })
            .map_err(|_| Error::Ledger { location: "ledger".into(), message: "distinct count thread panicked".into() })?
        };
        for (kept, arena) in halves {
            let offset = self.arena.len() as u64;
            for e in &kept {
                counts[e.0 as usize] += 1;
            }
            self.entries.extend(kept.into_iter().map(|(a, len, h, off)| (a, len, h, off + offset)));
            self.arena.extend_from_slice(&arena);
        }
        Ok(counts)
    }
}

/// Entries above which [`Partial::distinct_counts`] uses two threads.
const PARALLEL_DISTINCT: usize = 1 << 20;

/// The distinct entries of `entries` (values in `arena`), sorted by (accumulator, hash), with
/// their values packed into a new arena: equal hashes are told apart by comparing the values.
fn distinct(mut entries: Vec<Entry>, arena: &[u8]) -> (Vec<Entry>, Vec<u8>) {
    entries.sort_unstable_by_key(|e| (e.0, e.2));
    let value = |e: &Entry| &arena[e.3 as usize..e.3 as usize + e.1 as usize];
    let (mut kept, mut packed): (Vec<Entry>, Vec<u8>) = (Vec::with_capacity(entries.len()), Vec::new());
    let mut vs: Vec<(&[u8], &Entry)> = Vec::new();
    for run in entries.chunk_by(|a, b| (a.0, a.2) == (b.0, b.2)) {
        vs.clear();
        vs.extend(run.iter().map(|e| (value(e), e)));
        if vs.len() > 1 {
            vs.sort_unstable_by(|a, b| a.0.cmp(b.0));
            vs.dedup_by(|a, b| a.0 == b.0);
        }
        for (v, e) in &vs {
            kept.push((e.0, e.1, e.2, packed.len() as u64));
            packed.extend_from_slice(v);
        }
    }
    (kept, packed)
}

/// How one scan filters the ledger, besides the windows (which the fold checks row by row).
#[derive(Debug, Clone, Default)]
pub(crate) struct Scan {
    /// Rows in `[start, end)` only (lets Parquet statistics skip files).
    pub time: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Rows of these meters only.
    pub meters: Option<Vec<String>>,
    /// Rows of these customers only.
    pub customers: Option<Vec<String>>,
}

/// The segment name of a ledger file: its path below the ledger root (`month=…/seg-….parquet`),
/// which is what the ledger's `segment` column holds.
pub(crate) fn segment_name(file: &Path) -> String {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match file.parent().and_then(Path::file_name) {
        Some(dir) => format!("{}/{name}", dir.to_string_lossy()),
        None => name,
    }
}

/// One file's rows as the fold reads them.
async fn scan_file(ctx: &SessionContext, file: &Path, scan: &Scan, wanted: &Wanted) -> Result<DataFrame> {
    let mut df = ctx.read_parquet(file.display().to_string(), ParquetReadOptions::default()).await?;
    if let Some((start, end)) = scan.time {
        let ts = |t: DateTime<Utc>| lit(ScalarValue::TimestampMicrosecond(Some(t.timestamp_micros()), Some("UTC".into())));
        df = df.filter(df_col(col::EVENT_TIME).gt_eq(ts(start)).and(df_col(col::EVENT_TIME).lt(ts(end))))?;
    }
    if let Some(meters) = &scan.meters {
        df = df.filter(df_col(col::METER).in_list(meters.iter().map(|m| lit(m.clone())).collect(), false))?;
    }
    if let Some(customers) = &scan.customers {
        df = df.filter(df_col(col::CUSTOMER).in_list(customers.iter().map(|c| lit(c.clone())).collect(), false))?;
    }
    Ok(df.select(columns(wanted))?)
}

/// Accumulators of any number of scans over one set of windows: [`FoldState::add`] folds more
/// ledger files in (the current spend adds each new segment once), [`FoldState::aggregates`]
/// reads the aggregates so far without consuming them.
pub(crate) struct FoldState {
    index: Arc<Index>,
    wanted: Arc<Wanted>,
    windows: usize,
    total: Partial,
    /// Windows that got rows since [`FoldState::take_touched`] was last called.
    touched: Vec<bool>,
}

impl FoldState {
    pub(crate) fn new(windows: &[SubWindow], wanted: Wanted) -> FoldState {
        let total = Partial::new(&wanted, windows.len());
        FoldState {
            index: Arc::new(Index::new(windows)),
            wanted: Arc::new(wanted),
            windows: windows.len(),
            total,
            touched: vec![false; windows.len()],
        }
    }

    /// Which windows got rows since the last call (entry `i` for `windows[i]`), and starts over.
    pub(crate) fn take_touched(&mut self) -> Vec<bool> {
        std::mem::replace(&mut self.touched, vec![false; self.windows])
    }

    /// Folds the rows of `files` that `scan` selects in: one task per core, each taking the
    /// next file until none is left (so a row's segment is its file), merged when all are done.
    pub(crate) async fn add(&mut self, files: &[PathBuf], scan: &Scan) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        let mut order: Vec<(String, PathBuf)> = files.iter().map(|f| (segment_name(f), f.clone())).collect();
        order.sort();
        let names: Vec<String> = order.iter().map(|(n, _)| n.clone()).collect();
        let paths: Arc<Vec<PathBuf>> = Arc::new(order.into_iter().map(|(_, p)| p).collect());
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let ctx = Arc::new(SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1)));
        let scan = Arc::new(scan.clone());
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut tasks = Vec::new();
        for _ in 0..cores.min(paths.len()) {
            let (index, wanted, paths, next, ctx, scan) = (
                Arc::clone(&self.index),
                Arc::clone(&self.wanted),
                Arc::clone(&paths),
                Arc::clone(&next),
                Arc::clone(&ctx),
                Arc::clone(&scan),
            );
            let subs = self.windows;
            tasks.push(tokio::spawn(async move {
                let mut p = Partial::new(&wanted, subs);
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(file) = paths.get(i) else { break };
                    let seg = u32::try_from(i).map_err(|_| overflow("number of segments"))?;
                    let mut stream = scan_file(&ctx, file, &scan, &wanted).await?.execute_stream().await?;
                    while let Some(b) = stream.next().await {
                        p.batch(&b?, seg, &index, &wanted)?;
                    }
                }
                Ok::<Partial, Error>(p)
            }));
        }
        for t in tasks {
            let p =
                t.await.map_err(|e| Error::Ledger { location: "ledger".into(), message: format!("aggregation task failed: {e}") })??;
            self.total.merge(p, &names, &mut self.touched)?;
        }
        Ok(())
    }

    /// The aggregates so far per window, meter and group key: entry `i` holds `windows[i]`'s
    /// (meter, group, aggregates).
    pub(crate) fn aggregates(&mut self) -> Result<Folded> {
        self.aggregates_of(None)
    }

    /// [`FoldState::aggregates`] of the windows `only` marks (all when `None`); the others' entries
    /// are empty.
    pub(crate) fn aggregates_of(&mut self, only: Option<&[bool]>) -> Result<Folded> {
        let total = &mut self.total;
        let uniques = total.distinct_counts()?;
        let scale = u32::try_from(total.scale.unwrap_or(0)).map_err(|_| Error::Overflow { what: "negative decimal scale".into() })?;
        let dec = |v: i128| {
            Decimal::try_from_i128_with_scale(v, scale)
                .map(|d| d.normalize())
                .map_err(|_| Error::Overflow { what: format!("aggregate {v}e-{scale}") })
        };
        let mut out: Folded = vec![Vec::new(); self.windows];
        for (i, h) in total.hot.iter().enumerate() {
            if h.count == 0 {
                continue;
            }
            let (sub, meter, group) = total.ident(i);
            if only.is_some_and(|o| !o.get(sub as usize).copied().unwrap_or(false)) {
                continue;
            }
            let mut segments = vec![total.segments.texts[h.seg_min as usize].clone()];
            if h.seg_max != h.seg_min {
                segments.push(total.segments.texts[h.seg_max as usize].clone());
            }
            let valued = h.valued();
            let agg = MeterAggregates {
                sum: dec(h.sum)?,
                count: h.count,
                min: if valued { Some(dec(h.min)?) } else { None },
                max: if valued { Some(dec(h.max)?) } else { None },
                unique: uniques[i],
                latest: total.latest.get(i).and_then(Option::as_ref).and_then(|l| l.value).map(dec).transpose()?,
                segments,
            };
            let (meter, group) = (total.meters.texts[meter as usize].clone(), total.groups.texts[group as usize].clone());
            out[sub as usize].push((meter, group, agg));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Updates applied grouped by accumulator range (the path of large folds) give the same
    /// accumulators as applying them one by one in arrival order.
    #[test]
    fn grouped_updates_equal_updates_in_order() {
        let mut rng = fastrand::Rng::with_seed(7);
        let subs = 5_000; // 40,000 direct accumulators: above DIRECT
        let (mut grouped, mut plain) = (Partial::new(&Wanted::default(), subs), Partial::new(&Wanted::default(), subs));
        grouped.ensure_direct();
        plain.ensure_direct();
        for _ in 0..3 {
            let updates: Vec<Update> = (0..60_000)
                .map(|_| {
                    let acc = rng.u32(..40_000);
                    let v = rng.bool().then(|| i128::from(rng.i64(..)) * i128::from(rng.i32(..)));
                    Update::new(acc, rng.u32(..100), v)
                })
                .collect();
            grouped.updates.extend_from_slice(&updates);
            grouped.flush().unwrap();
            for u in &updates {
                u.apply(&mut plain.hot).unwrap();
            }
        }
        let key = |h: &Hot| (h.sum, h.min, h.max, h.count, h.seg_min, h.seg_max);
        assert!(grouped.hot.iter().map(key).eq(plain.hot.iter().map(key)));
        assert!(grouped.hot.iter().filter(|h| h.valued()).count() > 30_000);
    }

    /// Above PARALLEL_DISTINCT entries the count runs in two halves by accumulator: the same
    /// counts as a set per accumulator, and counting again gives the same.
    #[test]
    fn distinct_counts_in_two_halves_equal_sets() {
        let mut rng = fastrand::Rng::with_seed(11);
        let mut p = Partial::new(&Wanted::default(), 100);
        p.ensure_direct();
        let mut want = vec![std::collections::BTreeSet::new(); p.hot.len()];
        for _ in 0..PARALLEL_DISTINCT + 50_000 {
            let (a, n) = (rng.u32(..800), rng.u16(..3_000));
            let v = format!("u{n}");
            // A function of the value that collides a lot (many values share it): values decide.
            p.entries.push((a, u32::try_from(v.len()).unwrap(), u64::from(n % 4), p.arena.len() as u64));
            p.arena.extend_from_slice(v.as_bytes());
            want[a as usize].insert(v);
        }
        let want: Vec<u64> = want.iter().map(|s| s.len() as u64).collect();
        assert_eq!(p.distinct_counts().unwrap(), want);
        assert!(p.entries.len() < PARALLEL_DISTINCT);
        assert_eq!(p.distinct_counts().unwrap(), want);
    }

    /// Entries whose hashes are equal but whose values differ (a 64-bit collision, which random
    /// data cannot produce in a test) still count as two values; equal values count once.
    #[test]
    fn equal_hashes_are_told_apart_by_their_values() {
        let mut p = Partial::new(&Wanted::default(), 2);
        let a = p.acc(0, 0, 0);
        let b = p.acc(1, 0, 0);
        p.ensure_direct();
        let push = |p: &mut Partial, acc: u32, v: &str, hash: u64| {
            p.entries.push((acc, u32::try_from(v.len()).unwrap_or(0), hash, p.arena.len() as u64));
            p.arena.extend_from_slice(v.as_bytes());
        };
        // acc a: "x" and "y" share hash 7 (a forced collision), "x" again, "z" with hash 9.
        push(&mut p, a, "x", 7);
        push(&mut p, a, "y", 7);
        push(&mut p, a, "x", 7);
        push(&mut p, a, "z", 9);
        // acc b: the same value as a's, counted for b on its own.
        push(&mut p, b, "x", 7);
        let counts = |p: &mut Partial| p.distinct_counts().ok().map(|c| (c[a as usize], c[b as usize]));
        assert_eq!(counts(&mut p), Some((3, 1)));
        // The entries are now distinct: the repeated "x" of a is gone, and counting again (as a
        // state that keeps folding does) gives the same.
        assert_eq!(p.entries.len(), 4);
        assert_eq!(counts(&mut p), Some((3, 1)));
        // A later row with a value already seen adds nothing; a new one adds one.
        push(&mut p, a, "y", 7);
        push(&mut p, b, "w", 5);
        assert_eq!(counts(&mut p), Some((3, 2)));
    }
}
