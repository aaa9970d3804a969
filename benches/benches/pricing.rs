//! Pricing and rounding throughput: how many quantities per second the rating path prices and
//! rounds. Each benchmark sets `Throughput::Elements`, so results read in elements/s.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rust_decimal::Decimal;

use meterline_rater::tiers::price;
use meterline_schemas::money::{Currency, RoundingMode, round_line};
use meterline_schemas::price::{PriceModel, Tier};

fn d(s: &str) -> Decimal {
    Decimal::from_str_exact(s).expect("bench constant")
}

fn tiers() -> Vec<Tier> {
    vec![
        Tier { up_to: Some(d("1000000")), unit_price: d("0"), flat_fee: d("0") },
        Tier { up_to: Some(d("10000000")), unit_price: d("0.000002"), flat_fee: d("0") },
        Tier { up_to: None, unit_price: d("0.0000015"), flat_fee: d("5") },
    ]
}

fn quantities(n: u64) -> Vec<Decimal> {
    (0..n).map(|i| Decimal::from(i * 7919 % 20_000_000)).collect()
}

fn bench(c: &mut Criterion) {
    let qs = quantities(10_000);
    let mut g = c.benchmark_group("pricing");
    g.throughput(Throughput::Elements(qs.len() as u64));
    for model in
        [PriceModel::PerUnit { unit_price: d("0.0004") }, PriceModel::Graduated { tiers: tiers() }, PriceModel::Volume { tiers: tiers() }]
    {
        g.bench_function(model.name(), |b| {
            b.iter(|| {
                for q in &qs {
                    black_box(price("m", &model, *q).expect("priced"));
                }
            })
        });
    }
    g.finish();

    let amounts: Vec<Decimal> = qs.iter().map(|q| *q * d("0.0000017")).collect();
    let usd = Currency::from_code("USD").expect("USD");
    let mut g = c.benchmark_group("rounding");
    g.throughput(Throughput::Elements(amounts.len() as u64));
    for mode in [RoundingMode::HalfEven, RoundingMode::HalfUp] {
        g.bench_function(mode.as_str(), |b| {
            b.iter(|| {
                for a in &amounts {
                    black_box(round_line(*a, usd, mode));
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
