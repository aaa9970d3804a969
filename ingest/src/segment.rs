//! Ledger segments: Arrow batches written as Parquet through `object_store`, atomically and
//! durably, and read back to rebuild the dedup index.
//!
//! A segment is named `month=YYYY-MM/seg-p<partition>-<first stream seq>-<last stream seq>-<content hash>.parquet`.
//! The content hash (xxh3-64 over its event keys) makes a name identify its content, so writing
//! is create-only: if the name exists, the same rows are already durable and the write succeeds
//! without touching it. Object stores write atomically (local: staging file + link); on local
//! disks the file and its directory are fsynced before the write returns, and acks wait for it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Decimal128Builder, FixedSizeBinaryBuilder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use meterline_schemas::ledger::{self, VALUE_PRECISION, VALUE_SCALE};
use meterline_schemas::money::to_scaled_i128;
use meterline_schemas::period::PeriodLabel;

use crate::config::LedgerConfig;
use crate::dedup::{DedupIndex, KeyTable};
use crate::error::{Error, Result};
use crate::validate::{Accepted, AcceptedRef};
use rust_decimal::Decimal;

/// The ledger store.
#[derive(Debug, Clone)]
pub struct Ledger {
    store: Arc<LocalFileSystem>,
    root: PathBuf,
}

/// One segment, encoded and ready to write.
#[derive(Debug)]
pub struct Segment {
    /// Path relative to the ledger root.
    pub name: String,
    /// The month of its events.
    pub month: PeriodLabel,
    /// Ledger rows in it.
    pub rows: usize,
    /// The Parquet file.
    pub bytes: Bytes,
}

/// What rebuilding the dedup index found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RebuildReport {
    /// Segments read.
    pub segments: usize,
    /// Keys loaded (distinct).
    pub keys: usize,
    /// Unreadable segments moved to `quarantine/` (their events were never acked, so JetStream
    /// redelivers them).
    pub quarantined: Vec<String>,
}

impl Ledger {
    /// Opens (creating when missing) the ledger directory.
    pub fn open(cfg: &LedgerConfig) -> Result<Ledger> {
        std::fs::create_dir_all(&cfg.path).map_err(|e| Error::Ledger(format!("create {}: {e}", cfg.path.display())))?;
        let root = cfg.path.canonicalize().map_err(|e| Error::Ledger(format!("{}: {e}", cfg.path.display())))?;
        let store = LocalFileSystem::new_with_prefix(&root).map_err(|e| Error::Ledger(format!("{}: {e}", root.display())))?;
        Ok(Ledger { store: Arc::new(store), root })
    }

    /// The ledger's local root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes a segment durably; returns its size in bytes.
    pub async fn write(&self, seg: &Segment) -> Result<usize> {
        let size = seg.bytes.len();
        let path = StorePath::from(seg.name.as_str());
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.store.put_opts(&path, seg.bytes.clone().into(), opts).await {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                tracing::info!(segment = %seg.name, "segment already durable (same content); not rewritten");
            }
            Err(e) => return Err(Error::Ledger(format!("write {}: {e}", seg.name))),
        }
        let file = self.root.join(&seg.name);
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::File::open(&file)?.sync_all()?;
            if let Some(dir) = file.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            std::fs::File::open(root)?.sync_all()
        })
        .await
        .map_err(|e| Error::Ledger(format!("fsync task: {e}")))?
        .map_err(|e| Error::Ledger(format!("fsync {}: {e}", seg.name)))?;
        Ok(size)
    }

    /// Names of all usage segments (`month=…/….parquet`), sorted. Other trees under the root
    /// (`quarantine/`, the close's `rated-calls/`) are not segments.
    pub async fn list(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .store
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_filter(|n| futures::future::ready(n.starts_with("month=") && n.ends_with(".parquet")))
            .try_collect()
            .await
            .map_err(|e| Error::Ledger(format!("list: {e}")))?;
        names.sort();
        Ok(names)
    }

    /// The bytes of one segment, by a name returned from [`Ledger::list`].
    pub async fn read(&self, name: &str) -> Result<Bytes> {
        let get = self.store.get(&StorePath::from(name)).await.map_err(|e| Error::Ledger(format!("read {name}: {e}")))?;
        get.bytes().await.map_err(|e| Error::Ledger(format!("read {name}: {e}")))
    }

    /// Names of a partition's segments in one month directory, sorted (blocking file system
    /// calls: for worker threads).
    pub fn month_segments_blocking(&self, partition: u32, month: PeriodLabel) -> Result<Vec<String>> {
        let dir = self.root.join(format!("month={month}"));
        let mut names = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
            Err(e) => return Err(Error::Ledger(format!("list {}: {e}", dir.display()))),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::Ledger(format!("list {}: {e}", dir.display())))?;
            let file = entry.file_name().to_string_lossy().into_owned();
            if file.ends_with(".parquet") && segment_partition(&file) == Some(partition) {
                names.push(format!("month={month}/{file}"));
            }
        }
        names.sort();
        Ok(names)
    }

    /// The event keys of a partition's segments in `month`, read from the ledger. A segment that
    /// cannot be read (torn by a power loss before its fsync completed, hence never acked) is
    /// moved to `quarantine/`: its events are redelivered by JetStream.
    pub fn month_keys_blocking(&self, partition: u32, month: PeriodLabel, report: &mut RebuildReport) -> Result<KeyTable> {
        let mut table = KeyTable::default();
        for name in self.month_segments_blocking(partition, month)? {
            let path = self.root.join(&name);
            let keys =
                std::fs::read(&path).map_err(|e| Error::Ledger(format!("read {name}: {e}"))).and_then(|b| read_keys(&name, b.into()));
            match keys {
                Ok(keys) => {
                    for k in keys {
                        table.insert(k);
                    }
                    report.segments += 1;
                }
                Err(e) => {
                    tracing::error!(segment = %name, error = %e, "unreadable ledger segment moved to quarantine; its events will be redelivered");
                    let to = self.root.join("quarantine").join(name.replace('/', "_"));
                    std::fs::create_dir_all(self.root.join("quarantine")).map_err(|e| Error::Ledger(format!("quarantine: {e}")))?;
                    std::fs::rename(&path, &to).map_err(|e| Error::Ledger(format!("quarantine {name}: {e}")))?;
                    report.quarantined.push(name);
                }
            }
        }
        Ok(table)
    }

    /// Rebuilds a partition's dedup index: keys of the months from `horizon_start` on are loaded;
    /// older months are only noted, and loaded when an event for them arrives.
    pub fn rebuild_blocking(&self, partition: u32, horizon_start: PeriodLabel, index: &mut DedupIndex) -> Result<RebuildReport> {
        let mut report = RebuildReport::default();
        let mut months = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&self.root) {
            for entry in rd.flatten() {
                if let Some(m) =
                    entry.file_name().to_str().and_then(|n| n.strip_prefix("month=")).and_then(|m| m.parse::<PeriodLabel>().ok())
                {
                    months.push(m);
                }
            }
        }
        months.sort();
        for month in months {
            if month >= horizon_start {
                let keys = self.month_keys_blocking(partition, month, &mut report)?;
                index.load(month, keys);
            } else if !self.month_segments_blocking(partition, month)?.is_empty() {
                index.mark_unloaded(month);
            }
        }
        report.keys = index.len();
        Ok(report)
    }
}

/// The partition a segment file name belongs to: `seg-p<n>-…`; names written before partitions
/// existed (`seg-<seq>-…`) belong to partition 0.
pub fn segment_partition(file: &str) -> Option<u32> {
    let rest = file.strip_prefix("seg-")?;
    match rest.strip_prefix('p') {
        Some(p) => p.split('-').next()?.parse().ok(),
        None => Some(0),
    }
}

/// Parquet settings of ledger segments: Snappy; no dictionary for the columns that are (nearly)
/// unique per event (the encoder would hash every value into a dictionary that only grows, then
/// overflow it and fall back to plain): the key, the id, the event time and the raw `data`.
/// Statistics only where a reader can prune with them (customer, meter, times, key, value): on
/// the other strings (the id, `data`, the segment name, the group key, the source, the unique
/// value) min/max cost a string comparison per row and serve no query.
fn writer_properties() -> WriterProperties {
    use parquet::file::properties::EnabledStatistics;
    use parquet::schema::types::ColumnPath;
    let col = |name: &str| ColumnPath::from(name);
    let mut b = WriterProperties::builder().set_compression(Compression::SNAPPY);
    for c in [ledger::col::EVENT_KEY, ledger::col::EVENT_ID, ledger::col::EVENT_TIME, ledger::col::DATA] {
        b = b.set_column_dictionary_enabled(col(c), false);
    }
    // Event keys are uniform hashes: compression cannot shrink them, only cost time.
    b = b.set_column_compression(col(ledger::col::EVENT_KEY), Compression::UNCOMPRESSED);
    // Statistics (min/max per page and chunk) only where a reader filters: not on the uniform
    // event keys (their fixed-size values were also one comparison and one `Bytes` each).
    for c in [
        ledger::col::EVENT_KEY,
        ledger::col::EVENT_ID,
        ledger::col::DATA,
        ledger::col::SEGMENT,
        ledger::col::GROUP_KEY,
        ledger::col::SOURCE,
        ledger::col::UNIQUE_VALUE,
    ] {
        b = b.set_column_statistics_enabled(col(c), EnabledStatistics::None);
    }
    b.build()
}

/// Encodes a record batch as one Parquet file with one row group, its columns encoded on two
/// threads (a segment is the unit of a batch's CPU work; its twelve columns split evenly enough
/// by size). The file is what `ArrowWriter` writes, Arrow schema included.
fn encode(batch: &RecordBatch) -> Result<Vec<u8>> {
    use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowColumnWriter, compute_leaves};
    let err = |e: parquet::errors::ParquetError| Error::Encoding(e.to_string());
    let mut buf = Vec::with_capacity(batch.get_array_memory_size() / 4);
    let writer = ArrowWriter::try_new(&mut buf, batch.schema(), Some(writer_properties())).map_err(err)?;
    let (mut file, factory) = writer.into_serialized_writer().map_err(err)?;
    let writers = factory.create_column_writers(0).map_err(err)?;
    let schema = batch.schema();
    let mut leaves = Vec::with_capacity(writers.len());
    for (field, array) in schema.fields().iter().zip(batch.columns()) {
        let size = array.get_buffer_memory_size();
        leaves.extend(compute_leaves(field, array).map_err(err)?.into_iter().map(|leaf| (size, leaf)));
    }
    if leaves.len() != writers.len() {
        return Err(Error::Encoding(format!("{} column writers for {} leaf columns", writers.len(), leaves.len())));
    }
    // Greedy split by size into two halves; each column keeps its position.
    let mut jobs: Vec<(usize, ArrowColumnWriter, _)> =
        writers.into_iter().zip(leaves).enumerate().map(|(i, (w, (size, leaf)))| (i, w, (size, leaf))).collect();
    jobs.sort_by_key(|(_, _, (size, _))| std::cmp::Reverse(*size));
    let (mut halves, mut loads): ([Vec<_>; 2], [usize; 2]) = ([Vec::new(), Vec::new()], [0, 0]);
    for job in jobs {
        let h = usize::from(loads[1] < loads[0]);
        loads[h] += job.2.0;
        halves[h].push(job);
    }
    let run = |jobs: Vec<(usize, ArrowColumnWriter, (usize, parquet::arrow::arrow_writer::ArrowLeafColumn))>| {
        jobs.into_iter()
            .map(|(i, mut w, (_, leaf))| {
                w.write(&leaf)?;
                Ok((i, w.close()?))
            })
            .collect::<parquet::errors::Result<Vec<(usize, ArrowColumnChunk)>>>()
    };
    let [a, b] = halves;
    let (a, b) = std::thread::scope(|s| {
        let other = s.spawn(|| run(b));
        (run(a), other.join())
    });
    let mut chunks = a.map_err(err)?;
    chunks.extend(b.map_err(|_| Error::Encoding("parquet encode thread panicked".into()))?.map_err(err)?);
    chunks.sort_by_key(|(i, _)| *i);
    let mut row_group = file.next_row_group().map_err(err)?;
    for (_, chunk) in chunks {
        chunk.append_to_row_group(&mut row_group).map_err(err)?;
    }
    row_group.close().map_err(err)?;
    file.close().map_err(err)?;
    Ok(buf)
}

fn read_keys(name: &str, bytes: Bytes) -> Result<Vec<u128>> {
    let err = |e: &dyn std::fmt::Display| Error::Segment { path: name.to_owned(), message: e.to_string() };
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| err(&e))?;
    let idx = builder.schema().index_of(ledger::col::EVENT_KEY).map_err(|e| err(&e))?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), [idx]);
    let reader = builder.with_projection(mask).build().map_err(|e| err(&e))?;
    let mut keys = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| err(&e))?;
        let col = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::FixedSizeBinaryArray>()
            .ok_or_else(|| err(&"event_key is not FixedSizeBinary(16)"))?;
        for v in col.iter().flatten() {
            let arr: [u8; 16] = v.try_into().map_err(|_| err(&"event_key is not 16 bytes"))?;
            keys.push(u128::from_be_bytes(arr));
        }
    }
    Ok(keys)
}

/// An accepted event as the ledger sees it, owned ([`Accepted`]) or borrowed from its message
/// ([`AcceptedRef`], the ingest hot path).
pub trait LedgerEvent: Sync {
    /// Dedup key.
    fn key(&self) -> u128;
    /// Month of the event time.
    fn month(&self) -> PeriodLabel;
    /// (id, source, customer, time, raw `data`).
    fn attributes(&self) -> (&str, &str, &str, DateTime<Utc>, &str);
    /// Meters matched.
    fn meters(&self) -> usize;
    /// The `i`-th meter's key, numeric value and `UNIQUE_COUNT` text.
    fn meter(&self, i: usize) -> (&str, Option<Decimal>, Option<&str>);
    /// Appends the `i`-th meter's group key to `out` (canonical JSON; nothing without dimensions).
    fn write_group_key(&self, i: usize, out: &mut String);
}

impl LedgerEvent for Accepted {
    fn key(&self) -> u128 {
        self.key
    }
    fn month(&self) -> PeriodLabel {
        self.month
    }
    fn attributes(&self) -> (&str, &str, &str, DateTime<Utc>, &str) {
        let e = &self.event;
        (&e.id, &e.source, &e.subject, e.time, e.data.get())
    }
    fn meters(&self) -> usize {
        self.values.len()
    }
    fn meter(&self, i: usize) -> (&str, Option<Decimal>, Option<&str>) {
        let (key, v) = &self.values[i];
        (key, v.value, v.unique.as_deref())
    }
    fn write_group_key(&self, i: usize, out: &mut String) {
        out.push_str(&self.values[i].1.group_key);
    }
}

impl LedgerEvent for AcceptedRef<'_> {
    fn key(&self) -> u128 {
        self.key
    }
    fn month(&self) -> PeriodLabel {
        self.month
    }
    fn attributes(&self) -> (&str, &str, &str, DateTime<Utc>, &str) {
        let e = &self.event;
        (&e.id, &e.source, &e.subject, e.time, e.data.as_ref())
    }
    fn meters(&self) -> usize {
        self.values.len()
    }
    fn meter(&self, i: usize) -> (&str, Option<Decimal>, Option<&str>) {
        let (m, v) = &self.values[i];
        (&m.key, v.value, v.unique.as_deref())
    }
    fn write_group_key(&self, i: usize, out: &mut String) {
        let (m, v) = &self.values[i];
        // Writing to a `String` cannot fail.
        let _ = m.write_group_key(&v.dims, out);
    }
}

/// Builds the segments (one per event month) for accepted events of one batch of messages.
pub fn build_segments<A: LedgerEvent>(
    partition: u32,
    accepted: &[&A],
    first_seq: u64,
    last_seq: u64,
    ingested_at: DateTime<Utc>,
) -> Result<Vec<Segment>> {
    let mut by_month: BTreeMap<PeriodLabel, Vec<&A>> = BTreeMap::new();
    for a in accepted {
        by_month.entry(a.month()).or_default().push(a);
    }
    let mut out = Vec::with_capacity(by_month.len());
    for (month, events) in by_month {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for a in &events {
            h.update(&a.key().to_be_bytes());
        }
        let name = format!("month={month}/seg-p{partition:03}-{first_seq:012}-{last_seq:012}-{:016x}.parquet", h.digest());
        let batch = build_batch(&events, &name, ingested_at)?;
        let bytes = encode(&batch)?;
        out.push(Segment { name, month, rows: batch.num_rows(), bytes: bytes.into() });
    }
    Ok(out)
}

fn build_batch<A: LedgerEvent>(events: &[&A], segment: &str, ingested_at: DateTime<Utc>) -> Result<RecordBatch> {
    let rows: usize = events.iter().map(|a| a.meters()).sum();
    let mut key = FixedSizeBinaryBuilder::with_capacity(rows, 16);
    let mut id = StringBuilder::with_capacity(rows, rows * 16);
    let mut source = StringBuilder::with_capacity(rows, rows * 16);
    let mut customer = StringBuilder::with_capacity(rows, rows * 16);
    let mut meter = StringBuilder::with_capacity(rows, rows * 12);
    let mut time = TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC");
    let mut value = Decimal128Builder::with_capacity(rows)
        .with_precision_and_scale(VALUE_PRECISION, VALUE_SCALE)
        .map_err(|e| Error::Encoding(e.to_string()))?;
    let mut unique = StringBuilder::new();
    let mut group = StringBuilder::with_capacity(rows, rows * 24);
    // Each group key is written here, then appended as one value: the builder's `fmt::Write`
    // took a call per fragment (an eighth of encoding a 100k-event segment).
    let mut group_key = String::new();
    let mut seg = StringBuilder::with_capacity(rows, rows * segment.len());
    let mut ingested = TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC");
    let mut data = StringBuilder::with_capacity(rows, rows * 64);
    let at = ingested_at.timestamp_micros();
    for a in events {
        let (e_id, e_source, e_customer, e_time, e_data) = a.attributes();
        for i in 0..a.meters() {
            let (m, v, u) = a.meter(i);
            key.append_value(a.key().to_be_bytes()).map_err(|e| Error::Encoding(e.to_string()))?;
            id.append_value(e_id);
            source.append_value(e_source);
            customer.append_value(e_customer);
            meter.append_value(m);
            time.append_value(e_time.timestamp_micros());
            match v {
                Some(d) => value.append_value(to_scaled_i128(d, "ledger value Decimal(38, 9)")?),
                None => value.append_null(),
            }
            unique.append_option(u);
            group_key.clear();
            a.write_group_key(i, &mut group_key);
            group.append_value(&group_key);
            seg.append_value(segment);
            ingested.append_value(at);
            data.append_value(e_data);
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(key.finish()),
        Arc::new(id.finish()),
        Arc::new(source.finish()),
        Arc::new(customer.finish()),
        Arc::new(meter.finish()),
        Arc::new(time.finish()),
        Arc::new(value.finish()),
        Arc::new(unique.finish()),
        Arc::new(group.finish()),
        Arc::new(seg.finish()),
        Arc::new(ingested.finish()),
        Arc::new(data.finish()),
    ];
    RecordBatch::try_new(ledger::schema(), columns).map_err(|e| Error::Encoding(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::Validator;
    use meterline_schemas::meter::Meter;

    #[test]
    fn segments_read_back_with_the_ledger_schema_and_rows() {
        let meter: Meter = serde_json::from_str(
            r#"{"key":"tokens","event_type":"llm","aggregation":"SUM","value":"tokens","group_by":{"model":"model"}}"#,
        )
        .unwrap();
        let v = Validator::new(std::collections::HashMap::from([("llm".to_string(), vec![meter])]));
        let events: Vec<String> = (0..2_000)
            .map(|i| {
                format!(
                    r#"{{"specversion":"1.0","id":"e{i}","source":"s","type":"llm","subject":"c{}","time":"2026-{:02}-05T12:00:00.{i:03}Z","data":{{"tokens":{i}.5,"model":"m{}"}}}}"#,
                    i % 7,
                    10 + i % 2,
                    i % 3
                )
            })
            .collect();
        let body = format!("[{}]", events.join(","));
        let (mut ok, mut bad, mut moved) = (Vec::new(), Vec::new(), Vec::new());
        v.check_borrowed(body.as_bytes(), None, &mut ok, &mut bad, &mut moved);
        assert_eq!((ok.len(), bad.len()), (2_000, 0));
        let refs: Vec<_> = ok.iter().collect();
        let at = DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").unwrap().to_utc();
        let segments = build_segments(3, &refs, 10, 20, at).unwrap();
        assert_eq!(segments.len(), 2, "one segment per month");
        for seg in &segments {
            let reader = ParquetRecordBatchReaderBuilder::try_new(seg.bytes.clone()).unwrap().build().unwrap();
            let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
            assert_eq!(batches[0].schema(), ledger::schema(), "the Arrow schema is stored, time zones included");
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            assert_eq!((rows, seg.rows), (1_000, 1_000));
            let keys = read_keys(&seg.name, seg.bytes.clone()).unwrap();
            let expected: Vec<u128> = refs.iter().filter(|a| a.month == seg.month).map(|a| a.key).collect();
            assert_eq!(keys, expected, "the segment's keys, in batch order");
            let data = batches[0].column(11).as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
            let ids = batches[0].column(1).as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
            let i: usize = ids.value(0)[1..].parse().unwrap();
            assert_eq!(data.value(0), format!(r#"{{"tokens":{i}.5,"model":"m{}"}}"#, i % 3));
            // Every row's group key is its own event's, written whole (none runs into the next).
            let groups = batches[0].column(8).as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
            for row in 0..batches[0].num_rows() {
                let i: usize = ids.value(row)[1..].parse().unwrap();
                assert_eq!(groups.value(row), format!(r#"{{"model":"m{}"}}"#, i % 3), "row {row}");
            }
        }
    }

    #[tokio::test]
    async fn only_month_segments_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&LedgerConfig { path: dir.path().to_owned() }).unwrap();
        for f in [
            "month=2026-03/seg-p000-1-2-00.parquet",
            "month=2026-04/seg-p000-3-4-00.parquet",
            "month=2026-04/.staging",
            "rated-calls/period=2026-03/calls-00.parquet",
            "quarantine/month=2026-03/seg-p000-5-6-00.parquet",
        ] {
            let path = dir.path().join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"x").unwrap();
        }
        assert_eq!(ledger.list().await.unwrap(), ["month=2026-03/seg-p000-1-2-00.parquet", "month=2026-04/seg-p000-3-4-00.parquet"]);
    }
}
