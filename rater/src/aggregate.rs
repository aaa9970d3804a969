//! Aggregation of ledger segments per subscription window and meter.
//!
//! Per (subscription, meter): sum, count, min, max and the segment range for every meter; the
//! distinct count only for UNIQUE_COUNT meters and the latest value only for LATEST meters. Only
//! the files of the ledger's `month=` directories that overlap a window are read
//! ([`ledger_files`]); DataFusion reads each file and `fold.rs` folds its rows, checking each row
//! against its customer's windows (mid-period starts and ends, several subscriptions of one
//! customer), so no join is needed. Prices that need every event (percentage, telecom) stream the
//! rows of their meters through a SQL join with the windows instead ([`for_each_value`],
//! [`for_each_row`]).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Decimal128Type, Field, Schema, TimeUnit};
use chrono::{DateTime, Utc};
use datafusion::datasource::MemTable;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use rust_decimal::Decimal;

use meterline_schemas::ledger::col;
use meterline_schemas::period::PeriodLabel;

use crate::error::{Error, Result};
use crate::fold;

/// The window of one subscription to aggregate over.
#[derive(Debug, Clone)]
pub struct SubWindow {
    /// Subscription id.
    pub subscription: String,
    /// Customer key (ledger `customer`).
    pub customer: String,
    /// Start, inclusive.
    pub start: DateTime<Utc>,
    /// End, exclusive.
    pub end: DateTime<Utc>,
}

/// Aggregates of one meter for one subscription window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeterAggregates {
    /// Sum of values (0 when none).
    pub sum: Decimal,
    /// Number of ledger rows.
    pub count: u64,
    /// Smallest value.
    pub min: Option<Decimal>,
    /// Largest value.
    pub max: Option<Decimal>,
    /// Distinct unique values.
    pub unique: u64,
    /// Value of the latest event.
    pub latest: Option<Decimal>,
    /// The first and last ledger segment holding these rows (one name when they are the same).
    pub segments: Vec<String>,
}

/// Months (`YYYY-MM`) overlapped by any window.
fn months(windows: &[SubWindow]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for w in windows {
        let last = w.end - chrono::Duration::microseconds(1);
        let mut m = PeriodLabel::containing(w.start);
        let end = PeriodLabel::containing(last);
        while m <= end {
            out.insert(m.to_string());
            m = m.next();
        }
    }
    out
}

/// The ledger's Parquet files in the `month=` directories of `months`, sorted. A month with no
/// directory has no files. Only complete files are listed: segments are written under another
/// name and renamed into place.
pub fn ledger_files(root: &Path, months: &BTreeSet<String>) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for m in months {
        let dir = root.join(format!("month={m}"));
        let entries = match std::fs::read_dir(&dir) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::Ledger { location: dir.display().to_string(), message: e.to_string() }),
        };
        for e in entries {
            let e = e.map_err(|e| Error::Ledger { location: dir.display().to_string(), message: e.to_string() })?;
            let path = e.path();
            if path.extension().is_some_and(|x| x == "parquet") && e.file_type().is_ok_and(|t| t.is_file()) {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The ledger files a set of windows reads.
pub fn window_files(root: &Path, windows: &[SubWindow]) -> Result<Vec<PathBuf>> {
    if windows.is_empty() {
        return Ok(Vec::new());
    }
    let root = root.canonicalize().map_err(|e| Error::Ledger { location: root.display().to_string(), message: e.to_string() })?;
    ledger_files(&root, &months(windows))
}

/// Aggregates per (subscription, meter) over the ledger at `root` (a local directory).
/// `unique_meters` and `latest_meters` name the UNIQUE_COUNT and LATEST meters: their costlier
/// aggregates are computed for those meters only.
pub async fn aggregate(
    root: &Path,
    windows: &[SubWindow],
    unique_meters: &[String],
    latest_meters: &[String],
) -> Result<HashMap<(String, String), MeterAggregates>> {
    let by_window = aggregate_by_window(root, windows, unique_meters, latest_meters).await?;
    Ok(windows
        .iter()
        .zip(by_window)
        .flat_map(|(w, meters)| meters.into_iter().map(|(meter, agg)| ((w.subscription.clone(), meter), agg)))
        .collect())
}

/// [`aggregate`] by window: entry `i` holds the (meter, aggregates) of `windows[i]`, in no
/// particular order. No string-keyed map is built, which matters with 100k subscriptions.
pub async fn aggregate_by_window(
    root: &Path,
    windows: &[SubWindow],
    unique_meters: &[String],
    latest_meters: &[String],
) -> Result<Vec<Vec<(String, MeterAggregates)>>> {
    Ok(by_meter(query_all(root, windows, None, unique_meters, latest_meters).await?))
}

/// The fold's output: per window, (meter, group key, aggregates).
pub(crate) type Folded = Vec<Vec<(String, String, MeterAggregates)>>;

/// Per window, (meter, its groups sorted by key).
pub type GroupsByWindow = Vec<Vec<(String, Vec<(String, MeterAggregates)>)>>;

/// The fold's (meter, group, aggregates) per window of an ungrouped fold, as (meter, aggregates).
pub(crate) fn by_meter(rows: Folded) -> Vec<Vec<(String, MeterAggregates)>> {
    rows.into_iter().map(|w| w.into_iter().map(|(meter, _, agg)| (meter, agg)).collect()).collect()
}

/// The fold's (meter, group, aggregates) per window of a grouped fold, as (meter, groups sorted
/// by key).
pub(crate) fn by_meter_groups(rows: Folded) -> GroupsByWindow {
    rows.into_iter()
        .map(|w| {
            let mut by_meter: Vec<(String, Vec<(String, MeterAggregates)>)> = Vec::new();
            for (meter, group, agg) in w {
                match by_meter.iter_mut().find(|(m, _)| *m == meter) {
                    Some((_, groups)) => groups.push((group, agg)),
                    None => by_meter.push((meter, vec![(group, agg)])),
                }
            }
            for (_, groups) in &mut by_meter {
                groups.sort_by(|a, b| a.0.cmp(&b.0));
            }
            by_meter
        })
        .collect()
}

/// Aggregates per (subscription, meter, group key) for `meters` only (matrix prices), groups
/// sorted by key.
pub async fn aggregate_groups(
    root: &Path,
    windows: &[SubWindow],
    meters: &[String],
    unique_meters: &[String],
    latest_meters: &[String],
) -> Result<HashMap<(String, String), Vec<(String, MeterAggregates)>>> {
    let by_window = aggregate_groups_by_window(root, windows, meters, unique_meters, latest_meters).await?;
    Ok(windows
        .iter()
        .zip(by_window)
        .flat_map(|(w, meters)| meters.into_iter().map(|(meter, groups)| ((w.subscription.clone(), meter), groups)))
        .collect())
}

/// [`aggregate_groups`] by window: entry `i` holds the (meter, groups sorted by key) of
/// `windows[i]`.
pub async fn aggregate_groups_by_window(
    root: &Path,
    windows: &[SubWindow],
    meters: &[String],
    unique_meters: &[String],
    latest_meters: &[String],
) -> Result<GroupsByWindow> {
    if meters.is_empty() {
        return Ok(vec![Vec::new(); windows.len()]);
    }
    let only = |list: &[String]| list.iter().filter(|m| meters.contains(m)).cloned().collect::<Vec<_>>();
    Ok(by_meter_groups(query_all(root, windows, Some(meters), &only(unique_meters), &only(latest_meters)).await?))
}

/// Below this many customers, the scan is narrowed by a customer IN-list first.
const IN_LIST_MAX: usize = 1_000;

/// Every aggregate per (window, meter, group key) in one scan of the ledger, folded in Rust
/// (`fold.rs`): entry `i` is `windows[i]`'s; `by_group` keeps group keys for those meters only.
async fn query_all(
    root: &Path,
    windows: &[SubWindow],
    by_group: Option<&[String]>,
    unique_meters: &[String],
    latest_meters: &[String],
) -> Result<Folded> {
    let wanted = fold::Wanted { grouped: by_group.is_some(), unique_meters: unique_meters.to_vec(), latest_meters: latest_meters.to_vec() };
    let mut state = fold::FoldState::new(windows, wanted);
    fold_files(&mut state, &window_files(root, windows)?, windows, by_group).await?;
    state.aggregates()
}

/// Folds the rows of `files` inside the windows into `state` (built for the same `windows`);
/// `by_group` as in [`query_all`].
pub(crate) async fn fold_files(
    state: &mut fold::FoldState,
    files: &[PathBuf],
    windows: &[SubWindow],
    by_group: Option<&[String]>,
) -> Result<()> {
    if windows.is_empty() || files.is_empty() {
        return Ok(());
    }
    // The fold checks each row against its customer's windows; the time range only lets
    // Parquet statistics skip files, so it is left out when the windows cover the files' months.
    let (start, end) = windows.iter().fold((windows[0].start, windows[0].end), |(s, e), w| (s.min(w.start), e.max(w.end)));
    let months = months(windows);
    let covered = |m: Option<&String>, f: fn(PeriodLabel) -> DateTime<Utc>| m.and_then(|m| m.parse::<PeriodLabel>().ok()).map(f);
    let whole =
        covered(months.first(), |m| m.cycle_start(1)) == Some(start) && covered(months.last(), |m| m.next().cycle_start(1)) == Some(end);
    let customers: BTreeSet<&str> = windows.iter().map(|w| w.customer.as_str()).collect();
    let scan = fold::Scan {
        time: (!whole).then_some((start, end)),
        meters: by_group.map(<[String]>::to_vec),
        customers: (customers.len() <= IN_LIST_MAX).then(|| customers.iter().map(|c| (*c).to_owned()).collect()),
    };
    state.add(files, &scan).await
}

/// Streams every (subscription, meter, value) of `meters` inside the windows to `f`, batch by
/// batch (memory stays bounded), for prices that charge each event. Segments of those rows are
/// returned per (subscription, meter), sorted.
pub async fn for_each_value(
    root: &Path,
    windows: &[SubWindow],
    meters: &[String],
    f: impl FnMut(&str, &str, Decimal) -> Result<()>,
) -> Result<HashMap<(String, String), Vec<String>>> {
    let mut segments = HashMap::new();
    for_each_value_in(&window_files(root, windows)?, windows, meters, &mut segments, f).await?;
    Ok(segments.into_iter().map(|(k, v)| (k, v.into_iter().collect())).collect())
}

/// [`for_each_value`] over `files`, adding each row's segment to `segments`.
pub(crate) async fn for_each_value_in(
    files: &[PathBuf],
    windows: &[SubWindow],
    meters: &[String],
    segments: &mut HashMap<(String, String), BTreeSet<String>>,
    mut f: impl FnMut(&str, &str, Decimal) -> Result<()>,
) -> Result<()> {
    if meters.is_empty() || windows.is_empty() || files.is_empty() {
        return Ok(());
    }
    let ctx = context(files, windows).await?;
    let meter_list = meters.iter().map(|m| format!("'{m}'")).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT w.subscription, l.{meter}, l.{value}, l.{segment} FROM ledger l JOIN windows w ON l.{customer} = w.customer \
         WHERE l.{meter} IN ({meter_list}) AND l.{time} >= w.w_start AND l.{time} < w.w_end",
        meter = col::METER,
        value = col::VALUE,
        segment = col::SEGMENT,
        customer = col::CUSTOMER,
        time = col::EVENT_TIME,
    );
    let mut stream = ctx.sql(&sql).await?.execute_stream().await?;
    while let Some(batch) = stream.next().await {
        let b = batch?;
        let (subs, ms, segs) = (strings(b.column(0))?, strings(b.column(1))?, strings(b.column(3))?);
        for i in 0..b.num_rows() {
            let (sub, meter) = (subs[i].as_deref().unwrap_or_default(), ms[i].as_deref().unwrap_or_default());
            f(sub, meter, decimal(b.column(2), i)?.unwrap_or_default())?;
            if let Some(seg) = &segs[i] {
                segments.entry((sub.to_owned(), meter.to_owned())).or_default().insert(seg.clone());
            }
        }
    }
    Ok(())
}

/// One ledger row of a per-call meter, as [`for_each_row`] hands it over.
#[derive(Debug, Clone, Copy)]
pub struct LedgerRow<'a> {
    /// Subscription whose window holds the row.
    pub subscription: &'a str,
    /// Meter key.
    pub meter: &'a str,
    /// CloudEvents id.
    pub event_id: &'a str,
    /// CloudEvents source.
    pub source: &'a str,
    /// Event time.
    pub time: DateTime<Utc>,
    /// The meter's value (0 when null).
    pub value: Decimal,
    /// The raw `data` object.
    pub data: &'a str,
    /// The segment holding the row.
    pub segment: &'a str,
}

/// Streams every ledger row of `meters` inside the windows to `f`, ordered by subscription,
/// meter and event key (so every caller sees the same order), for prices that rate each event
/// from its `data` (telecom). Memory stays bounded by the batch size plus what `f` keeps.
pub async fn for_each_row(root: &Path, windows: &[SubWindow], meters: &[String], f: impl FnMut(LedgerRow<'_>) -> Result<()>) -> Result<()> {
    for_each_row_in(&window_files(root, windows)?, windows, meters, f).await
}

/// [`for_each_row`] over `files`.
pub(crate) async fn for_each_row_in(
    files: &[PathBuf],
    windows: &[SubWindow],
    meters: &[String],
    mut f: impl FnMut(LedgerRow<'_>) -> Result<()>,
) -> Result<()> {
    if meters.is_empty() || windows.is_empty() || files.is_empty() {
        return Ok(());
    }
    let ctx = context(files, windows).await?;
    let meter_list = meters.iter().map(|m| format!("'{m}'")).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT w.subscription, l.{meter}, l.{id}, l.{source}, l.{time}, l.{value}, l.{data}, l.{segment} \
         FROM ledger l JOIN windows w ON l.{customer} = w.customer \
         WHERE l.{meter} IN ({meter_list}) AND l.{time} >= w.w_start AND l.{time} < w.w_end \
         ORDER BY w.subscription, l.{meter}, l.{key}",
        meter = col::METER,
        id = col::EVENT_ID,
        source = col::SOURCE,
        time = col::EVENT_TIME,
        value = col::VALUE,
        data = col::DATA,
        segment = col::SEGMENT,
        customer = col::CUSTOMER,
        key = col::EVENT_KEY,
    );
    let mut stream = ctx.sql(&sql).await?.execute_stream().await?;
    while let Some(batch) = stream.next().await {
        let b = batch?;
        let (subs, ms, ids, sources) = (strings(b.column(0))?, strings(b.column(1))?, strings(b.column(2))?, strings(b.column(3))?);
        let (datas, segs) = (strings(b.column(6))?, strings(b.column(7))?);
        let times = arrow::compute::cast(b.column(4), &DataType::Timestamp(TimeUnit::Microsecond, None))?;
        let times = times.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        for i in 0..b.num_rows() {
            let micros = times.value(i);
            let time = DateTime::<Utc>::from_timestamp_micros(micros)
                .ok_or_else(|| Error::Ledger { location: "ledger".into(), message: format!("event time {micros} µs is out of range") })?;
            let text = |v: &[Option<String>]| v[i].clone().unwrap_or_default();
            f(LedgerRow {
                subscription: &text(&subs),
                meter: &text(&ms),
                event_id: &text(&ids),
                source: &text(&sources),
                time,
                value: decimal(b.column(5), i)?.unwrap_or_default(),
                data: &text(&datas),
                segment: &text(&segs),
            })?;
        }
    }
    Ok(())
}

/// A session with `files` as the table `ledger` and the windows registered.
async fn context(files: &[PathBuf], windows: &[SubWindow]) -> Result<SessionContext> {
    let config = SessionConfig::new().with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()));
    let ctx = SessionContext::new_with_config(config);
    let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    let ledger = ctx.read_parquet(paths, ParquetReadOptions::default()).await?;
    ctx.register_table("ledger", ledger.into_view())?;
    ctx.register_table("windows", Arc::new(windows_table(windows)?))?;
    Ok(ctx)
}

fn windows_table(windows: &[SubWindow]) -> Result<MemTable> {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let schema = Arc::new(Schema::new(vec![
        Field::new("subscription", DataType::Utf8, false),
        Field::new("customer", DataType::Utf8, false),
        Field::new("w_start", ts.clone(), false),
        Field::new("w_end", ts, false),
    ]));
    let micros = |f: fn(&SubWindow) -> DateTime<Utc>| {
        TimestampMicrosecondArray::from(windows.iter().map(|w| f(w).timestamp_micros()).collect::<Vec<_>>()).with_timezone("UTC")
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(windows.iter().map(|w| w.subscription.as_str()))),
        Arc::new(StringArray::from_iter_values(windows.iter().map(|w| w.customer.as_str()))),
        Arc::new(micros(|w| w.start)),
        Arc::new(micros(|w| w.end)),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(MemTable::try_new(schema, vec![vec![batch]])?)
}

fn strings(a: &ArrayRef) -> Result<Vec<Option<String>>> {
    let utf8 = arrow::compute::cast(a, &DataType::Utf8)?;
    Ok(utf8.as_string::<i32>().iter().map(|s| s.map(str::to_owned)).collect())
}

fn decimal(a: &ArrayRef, i: usize) -> Result<Option<Decimal>> {
    if a.is_null(i) {
        return Ok(None);
    }
    let (scale, v) = match a.data_type() {
        DataType::Decimal128(_, s) => (*s, a.as_primitive::<Decimal128Type>().value(i)),
        other => return Err(Error::Ledger { location: "ledger".into(), message: format!("unexpected value type {other}") }),
    };
    let scale = u32::try_from(scale).map_err(|_| Error::Overflow { what: format!("negative decimal scale {scale}") })?;
    Decimal::try_from_i128_with_scale(v, scale)
        .map(|d| Some(d.normalize()))
        .map_err(|_| Error::Overflow { what: format!("aggregate {v}e-{scale}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn w(sub: &str, customer: &str, start: &str, end: &str) -> SubWindow {
        SubWindow { subscription: sub.into(), customer: customer.into(), start: t(start), end: t(end) }
    }

    #[test]
    fn quarterly_windows_read_every_month() {
        // A quarter [15 Jan, 15 Apr) touches four ledger months; an end on a month boundary does
        // not read the next month.
        let q = w("q1", "a", "2026-01-15T00:00:00Z", "2026-04-15T00:00:00Z");
        assert_eq!(months(std::slice::from_ref(&q)), ["2026-01", "2026-02", "2026-03", "2026-04"].map(String::from).into());
        let cal = w("q2", "b", "2026-01-01T00:00:00Z", "2026-04-01T00:00:00Z");
        assert_eq!(months(std::slice::from_ref(&cal)), ["2026-01", "2026-02", "2026-03"].map(String::from).into());
    }
}
