//! Gapless document numbers (`INV-2026-000123`, `CN-2026-000001`) from a counter in NATS KV.
//!
//! One key per issuer and series (`<issuer>.inv`, `<issuer>.cn`) in the bucket
//! `<catalog prefix>numbering` holds JSON `{"next": 124, "pending": {"<document id>":
//! {"seq": 123, "at": 1793750400}}}`. Every change is a compare-and-set on the key's revision
//! (`kv.update(key, value, revision)`, or `kv.create` for the first one); a writer that loses the
//! race (`WrongLastRevision` / `AlreadyExists`) reads again and retries.
//!
//! Gapless: a number is taken **together with the id of the document it is for** (`pending`).
//! The document is then written to ClickHouse, and only after that the reservation is released
//! (removed from `pending`). A crash between reserving and writing leaves the reservation; the
//! next attempt for the same document id (ids are deterministic) finds it and reuses the number
//! and its time, so no number is skipped and none is given twice. A second closer working on the
//! same documents at the same time also finds the reservation and writes identical rows.
//! Callers read the key, check in ClickHouse which documents are already written, and only then
//! compare-and-set at the revision they read: a release by another writer in between changes the
//! revision, so a stale check can never hand out a second number for a written document.

use std::collections::BTreeMap;

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};

/// A reservation: the sequence number and the time it was taken (UTC seconds), which becomes the
/// document's date, so every writer of the document writes the same row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// Sequence number in the series (1, 2, …).
    pub seq: u64,
    /// Time of the reservation, UTC seconds.
    pub at: u32,
    /// For documents whose id does not determine their content (an operator's credit note is
    /// the invoice's n-th): a hash of the content the number was taken for, so a retry of the
    /// same request is told apart from a different request racing for the same id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<u64>,
}

/// How long an operator's reservation is held against a different request for the same
/// document id: younger, it belongs to a request still running; older, to one that died, and a
/// new request takes its number over (so no number is left unused).
pub const CLAIM_LEASE_SECS: u32 = 60;

/// The outcome of [`Counter::claim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The number is ours: new, our own earlier reservation, or taken over from a request that
    /// died.
    Held(Reservation),
    /// A different request for the same document id holds it and may still be running.
    Busy(Reservation),
}

/// The value of one counter key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// The next sequence number to hand out.
    pub next: u64,
    /// Numbers taken for documents not yet known to be written, by document id.
    #[serde(default)]
    pub pending: BTreeMap<Uuid, Reservation>,
}

impl Default for Counter {
    fn default() -> Self {
        Counter { next: 1, pending: BTreeMap::new() }
    }
}

impl Counter {
    /// Reserves a number for each of `ids` (in order) that has none yet, at time `at`; returns
    /// every id's reservation (reused or new).
    pub fn reserve(&mut self, ids: &[Uuid], at: u32) -> Vec<(Uuid, Reservation)> {
        ids.iter()
            .map(|id| {
                let r = *self.pending.entry(*id).or_insert_with(|| {
                    let r = Reservation { seq: self.next, at, content: None };
                    self.next += 1;
                    r
                });
                (*id, r)
            })
            .collect()
    }
}

impl Counter {
    /// Reserves a number for document `id` whose content hashes to `content`, at time `at`: a
    /// reservation of the same content is reused (a retry), one of other content is taken over
    /// when older than [`CLAIM_LEASE_SECS`] (its request died; the number keeps its place and
    /// takes the new time) and otherwise refused as busy. The caller compare-and-sets the counter
    /// when the claim is held.
    pub fn claim(&mut self, id: Uuid, content: u64, at: u32) -> Claim {
        match self.pending.get_mut(&id) {
            Some(r) if r.content == Some(content) => Claim::Held(*r),
            Some(r) if at.saturating_sub(r.at) < CLAIM_LEASE_SECS => Claim::Busy(*r),
            Some(r) => {
                *r = Reservation { seq: r.seq, at, content: Some(content) };
                Claim::Held(*r)
            }
            None => {
                let r = Reservation { seq: self.next, at, content: Some(content) };
                self.next += 1;
                self.pending.insert(id, r);
                Claim::Held(r)
            }
        }
    }
}

/// A number series and its format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    /// Counter key, `<issuer>.<series>`.
    pub key: String,
    /// Format with `{year}` and `{seq}` / `{seq:0N}` placeholders.
    pub format: String,
}

impl Series {
    /// The series `name` (`inv`, `cn`) of `issuer`.
    pub fn new(issuer: &str, name: &str, format: &str) -> Result<Series> {
        validate_format(format)?;
        if issuer.is_empty() || !issuer.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(Error::Config(format!("billing.issuer = {issuer:?}: use letters, digits, '-' or '_'")));
        }
        Ok(Series { key: format!("{issuer}.{name}"), format: format.to_owned() })
    }

    /// The document number of `r`: `{year}` is the reservation's UTC year.
    pub fn number(&self, r: Reservation) -> String {
        let year = chrono::DateTime::from_timestamp(i64::from(r.at), 0).map_or(1970, |t| chrono::Datelike::year(&t));
        format_number(&self.format, year, r.seq)
    }
}

/// Checks a number format: exactly one `{seq}` or `{seq:0N}` (N ≤ 12), optional `{year}`, no
/// other placeholders.
pub fn validate_format(format: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::Config(format!("number format {format:?}: {why}")));
    let mut seqs = 0;
    let mut rest = format;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else { return bad("unclosed '{'") };
        let ph = &rest[open + 1..open + close];
        match ph {
            "year" => {}
            "seq" => seqs += 1,
            p if p.starts_with("seq:0") && p[5..].parse::<u8>().is_ok_and(|w| (1..=12).contains(&w)) => seqs += 1,
            p => return bad(&format!("unknown placeholder {{{p}}}; use {{year}}, {{seq}} or {{seq:0N}}")),
        }
        rest = &rest[open + close + 1..];
    }
    if seqs != 1 {
        return bad("needs exactly one {seq} or {seq:0N}");
    }
    Ok(())
}

fn format_number(format: &str, year: i32, seq: u64) -> String {
    let mut out = String::new();
    let mut rest = format;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len() - open - 1, |c| c);
        let ph = &rest[open + 1..open + close];
        match ph {
            "year" => out.push_str(&year.to_string()),
            "seq" => out.push_str(&seq.to_string()),
            p => {
                let width = p.get(5..).and_then(|w| w.parse::<usize>().ok()).unwrap_or(0);
                out.push_str(&format!("{seq:0width$}"));
            }
        }
        rest = rest.get(open + close + 1..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// The counter bucket.
#[derive(Debug, Clone)]
pub struct Numbering {
    kv: kv::Store,
}

/// A counter as read, with the revision to compare-and-set against (`None`: key absent).
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The counter.
    pub counter: Counter,
    /// Revision read.
    pub revision: Option<u64>,
}

impl Numbering {
    /// Opens (creating when missing) the bucket `name`.
    pub async fn open(js: &jetstream::Context, name: &str) -> Result<Numbering> {
        let kv = match js.get_key_value(name).await {
            Ok(kv) => kv,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: name.to_owned(),
                    history: 10,
                    storage: jetstream::stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| Error::Nats(format!("create bucket {name}: {e}")))?,
        };
        Ok(Numbering { kv })
    }

    /// Reads a counter.
    pub async fn read(&self, series: &Series) -> Result<Snapshot> {
        let entry = self.kv.entry(series.key.as_str()).await.map_err(|e| Error::Nats(format!("read counter {}: {e}", series.key)))?;
        match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                let counter = serde_json::from_slice(&e.value)
                    .map_err(|err| Error::Nats(format!("counter {} holds invalid JSON: {err}", series.key)))?;
                Ok(Snapshot { counter, revision: Some(e.revision) })
            }
            Some(e) => Ok(Snapshot { counter: Counter::default(), revision: Some(e.revision) }),
            None => Ok(Snapshot { counter: Counter::default(), revision: None }),
        }
    }

    /// Writes `counter` if the key is still at `revision`; `false` when another writer came first.
    pub async fn compare_and_set(&self, series: &Series, counter: &Counter, revision: Option<u64>) -> Result<bool> {
        let value = serde_json::to_vec(counter)?.into();
        match revision {
            Some(rev) => match self.kv.update(series.key.as_str(), value, rev).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
                Err(e) => Err(Error::Nats(format!("update counter {}: {e}", series.key))),
            },
            None => match self.kv.create(series.key.as_str(), value).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(Error::Nats(format!("create counter {}: {e}", series.key))),
            },
        }
    }

    /// Removes the reservations of `ids` (their documents are written). Retries on conflicts.
    pub async fn release(&self, series: &Series, ids: &[Uuid]) -> Result<()> {
        loop {
            let mut snap = self.read(series).await?;
            if !ids.iter().any(|id| snap.counter.pending.contains_key(id)) {
                return Ok(());
            }
            for id in ids {
                snap.counter.pending.remove(id);
            }
            if self.compare_and_set(series, &snap.counter, snap.revision).await? {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let s = Series::new("acme", "inv", "INV-{year}-{seq:06}").unwrap();
        // 2026-11-04T00:00:00Z
        assert_eq!(s.number(Reservation { seq: 123, at: 1_793_750_400, content: None }), "INV-2026-000123");
        assert_eq!(format_number("CN{seq}", 2026, 7), "CN7");
        assert_eq!(format_number("{year}/{seq:03}/x", 2027, 1234), "2027/1234/x");
        assert!(validate_format("INV-{year}").unwrap_err().to_string().contains("needs exactly one {seq}"));
        assert!(validate_format("INV-{month}-{seq}").unwrap_err().to_string().contains("unknown placeholder {month}"));
        assert!(Series::new("a b", "inv", "{seq}").unwrap_err().to_string().contains("billing.issuer = \"a b\""));
    }

    #[test]
    fn reservations_are_reused_for_the_same_document() {
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let mut k = Counter::default();
        let r = |seq, at| Reservation { seq, at, content: None };
        assert_eq!(k.reserve(&[a, b], 100), vec![(a, r(1, 100)), (b, r(2, 100))]);
        // A restart (or a second closer) asks again for b and a new c: b keeps 2 and its time.
        assert_eq!(k.reserve(&[b, c], 200), vec![(b, r(2, 100)), (c, r(3, 200))]);
        assert_eq!(k.next, 4);
    }

    #[test]
    fn claims_reuse_retries_refuse_racers_and_take_over_the_dead() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut k = Counter::default();
        let held = |seq, at, content| Claim::Held(Reservation { seq, at, content: Some(content) });
        assert_eq!(k.claim(a, 7, 1_000), held(1, 1_000, 7));
        // The same request again (a retry after a crash): the same number and time.
        assert_eq!(k.claim(a, 7, 1_030), held(1, 1_000, 7));
        // Another request for the same id while the first may still run: refused, nothing taken.
        assert_eq!(k.claim(a, 8, 1_059), Claim::Busy(Reservation { seq: 1, at: 1_000, content: Some(7) }));
        assert_eq!(k.next, 2);
        // Once the lease is over, the first request is taken for dead: its number is reused.
        assert_eq!(k.claim(a, 8, 1_060), held(1, 1_060, 8));
        // Another document gets the next number.
        assert_eq!(k.claim(b, 7, 1_060), held(2, 1_060, 7));
        // Counters written before `content` existed read back without it.
        let old: Counter =
            serde_json::from_str(r#"{"next":3,"pending":{"00000000-0000-0000-0000-000000000001":{"seq":2,"at":5}}}"#).unwrap();
        assert_eq!(old.pending[&a], Reservation { seq: 2, at: 5, content: None });
        assert!(!serde_json::to_string(&old).unwrap().contains("content"));
    }
}
