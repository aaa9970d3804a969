//! Coupon discounts: one line per coupon in effect, after the charges and before tax.
//!
//! Order: first the coupons on one meter (in the subscription's `coupons` order), each on what
//! is left of that meter's rounded usage line; then the coupons on the whole subtotal (same
//! order), each on what is left of the subtotal (every rounded charge line and the discounts
//! before it). A base below zero counts as zero: a discount never makes a line or the invoice
//! negative, and never adds to a negative one.
//!
//! - percent: `−base × percent ÷ 100`, rounded once by `round_line` with the configured mode;
//!   it never exceeds the base because `percent ≤ 100` and the base is already on the
//!   currency's minor-unit grid.
//! - amount_off: `−min(amount_off, base)`, exact (both are on the grid); when the base is
//!   smaller the breakdown records `capped_from`.
//!
//! A coupon in effect always writes its line, even at 0.00, so the invoice shows it was applied.

use rust_decimal::Decimal;
use serde_json::json;

use meterline_rater::RatedSubscription;
use meterline_schemas::catalog::Catalog;
use meterline_schemas::discount::{Coupon, DiscountValue, applies_in};
use meterline_schemas::invoice::{InvoiceLineRow, LineKind};
use meterline_schemas::money::{Currency, RoundingMode, round_line};
use meterline_schemas::period::PeriodLabel;

use crate::build::Charge;
use crate::error::{Error, Result};

/// The discount lines for an invoice whose charge lines (rounded) are `charges`.
pub(crate) fn discounts(
    r: &RatedSubscription,
    catalog: &Catalog,
    label: PeriodLabel,
    charges: &[InvoiceLineRow],
    currency: Currency,
    rounding: RoundingMode,
) -> Result<Vec<Charge>> {
    let s = &r.subscription;
    let mut in_effect: Vec<(&Coupon, u32)> = Vec::new();
    for red in &s.coupons {
        let coupon = catalog
            .coupons
            .get(&red.code)
            .ok_or_else(|| Error::Catalog(format!("subscription {} redeems unknown coupon {}", s.id, red.code)))?;
        // Cycles of this subscription: quarters for a quarterly one.
        if let Some(cycle) = applies_in(coupon, label, &s.schedule(), red.start.unwrap_or(s.start)) {
            in_effect.push((coupon, cycle));
        }
    }
    let mut out = Vec::new();
    let mut meter_discounts: Decimal = Decimal::ZERO;
    let mut left_by_meter: std::collections::HashMap<&str, Decimal> = std::collections::HashMap::new();
    for (coupon, cycle) in in_effect.iter().filter(|(c, _)| c.meter.is_some()) {
        let meter = coupon.meter.as_deref().unwrap_or_default();
        let left = left_by_meter
            .entry(meter)
            .or_insert_with(|| charges.iter().filter(|l| l.kind == LineKind::Usage as i8 && l.meter == meter).map(|l| l.amount).sum());
        let target = catalog.meters.get(meter).and_then(|m| m.name.clone()).unwrap_or_else(|| meter.to_owned());
        let c = discount(coupon, *cycle, *left, &target, currency, rounding)?;
        let amount = round_line(c.unrounded, currency, rounding);
        *left += amount;
        meter_discounts += amount;
        out.push(c);
    }
    let mut left: Decimal = charges.iter().map(|l| l.amount).sum::<Decimal>() + meter_discounts;
    for (coupon, cycle) in in_effect.iter().filter(|(c, _)| c.meter.is_none()) {
        let c = discount(coupon, *cycle, left, "subtotal", currency, rounding)?;
        left += round_line(c.unrounded, currency, rounding);
        out.push(c);
    }
    Ok(out)
}

fn discount(coupon: &Coupon, cycle: u32, left: Decimal, target: &str, currency: Currency, rounding: RoundingMode) -> Result<Charge> {
    let base = left.max(Decimal::ZERO);
    let mut breakdown = json!({
        "coupon": coupon.code,
        "applies_to": coupon.meter.as_deref().map_or_else(|| "subtotal".to_owned(), |m| format!("meter {m}")),
        "base": currency.format(base),
        "duration": coupon.duration,
        "cycle": cycle,
        "cycles": coupon.cycles(),
    });
    if let Some(n) = &coupon.name {
        breakdown["name"] = json!(n);
    }
    let (unrounded, desc) = match coupon.value() {
        DiscountValue::Percent(p) => {
            breakdown["percent"] = json!(p.normalize().to_string());
            let exact = base
                .checked_mul(p)
                .and_then(|x| x.checked_div(Decimal::ONE_HUNDRED))
                .ok_or_else(|| Error::Overflow(format!("{p}% of {base}")))?;
            // Never more than the base, whatever the rounding mode (see the module docs).
            let capped = if round_line(-exact, currency, rounding) < -base { -base } else { -exact };
            (capped, format!("Coupon {}: {}% off {target}", coupon.code, p.normalize()))
        }
        DiscountValue::AmountOff(off) => {
            breakdown["amount_off"] = json!(currency.format(off));
            let mut desc = format!("Coupon {}: {} off {target}", coupon.code, currency.format(off));
            if off > base {
                breakdown["capped_from"] = json!(currency.format(off));
                desc.push_str(&format!(" (capped at {})", currency.format(base)));
            }
            (-(off.min(base)), desc)
        }
    };
    // No "-0": a zero discount is written as 0.
    let unrounded = if unrounded.is_zero() { Decimal::ZERO } else { unrounded };
    let mut c = Charge::new(LineKind::Discount, desc, base, "discount", unrounded, breakdown);
    c.meter = coupon.meter.clone().unwrap_or_default();
    Ok(c)
}
