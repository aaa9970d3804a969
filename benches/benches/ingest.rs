//! Ingest hot paths: CloudEvent decoding (single and batch), meter validation, the exact dedup
//! table at 1M and 10M keys, and Arrow batch building + Parquet encoding of a segment. Each sets
//! `Throughput::Elements` (events or keys), so results read in elements/s.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use meterline_ingest::dedup::KeyTable;
use meterline_ingest::segment::build_segments;
use meterline_ingest::validate::{Accepted, Validator};
use meterline_loadtest::mix::{Mix, MixShares};
use meterline_schemas::event::decode_message;

/// `n` valid events of the load-test mix (API, LLM, storage, telecom), as JSON bodies.
fn bodies(n: u64) -> Vec<bytes::Bytes> {
    let now = Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).single().expect("valid time");
    let start = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().expect("valid time");
    let mut mix = Mix::new(1, MixShares { duplicates_ppm: 0, late_ppm: 0, invalid_ppm: 0 }, 1000, "bench");
    (0..n).map(|i| mix.next(i, now, start).body).collect()
}

fn validator() -> Validator {
    let start = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().expect("valid time");
    Validator::new(meterline_loadtest::catalog::build(1000, start).expect("catalog").meters_by_event_type())
}

fn decode(c: &mut Criterion) {
    let events = bodies(1000);
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("single events", |b| {
        b.iter(|| {
            for e in &events {
                black_box(decode_message(e));
            }
        })
    });
    let mut batch = b"[".to_vec();
    for (i, e) in events.iter().take(100).enumerate() {
        if i > 0 {
            batch.push(b',');
        }
        batch.extend_from_slice(e);
    }
    batch.push(b']');
    g.throughput(Throughput::Elements(100));
    g.bench_function("batch of 100", |b| b.iter(|| black_box(decode_message(&batch))));
    g.finish();

    let v = validator();
    let mut g = c.benchmark_group("validate");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("decode + meters + key", |b| {
        b.iter(|| {
            let (mut ok, mut bad) = (Vec::with_capacity(events.len()), Vec::new());
            for e in &events {
                v.check(e, &mut ok, &mut bad);
            }
            black_box((ok, bad))
        })
    });
    g.finish();
}

fn key(i: u64) -> u128 {
    xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes())
}

fn dedup(c: &mut Criterion) {
    const OPS: u64 = 10_000;
    let mut g = c.benchmark_group("dedup");
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(OPS));
    for n in [1_000_000u64, 10_000_000] {
        let label = format!("{}M", n / 1_000_000);
        // Sized for the inserts below too, so no batch pays for a resize.
        let cap = (n + n / 20 + OPS) as usize;
        let mut table = KeyTable::with_capacity(cap);
        for i in 0..n {
            table.insert(key(i));
        }
        // Half members, half not: a stream of mostly new events with some redeliveries.
        g.bench_function(format!("contains at {label}"), |b| {
            let mut i = 0u64;
            b.iter(|| {
                for _ in 0..OPS {
                    i += 1;
                    black_box(table.contains(key(if i.is_multiple_of(2) { i % n } else { n + i })));
                }
            })
        });
        // New keys, timed per batch; the table is rebuilt (untimed) whenever it has grown by 5%,
        // so every batch inserts into a table of n to 1.05 n keys.
        g.bench_function(format!("insert at {label}"), |b| {
            let mut next = n;
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    if next >= n + n / 20 {
                        table = KeyTable::with_capacity(cap);
                        for i in 0..n {
                            table.insert(key(i));
                        }
                        next = n;
                    }
                    let t = Instant::now();
                    for _ in 0..OPS {
                        black_box(table.insert(key(next)));
                        next += 1;
                    }
                    total += t.elapsed();
                }
                total
            })
        });
    }
    g.finish();
}

fn segments(c: &mut Criterion) {
    let events = bodies(20_000);
    let v = validator();
    let (mut ok, mut bad): (Vec<Accepted>, _) = (Vec::new(), Vec::new());
    for e in &events {
        v.check(e, &mut ok, &mut bad);
    }
    assert!(bad.is_empty(), "bench events are valid");
    let refs: Vec<&Accepted> = ok.iter().collect();
    let at = Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).single().expect("valid time");
    let mut g = c.benchmark_group("segment");
    g.sample_size(20);
    g.throughput(Throughput::Elements(refs.len() as u64));
    g.bench_function("arrow batch + parquet, 20k events", |b| {
        b.iter(|| black_box(build_segments(0, &refs, 1, 20_000, at).expect("encoded")))
    });
    g.finish();
}

criterion_group!(benches, decode, dedup, segments);
criterion_main!(benches);
