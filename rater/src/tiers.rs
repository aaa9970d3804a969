//! Price model evaluation: quantity in, exact (unrounded) amount and its breakdown out.
//!
//! Semantics are fixed in `meterline_schemas::price` and docs/PRICING.md. Nothing here rounds:
//! the invoicer rounds each line once, to the currency's minor unit.

use rust_decimal::Decimal;
use serde::Serialize;

use meterline_schemas::price::{PackageRounding, PriceModel, Tier};

use crate::error::{Error, Result};

/// What one tier contributed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TierCharge {
    /// 1-based tier number.
    pub tier: usize,
    /// Lower bound (exclusive) of the tier.
    pub from: Decimal,
    /// Upper bound (inclusive); `None` when unbounded.
    pub up_to: Option<Decimal>,
    /// Units priced in this tier.
    pub quantity: Decimal,
    /// Unit price of the tier.
    pub unit_price: Decimal,
    /// Flat fee of the tier, charged when entered.
    pub flat_fee: Decimal,
    /// `quantity × unit_price + flat_fee` (package: `packages × unit_price`).
    pub amount: Decimal,
    /// Package model: blocks charged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packages: Option<Decimal>,
    /// Matrix model: the group-by values this charge is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// An exact amount with the tiers that produced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Priced {
    /// Unrounded amount.
    pub amount: Decimal,
    /// Per-tier contributions (one entry for per-unit and package, one per group for matrix).
    pub tiers: Vec<TierCharge>,
    /// Free units deducted before pricing.
    #[serde(skip_serializing_if = "Decimal::is_zero")]
    pub free_units: Decimal,
    /// The amount before `max_amount` capped it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capped_from: Option<Decimal>,
    /// Percentage model: what the per-event charges added up to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percentage: Option<crate::pricing::PercentageTotals>,
}

impl Priced {
    pub(crate) fn new(amount: Decimal, tiers: Vec<TierCharge>) -> Priced {
        Priced { amount, tiers, free_units: Decimal::ZERO, capped_from: None, percentage: None }
    }
}

impl TierCharge {
    pub(crate) fn new(
        tier: usize,
        from: Decimal,
        up_to: Option<Decimal>,
        quantity: Decimal,
        unit_price: Decimal,
        flat_fee: Decimal,
        amount: Decimal,
    ) -> Self {
        TierCharge { tier, from, up_to, quantity, unit_price, flat_fee, amount, packages: None, group: None }
    }
}

pub(crate) fn mul(a: Decimal, b: Decimal, what: &str) -> Result<Decimal> {
    a.checked_mul(b).ok_or_else(|| Error::Overflow { what: what.to_owned() })
}

fn add(a: Decimal, b: Decimal, what: &str) -> Result<Decimal> {
    a.checked_add(b).ok_or_else(|| Error::Overflow { what: what.to_owned() })
}

/// Prices `quantity` units of `meter` with `model` (every model but matrix, which prices per
/// group: see [`crate::pricing`]).
pub fn price(meter: &str, model: &PriceModel, quantity: Decimal) -> Result<Priced> {
    match model {
        PriceModel::PerUnit { unit_price } => {
            let amount = mul(quantity, *unit_price, meter)?.normalize();
            Ok(Priced::new(amount, vec![TierCharge::new(1, Decimal::ZERO, None, quantity, *unit_price, Decimal::ZERO, amount)]))
        }
        PriceModel::Graduated { tiers } => {
            non_negative(meter, model, quantity)?;
            graduated(meter, tiers, quantity)
        }
        PriceModel::Volume { tiers } => {
            non_negative(meter, model, quantity)?;
            volume(meter, tiers, quantity)
        }
        PriceModel::Package { size, package_price, round } => {
            non_negative(meter, model, quantity)?;
            package(meter, *size, *package_price, *round, quantity)
        }
        PriceModel::Matrix { .. } => Err(Error::NeedsGroups { meter: meter.to_owned() }),
        PriceModel::Percentage { .. } => Err(Error::NeedsEvents { meter: meter.to_owned() }),
        PriceModel::Telecom { .. } => Err(Error::NeedsCalls { meter: meter.to_owned() }),
    }
}

/// Blocks of `size` at `package_price`; a partial block rounded by `round`.
fn package(meter: &str, size: Decimal, package_price: Decimal, round: PackageRounding, quantity: Decimal) -> Result<Priced> {
    if quantity.is_zero() {
        return Ok(Priced::new(Decimal::ZERO, Vec::new()));
    }
    let blocks = quantity.checked_div(size).ok_or_else(|| Error::Overflow { what: meter.to_owned() })?;
    let packages = match round {
        PackageRounding::Up => blocks.ceil(),
        PackageRounding::Down => blocks.floor(),
    };
    let amount = mul(packages, package_price, meter)?.normalize();
    let mut charge = TierCharge::new(1, Decimal::ZERO, None, quantity, package_price, Decimal::ZERO, amount);
    charge.packages = Some(packages);
    Ok(Priced::new(amount, vec![charge]))
}

fn non_negative(meter: &str, model: &PriceModel, quantity: Decimal) -> Result<()> {
    if quantity < Decimal::ZERO {
        return Err(Error::NegativeQuantity { meter: meter.to_owned(), model: model.name(), quantity: quantity.to_string() });
    }
    Ok(())
}

fn graduated(meter: &str, tiers: &[Tier], quantity: Decimal) -> Result<Priced> {
    let mut out = Priced::new(Decimal::ZERO, Vec::new());
    let mut lower = Decimal::ZERO;
    for (i, t) in tiers.iter().enumerate() {
        if quantity <= lower {
            break;
        }
        let upper = t.up_to.map_or(quantity, |u| u.min(quantity));
        let units = upper - lower;
        let amount = add(mul(units, t.unit_price, meter)?, t.flat_fee, meter)?.normalize();
        out.amount = add(out.amount, amount, meter)?.normalize();
        out.tiers.push(TierCharge::new(i + 1, lower, t.up_to, units, t.unit_price, t.flat_fee, amount));
        match t.up_to {
            Some(u) => lower = u,
            None => break,
        }
    }
    Ok(out)
}

fn volume(meter: &str, tiers: &[Tier], quantity: Decimal) -> Result<Priced> {
    if quantity.is_zero() {
        return Ok(Priced::new(Decimal::ZERO, Vec::new()));
    }
    let mut lower = Decimal::ZERO;
    for (i, t) in tiers.iter().enumerate() {
        if t.up_to.is_none_or(|u| quantity <= u) {
            let amount = add(mul(quantity, t.unit_price, meter)?, t.flat_fee, meter)?.normalize();
            return Ok(Priced::new(amount, vec![TierCharge::new(i + 1, lower, t.up_to, quantity, t.unit_price, t.flat_fee, amount)]));
        }
        lower = t.up_to.unwrap_or(lower);
    }
    // Validation guarantees an unbounded last tier; a stored catalog bypassing it is refused here.
    Err(Error::Overflow { what: format!("{meter}: quantity {quantity} is above the last tier") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    fn tier(up_to: Option<&str>, unit: &str, flat: &str) -> Tier {
        Tier { up_to: up_to.map(d), unit_price: d(unit), flat_fee: d(flat) }
    }

    /// 0–1000 at 0.10, 1000–5000 at 0.08 plus a 5.00 fee when entered, above at 0.05.
    fn tiers() -> Vec<Tier> {
        vec![tier(Some("1000"), "0.10", "0"), tier(Some("5000"), "0.08", "5"), tier(None, "0.05", "0")]
    }

    fn amount(model: &PriceModel, q: &str) -> Decimal {
        price("m", model, d(q)).unwrap().amount
    }

    #[test]
    fn per_unit() {
        let m = PriceModel::PerUnit { unit_price: d("0.0015") };
        assert_eq!(amount(&m, "0"), d("0"));
        assert_eq!(amount(&m, "1234"), d("1.851")); // 1234 × 0.0015
        assert_eq!(amount(&m, "0.5"), d("0.00075"));
        assert_eq!(amount(&m, "-10"), d("-0.015")); // corrections may be negative
    }

    #[test]
    fn graduated_tier_boundaries() {
        let m = PriceModel::Graduated { tiers: tiers() };
        assert_eq!(amount(&m, "0"), d("0"));
        assert_eq!(amount(&m, "1"), d("0.10"));
        // exactly on the first bound: all in tier 1, tier 2's fee not charged
        assert_eq!(amount(&m, "1000"), d("100.00"));
        // one unit over: 1000 × 0.10 + 1 × 0.08 + 5
        assert_eq!(amount(&m, "1001"), d("105.08"));
        // exactly on the second bound: 100 + 4000 × 0.08 + 5 = 425
        assert_eq!(amount(&m, "5000"), d("425.00"));
        // 100 + 320 + 5 + 1000 × 0.05 = 475
        assert_eq!(amount(&m, "6000"), d("475.00"));
        // fractional: 1000.5 → 100 + 0.5 × 0.08 + 5
        assert_eq!(amount(&m, "1000.5"), d("105.04"));
        let p = price("m", &m, d("6000")).unwrap();
        assert_eq!(p.tiers.len(), 3);
        assert_eq!(p.tiers[1].quantity, d("4000"));
        assert_eq!(p.tiers[2].from, d("5000"));
        assert_eq!(p.tiers.iter().map(|t| t.amount).sum::<Decimal>(), p.amount);
    }

    #[test]
    fn volume_tier_boundaries() {
        let m = PriceModel::Volume { tiers: tiers() };
        assert_eq!(amount(&m, "0"), d("0"));
        assert_eq!(amount(&m, "999"), d("99.90"));
        // on the bound: the lower tier prices all units
        assert_eq!(amount(&m, "1000"), d("100.00"));
        // one over: all 1001 units at 0.08, plus tier 2's fee
        assert_eq!(amount(&m, "1001"), d("85.08"));
        assert_eq!(amount(&m, "5000"), d("405.00"));
        assert_eq!(amount(&m, "5001"), d("250.05"));
        let p = price("m", &m, d("5001")).unwrap();
        assert_eq!((p.tiers.len(), p.tiers[0].tier, p.tiers[0].from), (1, 3, d("5000")));
    }

    #[test]
    fn package_rounds_partial_blocks() {
        let up = PriceModel::Package { size: d("1000"), package_price: d("2.50"), round: PackageRounding::Up };
        let down = PriceModel::Package { size: d("1000"), package_price: d("2.50"), round: PackageRounding::Down };
        assert_eq!(amount(&up, "0"), d("0"));
        assert_eq!(amount(&up, "1"), d("2.50")); // 1 unit opens a block
        assert_eq!(amount(&up, "1000"), d("2.50")); // exactly one block
        assert_eq!(amount(&up, "1001"), d("5.00")); // one over: a second block
        assert_eq!(amount(&down, "1999"), d("2.50")); // the partial block is free
        assert_eq!(amount(&down, "999"), d("0"));
        assert_eq!(price("m", &up, d("2500")).unwrap().tiers[0].packages, Some(d("3")));
    }

    #[test]
    fn tiered_models_refuse_negative_quantities() {
        let e = price("tokens", &PriceModel::Volume { tiers: tiers() }, d("-1")).unwrap_err().to_string();
        assert!(e.contains("tokens") && e.contains("-1") && e.contains("volume"), "{e}");
    }

    #[test]
    fn single_tier_graduated_equals_volume() {
        let one = vec![tier(None, "0.25", "1")];
        for q in ["0", "1", "7.5", "1000000"] {
            assert_eq!(
                amount(&PriceModel::Graduated { tiers: one.clone() }, q),
                amount(&PriceModel::Volume { tiers: one.clone() }, q),
                "q={q}"
            );
        }
    }
}
