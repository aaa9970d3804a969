//! Pricing one usage line: free units, the model, per-group matrix prices, and the amount cap.
//!
//! Order of operations, fixed and documented in docs/PRICING.md:
//! 1. free units: `billable = max(quantity − free_units, 0)` (negative quantities — corrections —
//!    are not reduced);
//! 2. the model prices `billable` (matrix: each group's quantity at its entry's unit price;
//!    percentage: each event's value, see [`PercentageTotals`]);
//! 3. the cap: `amount = min(amount, max_amount)`.
//!
//! Nothing is rounded here; the invoicer rounds the line once.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;

use meterline_schemas::price::{MatrixEntry, Price, PriceModel};

use crate::error::{Error, Result};
use crate::tiers::{Priced, TierCharge, mul, price};

/// The per-event charges of a percentage price over a period, accumulated exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PercentageTotals {
    /// Events charged.
    pub events: u64,
    /// Sum of their values.
    pub base: Decimal,
    /// Sum of their charges (unrounded).
    pub charges: Decimal,
    /// Events raised to `min_fee`.
    pub at_min_fee: u64,
    /// Events lowered to `max_fee`.
    pub at_max_fee: u64,
}

impl PercentageTotals {
    /// Adds one event of `value` under `model` (a percentage model).
    pub fn add(&mut self, meter: &str, model: &PriceModel, value: Decimal) -> Result<()> {
        let PriceModel::Percentage { rate, fixed_fee, min_fee, max_fee } = model else {
            return Err(Error::NeedsEvents { meter: meter.to_owned() });
        };
        let overflow = || Error::Overflow { what: meter.to_owned() };
        let mut charge = mul(value, *rate, meter)?.checked_add(*fixed_fee).ok_or_else(overflow)?;
        if let Some(lo) = min_fee
            && charge < *lo
        {
            charge = *lo;
            self.at_min_fee += 1;
        }
        if let Some(hi) = max_fee
            && charge > *hi
        {
            charge = *hi;
            self.at_max_fee += 1;
        }
        self.events += 1;
        self.base = self.base.checked_add(value).ok_or_else(overflow)?;
        self.charges = self.charges.checked_add(charge).ok_or_else(overflow)?.normalize();
        Ok(())
    }
}

/// Prices a percentage line from its accumulated events, then applies the cap.
pub fn price_percentage(p: &Price, totals: PercentageTotals) -> Priced {
    let mut priced = Priced::new(totals.charges, Vec::new());
    priced.percentage = Some(totals);
    cap(p, priced)
}

fn cap(p: &Price, mut priced: Priced) -> Priced {
    if let Some(max) = p.max_amount
        && priced.amount > max
    {
        priced.capped_from = Some(priced.amount);
        priced.amount = max;
    }
    priced
}

/// Prices a line of `p`: `quantity` in total, and per group for matrix prices. A percentage
/// price takes `quantity` as the value of one event (what `meterline price` previews).
pub fn price_line(p: &Price, quantity: Decimal, groups: &[(String, Decimal)]) -> Result<Priced> {
    let priced = match &p.model {
        PriceModel::Matrix { entries, default_unit_price } => matrix(&p.meter, entries, *default_unit_price, groups)?,
        PriceModel::Percentage { .. } => {
            let mut totals = PercentageTotals::default();
            totals.add(&p.meter, &p.model, quantity)?;
            return Ok(price_percentage(p, totals));
        }
        model => {
            let free = if quantity > Decimal::ZERO { p.free_units.min(quantity) } else { Decimal::ZERO };
            let mut priced = price(&p.meter, model, quantity - free)?;
            priced.free_units = free;
            priced
        }
    };
    Ok(cap(p, priced))
}

/// Each group priced by the first entry whose `when` values all match its dimensions.
fn matrix(meter: &str, entries: &[MatrixEntry], default_unit_price: Decimal, groups: &[(String, Decimal)]) -> Result<Priced> {
    let mut out = Priced::new(Decimal::ZERO, Vec::new());
    for (group, quantity) in groups {
        let dims: BTreeMap<String, String> =
            if group.is_empty() { BTreeMap::new() } else { serde_json::from_str(group).unwrap_or_default() };
        let matched = entries.iter().position(|e| e.when.iter().all(|(k, v)| dims.get(k) == Some(v)));
        let unit_price = matched.map_or(default_unit_price, |i| entries[i].unit_price);
        let amount = mul(*quantity, unit_price, meter)?.normalize();
        // tier = the matching entry's number (1-based); 0 = the default price
        let mut charge = TierCharge::new(matched.map_or(0, |i| i + 1), Decimal::ZERO, None, *quantity, unit_price, Decimal::ZERO, amount);
        charge.group = Some(group.clone());
        out.amount = out.amount.checked_add(amount).ok_or_else(|| Error::Overflow { what: meter.to_owned() })?;
        out.tiers.push(charge);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meterline_schemas::price::PackageRounding;

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    fn p(model: PriceModel, free: &str, max: Option<&str>) -> Price {
        Price { meter: "m".into(), model, free_units: d(free), max_amount: max.map(d) }
    }

    #[test]
    fn free_units_come_off_before_the_model() {
        let per_unit = p(PriceModel::PerUnit { unit_price: d("0.10") }, "100", None);
        assert_eq!(price_line(&per_unit, d("250"), &[]).unwrap().amount, d("15.0")); // 150 × 0.10
        let all_free = price_line(&per_unit, d("60"), &[]).unwrap();
        assert_eq!((all_free.amount, all_free.free_units), (d("0"), d("60")));
        assert_eq!(price_line(&per_unit, d("-5"), &[]).unwrap().amount, d("-0.50")); // corrections are not reduced
        let pkg = p(PriceModel::Package { size: d("10"), package_price: d("1"), round: PackageRounding::Up }, "5", None);
        assert_eq!(price_line(&pkg, d("16"), &[]).unwrap().amount, d("2")); // 11 billable → 2 packages
    }

    #[test]
    fn cap_limits_the_amount_and_records_it() {
        let capped = p(PriceModel::PerUnit { unit_price: d("2") }, "0", Some("50"));
        let x = price_line(&capped, d("30"), &[]).unwrap();
        assert_eq!((x.amount, x.capped_from), (d("50"), Some(d("60"))));
        let y = price_line(&capped, d("20"), &[]).unwrap();
        assert_eq!((y.amount, y.capped_from), (d("40"), None));
    }

    #[test]
    fn percentage_charges_each_event_within_min_and_max() {
        // 2.9% + 0.30 per payment, at least 0.50, at most 10.00.
        let model = PriceModel::Percentage { rate: d("0.029"), fixed_fee: d("0.30"), min_fee: Some(d("0.50")), max_fee: Some(d("10")) };
        let mut t = PercentageTotals::default();
        for v in ["100", "5", "1000", "20"] {
            t.add("payments", &model, d(v)).unwrap();
        }
        // 100 → 3.20; 5 → 0.445 → min 0.50; 1000 → 29.30 → max 10; 20 → 0.88
        assert_eq!((t.events, t.base, t.charges, t.at_min_fee, t.at_max_fee), (4, d("1125"), d("14.58"), 1, 1));
        let price = p(model, "0", Some("12"));
        let x = price_percentage(&price, t);
        assert_eq!((x.amount, x.capped_from), (d("12"), Some(d("14.58"))));
        assert_eq!(price_line(&price, d("100"), &[]).unwrap().amount, d("3.2"));
    }

    #[test]
    fn matrix_prices_each_group_by_first_match_or_default() {
        let entries = vec![
            MatrixEntry { when: BTreeMap::from([("model".into(), "large".into()), ("region".into(), "eu".into())]), unit_price: d("0.05") },
            MatrixEntry { when: BTreeMap::from([("model".into(), "large".into())]), unit_price: d("0.04") },
            MatrixEntry { when: BTreeMap::from([("model".into(), "small".into())]), unit_price: d("0.01") },
        ];
        let m = p(PriceModel::Matrix { entries, default_unit_price: d("0.02") }, "0", None);
        let groups = vec![
            (r#"{"model":"large","region":"eu"}"#.to_string(), d("10")),  // entry 1: 0.50
            (r#"{"model":"large","region":"us"}"#.to_string(), d("10")),  // entry 2: 0.40
            (r#"{"model":"small","region":"us"}"#.to_string(), d("100")), // entry 3: 1.00
            (r#"{"model":"medium","region":"us"}"#.to_string(), d("5")),  // default: 0.10
        ];
        let x = price_line(&m, d("125"), &groups).unwrap();
        assert_eq!(x.amount, d("2.00"));
        assert_eq!(x.tiers.iter().map(|t| t.tier).collect::<Vec<_>>(), vec![1, 2, 3, 0]);
        assert_eq!(x.tiers[3].group.as_deref(), Some(r#"{"model":"medium","region":"us"}"#));
    }
}
