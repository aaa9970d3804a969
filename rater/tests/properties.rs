//! Property tests of pricing and rounding invariants.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use proptest::prelude::*;
use rust_decimal::Decimal;

use meterline_rater::tiers::price;
use meterline_schemas::money::{Currency, RoundingMode, round_line};
use meterline_schemas::price::{PriceModel, Tier};

/// A quantity with up to 3 decimals, 0 to 10^7.
fn quantity() -> impl Strategy<Value = Decimal> {
    (0u64..10_000_000_000).prop_map(|n| Decimal::new(i64::try_from(n).unwrap(), 3))
}

/// A non-negative price with up to 6 decimals.
fn unit_price() -> impl Strategy<Value = Decimal> {
    (0i64..5_000_000).prop_map(|n| Decimal::new(n, 6))
}

/// 1 to 5 tiers with strictly increasing bounds, the last unbounded.
fn tiers() -> impl Strategy<Value = Vec<Tier>> {
    prop::collection::vec((1i64..2_000_000, unit_price(), (0i64..10_000).prop_map(|n| Decimal::new(n, 2))), 1..=5).prop_map(|spec| {
        let mut bound = Decimal::ZERO;
        let n = spec.len();
        spec.into_iter()
            .enumerate()
            .map(|(i, (step, unit_price, flat_fee))| {
                bound += Decimal::from(step);
                Tier { up_to: (i + 1 < n).then_some(bound), unit_price, flat_fee }
            })
            .collect()
    })
}

fn mode() -> impl Strategy<Value = RoundingMode> {
    prop_oneof![Just(RoundingMode::HalfEven), Just(RoundingMode::HalfUp), Just(RoundingMode::Up), Just(RoundingMode::Down)]
}

fn currency() -> impl Strategy<Value = Currency> {
    prop_oneof![Just("JPY"), Just("USD"), Just("EUR"), Just("KWD"), Just("CLF")].prop_map(|c| Currency::from_code(c).unwrap())
}

proptest! {
    #[test]
    fn graduated_is_monotonic_in_quantity(t in tiers(), a in quantity(), b in quantity()) {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let m = PriceModel::Graduated { tiers: t };
        prop_assert!(price("m", &m, lo).unwrap().amount <= price("m", &m, hi).unwrap().amount);
    }

    #[test]
    fn graduated_tiers_add_up(t in tiers(), q in quantity()) {
        let p = price("m", &PriceModel::Graduated { tiers: t }, q).unwrap();
        prop_assert_eq!(p.tiers.iter().map(|c| c.quantity).sum::<Decimal>(), q);
        prop_assert_eq!(p.tiers.iter().map(|c| c.amount).sum::<Decimal>(), p.amount);
    }

    #[test]
    fn volume_and_graduated_agree_on_one_tier(up in unit_price(), fee in 0i64..10_000, q in quantity()) {
        let one = vec![Tier { up_to: None, unit_price: up, flat_fee: Decimal::new(fee, 2) }];
        let g = price("m", &PriceModel::Graduated { tiers: one.clone() }, q).unwrap().amount;
        let v = price("m", &PriceModel::Volume { tiers: one }, q).unwrap().amount;
        prop_assert_eq!(g, v);
    }

    #[test]
    fn volume_prices_every_unit_in_one_tier(t in tiers(), q in quantity()) {
        let p = price("m", &PriceModel::Volume { tiers: t }, q).unwrap();
        if q.is_zero() {
            prop_assert!(p.tiers.is_empty() && p.amount.is_zero());
        } else {
            prop_assert_eq!(p.tiers.len(), 1);
            prop_assert_eq!(p.tiers[0].quantity, q);
            prop_assert!(q > p.tiers[0].from && p.tiers[0].up_to.is_none_or(|u| q <= u));
        }
    }

    #[test]
    fn rounding_stays_within_one_minor_unit_and_is_idempotent(
        n in -10_000_000_000_000i64..10_000_000_000_000, scale in 0u32..10, c in currency(), m in mode()
    ) {
        let amount = Decimal::new(n, scale);
        let r = round_line(amount, c, m);
        let unit = Decimal::new(1, c.minor_units());
        prop_assert_eq!(r.scale(), c.minor_units());
        prop_assert_eq!(round_line(r, c, m), r);
        let diff = (r - amount).abs();
        match m {
            RoundingMode::HalfEven | RoundingMode::HalfUp => prop_assert!(diff * Decimal::TWO <= unit),
            RoundingMode::Up => prop_assert!(diff < unit && r.abs() >= amount.abs()),
            RoundingMode::Down => prop_assert!(diff < unit && r.abs() <= amount.abs()),
        }
    }
}
