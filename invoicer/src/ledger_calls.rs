//! Rated call records in the ledger: Parquet files beside the usage segments, the durable record
//! of how each call was priced (ClickHouse `rated_calls` is the queryable copy).
//!
//! A period's calls live under `rated-calls/period=YYYY-MM/` of the ledger root (outside the
//! `month=` directories, so neither rating, dedup nor the mirror reads them). Each file holds
//! calls not stored in the period's earlier files: the first close writes all of them, a close
//! within the grace window that finds late calls writes just those. A file is named by the xxh3-64
//! of its rows (`calls-<hash>.parquet`) and written create-only (staging file, fsync, link,
//! fsync of the directories), like ledger segments: two closers computing the same calls write
//! the same name once, and a crash leaves either the whole file or none. Two closers that read
//! the ledger at different moments may both write a late call; rating is a function of the
//! ledger and the catalog, so both rows are identical and [`read`] keeps one per (subscription,
//! source, event id).
//!
//! Columns are those of `rated_calls` (migration 0008) without `version`: times as
//! `Timestamp(s, UTC)`, `price_per_minute` and `connect_fee` as `Decimal128(38, 9)` (exact),
//! `amount` as the exact decimal text, counts as `UInt64`.

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, AsArray, Decimal128Array, RecordBatch, StringArray, TimestampSecondArray, UInt64Array};
use arrow::datatypes::{DataType, Decimal128Type, Field, Schema, SchemaRef, TimeUnit, TimestampSecondType, UInt64Type};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rust_decimal::Decimal;

use meterline_schemas::invoice::RatedCallRow;
use meterline_schemas::money::{COLUMN_SCALE, to_scaled_i128};

use crate::error::{Error, Result};

/// Directory of rated calls under the ledger root.
pub const DIR: &str = "rated-calls";

/// Where a period's rated calls live.
pub fn period_dir(ledger_root: &Path, period: &str) -> PathBuf {
    ledger_root.join(DIR).join(format!("period={period}"))
}

const STRINGS: [&str; 11] = [
    "period",
    "subscription_id",
    "customer",
    "meter",
    "rate_table",
    "event_id",
    "source",
    "destination",
    "matched_prefix",
    "description",
    "band",
];

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let ts = DataType::Timestamp(TimeUnit::Second, Some("UTC".into()));
    let dec = DataType::Decimal128(38, COLUMN_SCALE as i8);
    let mut fields: Vec<Field> = STRINGS.iter().map(|n| Field::new(*n, DataType::Utf8, false)).collect();
    fields.extend([
        Field::new("period_start", ts.clone(), false),
        Field::new("event_time", ts.clone(), false),
        Field::new("answered_at", ts, false),
        Field::new("duration_secs", DataType::UInt64, false),
        Field::new("billed_secs", DataType::UInt64, false),
        Field::new("price_per_minute", dec.clone(), false),
        Field::new("connect_fee", dec, false),
        Field::new("amount", DataType::Utf8, false),
        Field::new("currency", DataType::Utf8, false),
        Field::new("segment", DataType::Utf8, false),
    ]);
    Arc::new(Schema::new(fields))
});

/// The Arrow schema of rated-call files.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

fn strings(r: &RatedCallRow) -> [&str; 11] {
    [
        &r.period,
        &r.subscription_id,
        &r.customer,
        &r.meter,
        &r.rate_table,
        &r.event_id,
        &r.source,
        &r.destination,
        &r.matched_prefix,
        &r.description,
        &r.band,
    ]
}

fn ledger_err(what: impl std::fmt::Display) -> Error {
    Error::Ledger(what.to_string())
}

fn batch(rows: &[&RatedCallRow]) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> =
        (0..STRINGS.len()).map(|i| Arc::new(StringArray::from_iter_values(rows.iter().map(|r| strings(r)[i]))) as ArrayRef).collect();
    let time = |f: fn(&RatedCallRow) -> u32| {
        Arc::new(TimestampSecondArray::from_iter_values(rows.iter().map(|r| i64::from(f(r)))).with_timezone("UTC")) as ArrayRef
    };
    columns.extend([time(|r| r.period_start), time(|r| r.event_time), time(|r| r.answered_at)]);
    columns.push(Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.duration_secs))));
    columns.push(Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.billed_secs))));
    for f in [|r: &RatedCallRow| r.price_per_minute, |r: &RatedCallRow| r.connect_fee] {
        let values = rows.iter().map(|r| to_scaled_i128(f(r), "rated call price")).collect::<std::result::Result<Vec<_>, _>>()?;
        columns.push(Arc::new(Decimal128Array::from(values).with_precision_and_scale(38, COLUMN_SCALE as i8).map_err(ledger_err)?));
    }
    columns.push(Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.amount.as_str()))));
    columns.push(Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.currency.as_str()))));
    columns.push(Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.segment.as_str()))));
    RecordBatch::try_new(schema(), columns).map_err(ledger_err)
}

fn rows_of(b: &RecordBatch) -> Result<Vec<RatedCallRow>> {
    let col = |name: &str| b.column_by_name(name).ok_or_else(|| ledger_err(format!("rated-call file lacks column {name}")));
    let text = |name: &str| -> Result<&StringArray> {
        col(name)?.as_string_opt::<i32>().ok_or_else(|| ledger_err(format!("rated-call column {name} is not Utf8")))
    };
    let secs = |name: &str| -> Result<&arrow::array::PrimitiveArray<TimestampSecondType>> {
        col(name)?
            .as_primitive_opt::<TimestampSecondType>()
            .ok_or_else(|| ledger_err(format!("rated-call column {name} is not Timestamp(s)")))
    };
    let count = |name: &str| -> Result<&UInt64Array> {
        col(name)?.as_primitive_opt::<UInt64Type>().ok_or_else(|| ledger_err(format!("rated-call column {name} is not UInt64")))
    };
    let dec = |name: &str| -> Result<&Decimal128Array> {
        col(name)?.as_primitive_opt::<Decimal128Type>().ok_or_else(|| ledger_err(format!("rated-call column {name} is not Decimal128")))
    };
    let s: Vec<&StringArray> = STRINGS.iter().map(|n| text(n)).collect::<Result<_>>()?;
    let (period_start, event_time, answered_at) = (secs("period_start")?, secs("event_time")?, secs("answered_at")?);
    let (duration, billed) = (count("duration_secs")?, count("billed_secs")?);
    let (ppm, fee) = (dec("price_per_minute")?, dec("connect_fee")?);
    let scale = ppm.scale();
    let (amount, currency, segment) = (text("amount")?, text("currency")?, text("segment")?);
    let u32_of = |a: &arrow::array::PrimitiveArray<TimestampSecondType>, i: usize| u32::try_from(a.value(i)).unwrap_or(u32::MAX);
    let decimal = |a: &Decimal128Array, i: usize| {
        Decimal::try_from_i128_with_scale(a.value(i), u32::try_from(scale).unwrap_or_default())
            .map(|d| d.normalize())
            .map_err(|e| ledger_err(format!("rated-call decimal: {e}")))
    };
    (0..b.num_rows())
        .map(|i| {
            let v = |k: usize| s[k].value(i).to_owned();
            Ok(RatedCallRow {
                period: v(0),
                subscription_id: v(1),
                customer: v(2),
                meter: v(3),
                rate_table: v(4),
                event_id: v(5),
                source: v(6),
                destination: v(7),
                matched_prefix: v(8),
                description: v(9),
                band: v(10),
                period_start: u32_of(period_start, i),
                event_time: u32_of(event_time, i),
                answered_at: u32_of(answered_at, i),
                duration_secs: duration.value(i),
                billed_secs: billed.value(i),
                price_per_minute: decimal(ppm, i)?,
                connect_fee: decimal(fee, i)?,
                amount: amount.value(i).to_owned(),
                currency: currency.value(i).to_owned(),
                segment: segment.value(i).to_owned(),
                version: 1,
            })
        })
        .collect()
}

type CallKey = (String, String, String);

fn key(r: &RatedCallRow) -> CallKey {
    (r.subscription_id.clone(), r.source.clone(), r.event_id.clone())
}

fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ledger_err(format!("list {}: {e}", dir.display()))),
    };
    let mut out = Vec::new();
    for e in entries {
        let path = e.map_err(|e| ledger_err(format!("list {}: {e}", dir.display())))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with("calls-") && name.ends_with(".parquet") {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Every rated call of `period` in the ledger, one per (subscription, source, event id), in
/// that order (blocking file reads: for worker threads).
pub fn read_blocking(ledger_root: &Path, period: &str) -> Result<Vec<RatedCallRow>> {
    let mut by_key: BTreeMap<CallKey, RatedCallRow> = BTreeMap::new();
    for path in files(&period_dir(ledger_root, period))? {
        let file = std::fs::File::open(&path).map_err(|e| ledger_err(format!("open {}: {e}", path.display())))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .map_err(|e| ledger_err(format!("read {}: {e}", path.display())))?;
        for b in reader {
            let b = b.map_err(|e| ledger_err(format!("read {}: {e}", path.display())))?;
            for row in rows_of(&b)? {
                by_key.entry(key(&row)).or_insert(row);
            }
        }
    }
    Ok(by_key.into_values().collect())
}

/// [`read_blocking`] on a worker thread.
pub async fn read(ledger_root: &Path, period: &str) -> Result<Vec<RatedCallRow>> {
    let (root, period) = (ledger_root.to_owned(), period.to_owned());
    tokio::task::spawn_blocking(move || read_blocking(&root, &period)).await.map_err(|e| ledger_err(format!("read task: {e}")))?
}

/// What [`write()`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerCallsWritten {
    /// Calls written now.
    pub rows: usize,
    /// The file written, relative to the ledger root (none when every call was stored).
    pub file: Option<String>,
}

/// Writes the calls of `period` not in the ledger yet as one file, durably; see the module
/// documentation.
pub async fn write(ledger_root: &Path, period: &str, rows: &BTreeMap<String, Vec<RatedCallRow>>) -> Result<LedgerCallsWritten> {
    if rows.values().all(Vec::is_empty) {
        return Ok(LedgerCallsWritten::default());
    }
    let (root, period, rows) = (ledger_root.to_owned(), period.to_owned(), rows.clone());
    tokio::task::spawn_blocking(move || write_blocking(&root, &period, &rows)).await.map_err(|e| ledger_err(format!("write task: {e}")))?
}

fn write_blocking(root: &Path, period: &str, rows: &BTreeMap<String, Vec<RatedCallRow>>) -> Result<LedgerCallsWritten> {
    let stored: HashSet<CallKey> = read_blocking(root, period)?.iter().map(key).collect();
    let mut new: Vec<&RatedCallRow> = rows.values().flatten().filter(|r| !stored.contains(&key(r))).collect();
    if new.is_empty() {
        return Ok(LedgerCallsWritten::default());
    }
    new.sort_by_key(|r| key(r));
    let b = batch(&new)?;
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut bytes = Vec::new();
    let mut w = ArrowWriter::try_new(&mut bytes, b.schema(), Some(props)).map_err(ledger_err)?;
    w.write(&b).map_err(ledger_err)?;
    w.close().map_err(ledger_err)?;
    // The name is the rows' content: the same calls always make the same file.
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for r in &new {
        h.update(serde_json::to_string(r)?.as_bytes());
        h.update(b"\n");
    }
    let dir = period_dir(root, period);
    let name = format!("calls-{:016x}.parquet", h.digest());
    std::fs::create_dir_all(&dir).map_err(|e| ledger_err(format!("create {}: {e}", dir.display())))?;
    let target = dir.join(&name);
    let staging = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let io = |what: &str, p: &Path, e: std::io::Error| ledger_err(format!("{what} {}: {e}", p.display()));
    {
        let mut f = std::fs::File::create(&staging).map_err(|e| io("create", &staging, e))?;
        f.write_all(&bytes).map_err(|e| io("write", &staging, e))?;
        f.sync_all().map_err(|e| io("fsync", &staging, e))?;
    }
    // Create-only: a file of that name holds the same rows already.
    let linked = std::fs::hard_link(&staging, &target);
    let _ = std::fs::remove_file(&staging);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("link", &target, e)),
    }
    for d in [dir.as_path(), dir.parent().unwrap_or(root), root] {
        std::fs::File::open(d).and_then(|f| f.sync_all()).map_err(|e| io("fsync", d, e))?;
    }
    let file = format!("{DIR}/period={period}/{name}");
    tracing::debug!(file = %file, rows = new.len(), "rated calls written to the ledger");
    Ok(LedgerCallsWritten { rows: new.len(), file: Some(file) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(sub: &str, id: &str, amount: &str, ppm: &str) -> RatedCallRow {
        RatedCallRow {
            period: "2026-03".into(),
            period_start: 1_772_323_200,
            subscription_id: sub.into(),
            customer: "acme".into(),
            meter: "calls".into(),
            rate_table: "uk".into(),
            event_id: id.into(),
            source: "switch".into(),
            event_time: 1_772_452_800,
            answered_at: 1_772_452_790,
            destination: "+44 20 7946 0000".into(),
            matched_prefix: "44".into(),
            description: "United Kingdom".into(),
            band: "peak".into(),
            duration_secs: 37,
            billed_secs: 42,
            price_per_minute: Decimal::from_str_exact(ppm).unwrap(),
            connect_fee: Decimal::from_str_exact("0.05").unwrap(),
            amount: amount.into(),
            currency: "USD".into(),
            segment: "month=2026-03/seg-p000-000000000001-000000000009-00000000000000ff.parquet".into(),
            version: 1,
        }
    }

    fn by_sub(rows: &[RatedCallRow]) -> BTreeMap<String, Vec<RatedCallRow>> {
        let mut m: BTreeMap<String, Vec<RatedCallRow>> = BTreeMap::new();
        for r in rows {
            m.entry(r.subscription_id.clone()).or_default().push(r.clone());
        }
        m
    }

    #[tokio::test]
    async fn calls_round_trip_exactly_and_are_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let first = [
            row("s1", "c1", "0.134", "0.0137"),
            row("s1", "c2", "0.0084483333333333333333333333", "0.123456789"),
            row("s2", "c1", "0", "1"),
        ];
        let w = write(root, "2026-03", &by_sub(&first)).await.unwrap();
        assert_eq!(w.rows, 3);
        let file = w.file.unwrap();
        assert!(file.starts_with("rated-calls/period=2026-03/calls-") && file.ends_with(".parquet"), "{file}");
        assert!(root.join(&file).is_file());
        // Read back field for field (sorted by subscription, source, event id).
        assert_eq!(read(root, "2026-03").await.unwrap(), first.to_vec());
        // A second close with the same calls writes nothing.
        assert_eq!(write(root, "2026-03", &by_sub(&first)).await.unwrap(), LedgerCallsWritten::default());
        // A late call: only it is written, in a second file; all four read back.
        let mut more = first.to_vec();
        more.push(row("s1", "c3", "0.09", "0.05"));
        let w = write(root, "2026-03", &by_sub(&more)).await.unwrap();
        assert_eq!(w.rows, 1);
        assert_ne!(w.file.as_deref(), Some(file.as_str()));
        more.sort_by_key(key);
        assert_eq!(read(root, "2026-03").await.unwrap(), more);
        assert_eq!(files(&period_dir(root, "2026-03")).unwrap().len(), 2);
        // Other periods are apart; no staging files are left behind.
        assert!(read(root, "2026-04").await.unwrap().is_empty());
        let names: Vec<String> =
            std::fs::read_dir(period_dir(root, "2026-03")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert!(names.iter().all(|n| n.starts_with("calls-")), "{names:?}");
    }

    #[test]
    fn a_call_in_two_files_is_read_once() {
        // Two closers that saw the ledger at different moments both wrote c2.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let a = [row("s1", "c1", "0.1", "0.05"), row("s1", "c2", "0.2", "0.05")];
        let b = [row("s1", "c2", "0.2", "0.05")];
        assert_eq!(write_blocking(root, "2026-03", &by_sub(&b)).unwrap().rows, 1);
        std::fs::rename(
            period_dir(root, "2026-03").join(files(&period_dir(root, "2026-03")).unwrap()[0].file_name().unwrap()),
            period_dir(root, "2026-03").join("calls-b.parquet"),
        )
        .unwrap();
        // Written as if the other closer had not seen that file.
        let hidden = root.join("hidden");
        assert_eq!(write_blocking(&hidden, "2026-03", &by_sub(&a)).unwrap().rows, 2);
        for f in files(&period_dir(&hidden, "2026-03")).unwrap() {
            std::fs::rename(&f, period_dir(root, "2026-03").join(f.file_name().unwrap())).unwrap();
        }
        assert_eq!(files(&period_dir(root, "2026-03")).unwrap().len(), 2);
        assert_eq!(read_blocking(root, "2026-03").unwrap(), a.to_vec());
    }
}
