//! The aggregation of the rating against a row-by-row reference: random ledger rows (null values,
//! repeated unique values, ties in event time, several segments and months) and windows of every
//! shape (one per customer, a plan change, overlapping windows, a customer without any), written
//! as real Parquet segments and aggregated by `aggregate` / `aggregate_groups`; the expected
//! aggregates are computed here by scanning the same rows one at a time.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{ArrayRef, Decimal128Array, FixedSizeBinaryArray, RecordBatch, StringArray, TimestampMicrosecondArray};
use chrono::{DateTime, Duration, TimeZone, Utc};
use parquet::arrow::ArrowWriter;
use proptest::prelude::*;
use rust_decimal::Decimal;

use meterline_rater::aggregate::{MeterAggregates, SubWindow, aggregate, aggregate_groups};
use meterline_schemas::ledger;

/// (customer 0..4, meter 0..3, value in cents or null, unique value or null, group 0..3,
/// minute offset from 1 Oct (ties likely), event id tiebreak, segment 0..4)
type Row = (u8, u8, Option<i64>, Option<u8>, u8, u16, u8, u8);

const METERS: [&str; 3] = ["s", "u", "l"];

fn row() -> impl Strategy<Value = Row> {
    (
        0u8..4,
        0u8..3,
        prop::option::weighted(0.8, -500i64..5_000),
        prop::option::weighted(0.8, 0u8..6),
        0u8..3,
        0u16..(45 * 24 * 4),
        any::<u8>(),
        0u8..4,
    )
        .prop_map(|(c, m, v, u, g, min, id, seg)| (c, m, v, u, g, min * 15, id, seg))
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap()
}

fn time(r: &Row) -> DateTime<Utc> {
    start() + Duration::minutes(i64::from(r.5))
}

fn event_id(i: usize, r: &Row) -> String {
    format!("{:03}-{i:05}", r.6)
}

fn segment(r: &Row) -> String {
    format!("month={}/seg-{:04}.parquet", time(r).format("%Y-%m"), r.7)
}

fn group(r: &Row) -> String {
    format!("{{\"region\":\"r{}\"}}", r.4)
}

fn windows() -> Vec<SubWindow> {
    let t = |m: u32, d: u32| Utc.with_ymd_and_hms(2026, m, d, 0, 0, 0).unwrap();
    let w = |sub: &str, c: &str, s, e| SubWindow { subscription: sub.into(), customer: c.into(), start: s, end: e };
    vec![
        w("full", "c0", t(10, 1), t(11, 1)),
        w("before", "c1", t(10, 1), t(10, 15)),
        w("after", "c1", t(10, 15), t(11, 10)),
        w("first", "c2", t(10, 5), t(10, 20)),
        w("overlap", "c2", t(10, 10), t(11, 1)),
        // c3 has no window: its rows count nowhere.
    ]
}

/// Writes the rows as Parquet segments of the ledger schema under `root`.
fn write(root: &std::path::Path, rows: &[Row]) {
    let mut files: BTreeMap<String, Vec<(usize, &Row)>> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        files.entry(segment(r)).or_default().push((i, r));
    }
    for (name, rs) in files {
        let path = root.join(&name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let micros = |t: DateTime<Utc>| t.timestamp_micros();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(FixedSizeBinaryArray::try_from_iter(rs.iter().map(|(i, _)| u128::try_from(*i).unwrap().to_be_bytes())).unwrap()),
            Arc::new(StringArray::from_iter_values(rs.iter().map(|(i, r)| event_id(*i, r)))),
            Arc::new(StringArray::from_iter_values(rs.iter().map(|_| "prop"))),
            Arc::new(StringArray::from_iter_values(rs.iter().map(|(_, r)| format!("c{}", r.0)))),
            Arc::new(StringArray::from_iter_values(rs.iter().map(|(_, r)| METERS[usize::from(r.1)]))),
            Arc::new(TimestampMicrosecondArray::from_iter_values(rs.iter().map(|(_, r)| micros(time(r)))).with_timezone("UTC")),
            Arc::new(
                Decimal128Array::from_iter(rs.iter().map(|(_, r)| r.2.map(|c| i128::from(c) * 10_000_000)))
                    .with_precision_and_scale(ledger::VALUE_PRECISION, ledger::VALUE_SCALE)
                    .unwrap(),
            ),
            Arc::new(StringArray::from_iter(rs.iter().map(|(_, r)| r.3.map(|u| format!("user-{u}"))))),
            Arc::new(StringArray::from_iter_values(rs.iter().map(|(_, r)| group(r)))),
            Arc::new(StringArray::from_iter_values(rs.iter().map(|_| name.clone()))),
            Arc::new(TimestampMicrosecondArray::from_iter_values(rs.iter().map(|_| micros(start()))).with_timezone("UTC")),
            Arc::new(StringArray::from_iter_values(rs.iter().map(|_| "{}"))),
        ];
        let batch = RecordBatch::try_new(ledger::schema(), cols).unwrap();
        let mut w = ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), ledger::schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }
}

/// The reference: every row of a customer counts in every window of it containing its time.
fn reference(rows: &[Row], grouped: Option<&[&str]>) -> HashMap<(String, String, String), MeterAggregates> {
    #[derive(Default)]
    struct Acc {
        sum: Decimal,
        count: u64,
        min: Option<Decimal>,
        max: Option<Decimal>,
        unique: BTreeSet<String>,
        latest: Option<(DateTime<Utc>, String, Option<Decimal>)>,
        segments: BTreeSet<String>,
    }
    let mut accs: HashMap<(String, String, String), Acc> = HashMap::new();
    for w in windows() {
        for (i, r) in rows.iter().enumerate() {
            let (t, meter) = (time(r), METERS[usize::from(r.1)]);
            if format!("c{}", r.0) != w.customer || t < w.start || t >= w.end {
                continue;
            }
            let g = match grouped {
                Some(ms) if ms.contains(&meter) => group(r),
                Some(_) => continue,
                None => String::new(),
            };
            let a = accs.entry((w.subscription.clone(), meter.to_owned(), g)).or_default();
            let v = r.2.map(|c| Decimal::new(c, 2));
            a.count += 1;
            if let Some(v) = v {
                a.sum += v;
                a.min = Some(a.min.map_or(v, |m| m.min(v)));
                a.max = Some(a.max.map_or(v, |m| m.max(v)));
            }
            if meter == "u"
                && let Some(u) = r.3
            {
                a.unique.insert(format!("user-{u}"));
            }
            let id = event_id(i, r);
            if meter == "l" && a.latest.as_ref().is_none_or(|(lt, lid, _)| (t, &id) > (*lt, lid)) {
                a.latest = Some((t, id, v));
            }
            a.segments.insert(segment(r));
        }
    }
    accs.into_iter()
        .map(|(k, a)| {
            let mut segments = vec![a.segments.first().unwrap().clone()];
            if a.segments.len() > 1 {
                segments.push(a.segments.last().unwrap().clone());
            }
            let agg = MeterAggregates {
                sum: a.sum,
                count: a.count,
                min: a.min,
                max: a.max,
                unique: a.unique.len() as u64,
                latest: a.latest.and_then(|l| l.2),
                segments,
            };
            (k, agg)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn aggregates_equal_a_row_by_row_reference(rows in prop::collection::vec(row(), 0..300)) {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &rows);
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (u, l) = (vec!["u".to_owned()], vec!["l".to_owned()]);
        let got = rt.block_on(aggregate(dir.path(), &windows(), &u, &l)).unwrap();
        let want: HashMap<(String, String), MeterAggregates> =
            reference(&rows, None).into_iter().map(|((s, m, _), a)| ((s, m), a)).collect();
        prop_assert_eq!(got, want);

        let grouped = ["s".to_owned(), "u".to_owned()];
        let got = rt.block_on(aggregate_groups(dir.path(), &windows(), &grouped, &u, &l)).unwrap();
        let mut want: HashMap<(String, String), Vec<(String, MeterAggregates)>> = HashMap::new();
        for ((s, m, g), a) in reference(&rows, Some(&["s", "u"])) {
            want.entry((s, m)).or_default().push((g, a));
        }
        for groups in want.values_mut() {
            groups.sort_by(|a, b| a.0.cmp(&b.0));
        }
        prop_assert_eq!(got, want);
    }
}
