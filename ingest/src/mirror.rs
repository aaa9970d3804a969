//! The ClickHouse mirror of the ledger: every ledger row copied into `usage_events`, rolled up
//! into `usage_hourly` by a materialized view, for dashboards. Billing never reads the mirror;
//! it reads the Parquet ledger, which stays the source of truth.
//!
//! # Off the ack path
//! Ingest acks a JetStream message once its events are durable in the ledger; the mirror is a
//! separate task that only *reads* the ledger (listing and reading segments through
//! `object_store`) and writes to ClickHouse. No ack waits for it and nothing it does can fail
//! ingest: when ClickHouse is down, events keep flowing into the ledger and the mirror catches up
//! once it is back.
//!
//! # Exactly once per segment
//! A segment is the unit of copying. For each segment named by [`Ledger::list`] and absent from
//! `mirror_segments`, one pass
//! 1. reads and decodes the segment (one segment in memory at a time),
//! 2. counts the rows `usage_events` already holds for it (`WHERE segment = ?`),
//! 3. inserts its rows in **one** `INSERT` when that count is 0,
//! 4. records `(segment, rows)` in `mirror_segments`.
//!
//! A crash (of Meterline, of ClickHouse, or of the network) can stop this anywhere:
//! - before or during the `INSERT`: the `INSERT` is one HTTP request whose rows form one block
//!   (segments hold at most 100k rows, below ClickHouse's `max_insert_block_size` of 1 048 576),
//!   and ClickHouse writes a block only after reading all of it, so a cut request writes
//!   nothing; the next pass counts 0 and inserts again;
//! - after the `INSERT`, before the progress row: the next pass counts exactly the segment's rows
//!   and only records the progress row (reported as `resumed`);
//! - a partly present segment (possible only if ClickHouse itself dies between writing the parts
//!   of one block, e.g. a segment spanning two months): the next pass reads which
//!   `(event_key, meter)` pairs are present (unique within a segment: one row per event and
//!   meter, and an event appears once) and inserts exactly the missing rows.
//!
//! Counts are exact without `FINAL` because rows are never inserted twice. What this scheme
//! cannot see: **two mirrors writing to the same database at once** could both count 0 and both
//! insert. Run one mirror per database: the one inside `meterline ingest`, or `meterline mirror`
//! with `mirror.enabled = false` for ingest. Inserts have no client-side timeout for the same
//! reason: giving up on an `INSERT` the server is still completing would let the next pass count
//! too early.
//!
//! `usage_hourly` is fed by ClickHouse from each inserted block, so it is exact whenever
//! `usage_events` is, with one exception outside Meterline's control: if the ClickHouse *server*
//! dies after writing a block to `usage_events` but before pushing it to the view, the rollup
//! misses that block. docs/CLICKHOUSE.md shows how to rebuild the rollup from `usage_events`.
//!
//! # Outages
//! [`Mirror::run_until_cancelled`] runs a pass every `interval`. A failed pass (ClickHouse
//! unreachable, a missing table before `meterline migrate`, a ledger read error) is retried
//! after `interval`, doubled per failed attempt up to [`MAX_BACKOFF`]. The first failure of an
//! outage is logged as a warning, later attempts only at debug level, and the recovery at info
//! with the outage's length. A segment that cannot be decoded (a permanent error) is logged
//! once, skipped until restart and reported; the other segments go on.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{Array, Decimal128Array, FixedSizeBinaryArray, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, TimeUnit};
use bytes::Bytes;
use clickhouse::Row;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use meterline_schemas::clickhouse::{ClickHouse, ClickHouseConfig};
use meterline_schemas::ledger::{VALUE_PRECISION, VALUE_SCALE, col};

use crate::error::{Error, Result};
use crate::segment::Ledger;

/// Longest pause between retries while ClickHouse is unavailable.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The mirrored ledger rows.
pub const EVENTS_TABLE: &str = "usage_events";

/// Mirror progress: one row per completely mirrored segment.
pub const PROGRESS_TABLE: &str = "mirror_segments";

/// What a pass (or a run) did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MirrorReport {
    /// Segments recorded in `mirror_segments`.
    pub segments: usize,
    /// Rows inserted into `usage_events`.
    pub rows: u64,
    /// Segments whose rows were already (wholly or partly) in `usage_events`: an earlier pass
    /// stopped between its insert and its progress row. Only the missing part was written.
    pub resumed: usize,
    /// Segments that could not be decoded; left unmirrored and logged.
    pub skipped: Vec<String>,
}

/// Live figures of a running mirror, for the metrics endpoint ([`crate::metrics`]).
#[derive(Debug, Default)]
pub struct MirrorCounters {
    /// Segments mirrored (recorded in `mirror_segments`) by this process.
    pub segments: AtomicU64,
    /// Rows inserted into `usage_events` by this process.
    pub rows: AtomicU64,
    /// Ledger segments not mirrored yet (the backlog): at each pass, and while ClickHouse is
    /// down, the ledger's segments less those known to be mirrored.
    pub pending: AtomicU64,
    /// Segments that cannot be decoded, skipped until restart.
    pub skipped: AtomicU64,
    /// 1 while passes fail (ClickHouse unreachable), 0 otherwise.
    pub down: AtomicU64,
}

/// Copies ledger segments into ClickHouse; see the module doc.
#[derive(Debug)]
pub struct Mirror {
    ledger: Ledger,
    /// When set, the connection is (re)made from this after every failure, so a restarted or
    /// upgraded server is detected afresh.
    cfg: Option<ClickHouseConfig>,
    ch: Option<ClickHouse>,
    /// Undecodable segments, logged once and not retried by this process.
    skipped: HashSet<String>,
    totals: MirrorReport,
    counters: Arc<MirrorCounters>,
    /// Segments known to be mirrored (the last `mirror_segments` read, and those mirrored since):
    /// the backlog is counted against it while ClickHouse is down.
    known_done: HashSet<String>,
}

/// One row of `usage_events`, borrowing its strings from the decoded segment.
#[derive(Row, Serialize)]
struct UsageEventRow<'a> {
    /// `FixedString(16)`: the 128-bit event key, big-endian as in the ledger.
    event_key: [u8; 16],
    event_id: &'a str,
    source: &'a str,
    customer: &'a str,
    meter: &'a str,
    /// `DateTime`: whole UTC seconds (the ledger keeps microseconds).
    event_time: u32,
    /// `Nullable(Decimal(38, 9))`: the ledger's unscaled Decimal128 value, copied exactly.
    value: Option<i128>,
    unique_value: Option<&'a str>,
    group_key: &'a str,
    segment: &'a str,
    ingested_at: u32,
    data: &'a str,
}

#[derive(Row, Deserialize)]
struct PresentRow {
    key: String,
    meter: String,
}

fn ch_err(e: clickhouse::error::Error) -> Error {
    Error::Schemas(meterline_schemas::Error::ClickHouse(e))
}

impl Mirror {
    /// A mirror writing through an established connection.
    pub fn new(ledger: Ledger, ch: ClickHouse) -> Mirror {
        Mirror {
            ledger,
            cfg: None,
            ch: Some(ch),
            skipped: HashSet::new(),
            totals: MirrorReport::default(),
            counters: Arc::default(),
            known_done: HashSet::new(),
        }
    }

    /// A mirror that connects on its first pass and reconnects after failures: it can be
    /// started while ClickHouse is down (`meterline ingest` does).
    pub fn connecting(ledger: Ledger, cfg: ClickHouseConfig) -> Mirror {
        Mirror {
            ledger,
            cfg: Some(cfg),
            ch: None,
            skipped: HashSet::new(),
            totals: MirrorReport::default(),
            counters: Arc::default(),
            known_done: HashSet::new(),
        }
    }

    /// Everything done since this mirror was created.
    pub fn totals(&self) -> &MirrorReport {
        &self.totals
    }

    /// Its live counters (shared: they keep counting while it runs).
    pub fn counters(&self) -> Arc<MirrorCounters> {
        Arc::clone(&self.counters)
    }

    async fn clickhouse(&mut self) -> Result<ClickHouse> {
        if let Some(ch) = &self.ch {
            return Ok(ch.clone());
        }
        let cfg = self.cfg.as_ref().ok_or_else(|| Error::Ledger("mirror has neither a connection nor a configuration".into()))?;
        let ch = ClickHouse::connect(cfg).await?;
        self.ch = Some(ch.clone());
        Ok(ch)
    }

    /// Segments of the ledger not yet recorded in `mirror_segments`, in ledger order.
    pub async fn pending(&mut self) -> Result<Vec<String>> {
        let ch = self.clickhouse().await?;
        self.pending_with(&ch).await
    }

    async fn pending_with(&mut self, ch: &ClickHouse) -> Result<Vec<String>> {
        let done: HashSet<String> = ch
            .client()
            .query(&format!("SELECT DISTINCT segment FROM {PROGRESS_TABLE}"))
            .fetch_all::<String>()
            .await
            .map_err(ch_err)?
            .into_iter()
            .collect();
        let names = self.ledger.list().await?;
        let pending = names.into_iter().filter(|n| !done.contains(n)).collect();
        self.known_done = done;
        Ok(pending)
    }

    /// Counts the backlog from the ledger alone (ClickHouse is down).
    async fn count_backlog(&self) {
        if let Ok(names) = self.ledger.list().await {
            let n = names.iter().filter(|n| !self.known_done.contains(*n) && !self.skipped.contains(*n)).count();
            self.counters.pending.store(n as u64, Ordering::Relaxed);
        }
    }

    /// Mirrors every pending segment, one at a time, and reports what it did. Fails on the
    /// first ClickHouse or ledger error (what was mirrored before stays mirrored).
    pub async fn catch_up(&mut self) -> Result<MirrorReport> {
        self.pass(None).await
    }

    async fn pass(&mut self, cancel: Option<&CancellationToken>) -> Result<MirrorReport> {
        let ch = self.clickhouse().await?;
        let pending: Vec<String> = self.pending_with(&ch).await?.into_iter().filter(|n| !self.skipped.contains(n)).collect();
        let c = Arc::clone(&self.counters);
        c.pending.store(pending.len() as u64, Ordering::Relaxed);
        let mut report = MirrorReport::default();
        for name in pending {
            if cancel.is_some_and(CancellationToken::is_cancelled) {
                break;
            }
            match mirror_segment(&self.ledger, &ch, &name).await {
                Ok(done) => {
                    tracing::info!(segment = %name, rows = done.rows, inserted = done.inserted, resumed = done.resumed, "segment mirrored to clickhouse");
                    for r in [&mut report, &mut self.totals] {
                        r.segments += 1;
                        r.rows += done.inserted;
                        r.resumed += usize::from(done.resumed);
                    }
                    c.segments.fetch_add(1, Ordering::Relaxed);
                    c.rows.fetch_add(done.inserted, Ordering::Relaxed);
                    c.pending.fetch_sub(1, Ordering::Relaxed);
                    self.known_done.insert(name);
                }
                Err(e) if !e.is_transient() => {
                    tracing::error!(segment = %name, error = %e, "ledger segment cannot be mirrored; skipped until restart");
                    c.skipped.fetch_add(1, Ordering::Relaxed);
                    c.pending.fetch_sub(1, Ordering::Relaxed);
                    self.skipped.insert(name.clone());
                    self.totals.skipped.push(name.clone());
                    report.skipped.push(name);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    /// Runs passes every `interval` until `cancel` fires, retrying failures with capped
    /// backoff. Cancellation is checked between segments, so a segment in progress is finished
    /// (a caller that cannot wait may drop the future: the next run repairs any state, see the
    /// module doc). Returns the totals.
    pub async fn run_until_cancelled(&mut self, interval: Duration, cancel: CancellationToken) -> MirrorReport {
        let mut outage: Option<(Instant, u32)> = None;
        while !cancel.is_cancelled() {
            let wait = match self.pass(Some(&cancel)).await {
                Ok(report) => {
                    self.counters.down.store(0, Ordering::Relaxed);
                    if let Some((since, attempts)) = outage.take() {
                        tracing::info!(outage_secs = since.elapsed().as_secs(), attempts, "clickhouse mirror resumed");
                    }
                    if report.segments > 0 {
                        tracing::debug!(segments = report.segments, rows = report.rows, "mirror pass done");
                    }
                    interval
                }
                Err(e) => {
                    self.counters.down.store(1, Ordering::Relaxed);
                    self.count_backlog().await;
                    if self.cfg.is_some() {
                        self.ch = None; // reconnect (and re-detect the version) next time
                    }
                    let attempts = match &mut outage {
                        None => {
                            tracing::warn!(error = %e, "clickhouse mirror paused: retrying with backoff; ingest is not affected (logged once per outage)");
                            outage = Some((Instant::now(), 1));
                            1
                        }
                        Some((_, n)) => {
                            *n += 1;
                            tracing::debug!(error = %e, attempt = *n, "clickhouse mirror still failing");
                            *n
                        }
                    };
                    backoff(interval, attempts)
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        self.totals.clone()
    }
}

/// The pause after the `attempts`-th consecutive failure: `interval`, doubled per further
/// attempt, at most [`MAX_BACKOFF`] (or `interval` itself when that is longer).
pub fn backoff(interval: Duration, attempts: u32) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(16);
    interval.saturating_mul(factor).min(MAX_BACKOFF.max(interval))
}

struct SegmentDone {
    rows: u64,
    inserted: u64,
    resumed: bool,
}

async fn mirror_segment(ledger: &Ledger, ch: &ClickHouse, name: &str) -> Result<SegmentDone> {
    let bytes = ledger.read(name).await?;
    let owned = name.to_owned();
    let batches = tokio::task::spawn_blocking(move || decode(&owned, bytes))
        .await
        .map_err(|e| Error::Ledger(format!("decode task for {name}: {e}")))??;
    let columns = batches.iter().map(|b| Columns::of(name, b)).collect::<Result<Vec<_>>>()?;
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();

    let c = ch.client();
    let present: u64 =
        c.query(&format!("SELECT count() FROM {EVENTS_TABLE} WHERE segment = ?")).bind(name).fetch_one().await.map_err(ch_err)?;
    let (inserted, resumed) = if present == 0 {
        (insert(ch, name, &columns, None).await?, false)
    } else if present == rows {
        (0, true)
    } else if present < rows {
        let keys: HashSet<(u128, String)> = c
            .query(&format!("SELECT hex(event_key) AS key, meter FROM {EVENTS_TABLE} WHERE segment = ?"))
            .bind(name)
            .fetch_all::<PresentRow>()
            .await
            .map_err(ch_err)?
            .into_iter()
            .map(|r| u128::from_str_radix(&r.key, 16).map(|k| (k, r.meter)))
            .collect::<Result<_, _>>()
            .map_err(|e| Error::Encoding(format!("event_key of {name} in {EVENTS_TABLE}: {e}")))?;
        tracing::warn!(segment = %name, present, rows, "segment partly mirrored; inserting the missing rows");
        (insert(ch, name, &columns, Some(&keys)).await?, true)
    } else {
        tracing::error!(
            segment = %name, present, rows,
            "usage_events holds more rows of this segment than the ledger: did two mirrors run against one database? extra rows left as they are"
        );
        (0, true)
    };
    c.query(&format!("INSERT INTO {PROGRESS_TABLE} (segment, rows, mirrored_at) VALUES (?, ?, now())"))
        .bind(name)
        .bind(rows)
        .execute()
        .await
        .map_err(ch_err)?;
    Ok(SegmentDone { rows, inserted, resumed })
}

/// Inserts the segment's rows (all, or those not in `present`) in one `INSERT`.
async fn insert(ch: &ClickHouse, name: &str, columns: &[Columns<'_>], present: Option<&HashSet<(u128, String)>>) -> Result<u64> {
    let mut insert = ch.client().insert::<UsageEventRow<'_>>(EVENTS_TABLE).await.map_err(ch_err)?;
    let mut n = 0u64;
    for cols in columns {
        for i in 0..cols.len {
            let row = cols.row(i, name)?;
            if present.is_some_and(|p| p.contains(&(u128::from_be_bytes(row.event_key), row.meter.to_owned()))) {
                continue;
            }
            insert.write(&row).await.map_err(ch_err)?;
            n += 1;
        }
    }
    if n > 0 {
        insert.end().await.map_err(ch_err)?;
    }
    Ok(n)
}

fn decode(name: &str, bytes: Bytes) -> Result<Vec<RecordBatch>> {
    let err = |e: &dyn std::fmt::Display| Error::Segment { path: name.to_owned(), message: e.to_string() };
    let reader =
        ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| err(&e))?.with_batch_size(8192).build().map_err(|e| err(&e))?;
    reader.collect::<Result<Vec<_>, _>>().map_err(|e| err(&e))
}

/// The typed columns of one decoded batch, checked once per batch.
struct Columns<'a> {
    len: usize,
    key: &'a FixedSizeBinaryArray,
    id: &'a StringArray,
    source: &'a StringArray,
    customer: &'a StringArray,
    meter: &'a StringArray,
    time: &'a TimestampMicrosecondArray,
    value: &'a Decimal128Array,
    unique: &'a StringArray,
    group: &'a StringArray,
    ingested: &'a TimestampMicrosecondArray,
    data: &'a StringArray,
}

impl<'a> Columns<'a> {
    fn of(name: &str, batch: &'a RecordBatch) -> Result<Columns<'a>> {
        fn get<'b, A: Array + 'static>(name: &str, batch: &'b RecordBatch, column: &str, nullable: bool) -> Result<&'b A> {
            let err = |message: String| Error::Segment { path: name.to_owned(), message };
            let array = batch.column_by_name(column).ok_or_else(|| err(format!("column {column} is missing")))?;
            let typed = array
                .as_any()
                .downcast_ref::<A>()
                .ok_or_else(|| err(format!("column {column} has type {}, not the ledger's", array.data_type())))?;
            if !nullable && array.null_count() > 0 {
                return Err(err(format!("column {column} has {} nulls; the ledger never writes any", array.null_count())));
            }
            Ok(typed)
        }
        let value = batch.column_by_name(col::VALUE).map(|a| a.data_type().clone());
        if value != Some(DataType::Decimal128(VALUE_PRECISION, VALUE_SCALE)) {
            return Err(Error::Segment {
                path: name.to_owned(),
                message: format!("column {} has type {value:?}, expected Decimal128(38, 9) (values are never rescaled)", col::VALUE),
            });
        }
        for ts in [col::EVENT_TIME, col::INGESTED_AT] {
            let t = batch.column_by_name(ts).map(|a| a.data_type().clone());
            if !matches!(t, Some(DataType::Timestamp(TimeUnit::Microsecond, _))) {
                return Err(Error::Segment {
                    path: name.to_owned(),
                    message: format!("column {ts} has type {t:?}, expected Timestamp(µs)"),
                });
            }
        }
        let key: &FixedSizeBinaryArray = get(name, batch, col::EVENT_KEY, false)?;
        if key.value_length() != 16 {
            return Err(Error::Segment {
                path: name.to_owned(),
                message: format!("column {} holds {} bytes per key, expected 16", col::EVENT_KEY, key.value_length()),
            });
        }
        Ok(Columns {
            len: batch.num_rows(),
            key,
            id: get(name, batch, col::EVENT_ID, false)?,
            source: get(name, batch, col::SOURCE, false)?,
            customer: get(name, batch, col::CUSTOMER, false)?,
            meter: get(name, batch, col::METER, false)?,
            time: get(name, batch, col::EVENT_TIME, false)?,
            value: get(name, batch, col::VALUE, true)?,
            unique: get(name, batch, col::UNIQUE_VALUE, true)?,
            group: get(name, batch, col::GROUP_KEY, false)?,
            ingested: get(name, batch, col::INGESTED_AT, false)?,
            data: get(name, batch, col::DATA, false)?,
        })
    }

    fn row(&self, i: usize, segment: &'a str) -> Result<UsageEventRow<'a>> {
        let seconds = |column: &str, us: i64| {
            u32::try_from(us.div_euclid(1_000_000)).map_err(|_| Error::Segment {
                path: segment.to_owned(),
                message: format!("row {i}: {column} = {us} µs does not fit ClickHouse DateTime (1970..2106)"),
            })
        };
        let key: [u8; 16] = self
            .key
            .value(i)
            .try_into()
            .map_err(|_| Error::Segment { path: segment.to_owned(), message: format!("row {i}: {} is not 16 bytes", col::EVENT_KEY) })?;
        Ok(UsageEventRow {
            event_key: key,
            event_id: self.id.value(i),
            source: self.source.value(i),
            customer: self.customer.value(i),
            meter: self.meter.value(i),
            event_time: seconds(col::EVENT_TIME, self.time.value(i))?,
            value: self.value.is_valid(i).then(|| self.value.value(i)),
            unique_value: self.unique.is_valid(i).then(|| self.unique.value(i)),
            group_key: self.group.value(i),
            segment,
            ingested_at: seconds(col::INGESTED_AT, self.ingested.value(i))?,
            data: self.data.value(i),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let ms = Duration::from_millis;
        let got: Vec<Duration> = (1..=7).map(|a| backoff(ms(1000), a)).collect();
        assert_eq!(got, vec![ms(1000), ms(2000), ms(4000), ms(8000), ms(10_000), ms(10_000), ms(10_000)]);
        assert_eq!(backoff(ms(200), 1), ms(200));
        assert_eq!(backoff(ms(200), 40), ms(10_000), "large attempt counts do not overflow");
        assert_eq!(backoff(ms(60_000), 3), ms(60_000), "an interval above the cap is kept");
    }
}
