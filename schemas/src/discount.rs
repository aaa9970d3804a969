//! Coupons: percentage or fixed-amount discounts with a duration, redeemed by subscriptions.
//!
//! A coupon (catalog `coupons:`) takes either `percent` (0–100) or `amount_off` (with its
//! `currency`, at most the currency's minor-unit decimals) off either the whole invoice subtotal
//! or, with `meter`, the usage line of one meter. A subscription redeems it with
//! `coupons: [{ code, start }]` (`start` defaults to the subscription's start).
//!
//! Duration counts the subscription's billing cycles (months, quarters or years) of calendar
//! time from the cycle that contains the redemption start (cycle 1): `once` applies in cycle 1
//! only, `repeating` with `periods: N` in cycles 1..=N, `forever` in every cycle from cycle 1 on. A cycle in which the subscription has no invoice
//! still counts. A coupon redeemed mid-cycle applies in full to that cycle's invoice (it is
//! not prorated). How discounts are computed and rounded is in docs/PRICING.md and
//! `meterline-invoicer` (`discounts.rs`).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::money::{Currency, exact};
use crate::period::{PeriodLabel, Schedule};

/// How long a redeemed coupon applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CouponDuration {
    /// The first cycle only.
    Once,
    /// `periods` cycles.
    Repeating,
    /// Every cycle.
    Forever,
}

/// A coupon as written in a catalog file and stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coupon {
    /// Code printed on discount lines and named by subscriptions.
    pub code: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Percentage off, 0–100 (`"20"` is 20%).
    #[serde(default, with = "exact::option")]
    pub percent: Option<Decimal>,
    /// Fixed amount off, in `currency`.
    #[serde(default, with = "exact::option")]
    pub amount_off: Option<Decimal>,
    /// Currency of `amount_off` (required with it, refused without it).
    #[serde(default)]
    pub currency: Option<String>,
    /// Discount only this meter's usage line; the whole subtotal when absent.
    #[serde(default)]
    pub meter: Option<String>,
    /// `once`, `repeating` (with `periods`) or `forever`.
    pub duration: CouponDuration,
    /// Number of cycles for `repeating`.
    #[serde(default)]
    pub periods: Option<u32>,
}

/// What a coupon takes off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscountValue {
    /// A percentage (0–100) of the base.
    Percent(Decimal),
    /// A fixed amount, capped at the base.
    AmountOff(Decimal),
}

impl Coupon {
    /// What the coupon takes off (validated: exactly one of `percent` and `amount_off`).
    pub fn value(&self) -> DiscountValue {
        match self.percent {
            Some(p) => DiscountValue::Percent(p),
            None => DiscountValue::AmountOff(self.amount_off.unwrap_or_default()),
        }
    }

    /// Number of cycles it applies in; `None` for `forever`.
    pub fn cycles(&self) -> Option<u32> {
        match self.duration {
            CouponDuration::Once => Some(1),
            CouponDuration::Repeating => Some(self.periods.unwrap_or(1)),
            CouponDuration::Forever => None,
        }
    }

    /// Checks the entry on its own (references are checked with the catalog).
    pub fn validate(&self) -> Result<()> {
        let at = format!("coupons[{}]", self.code);
        crate::catalog::check_key(&format!("{at}.code"), &self.code)?;
        match (self.percent, self.amount_off) {
            (Some(_), Some(_)) => {
                return Err(Error::catalog(
                    format!("{at}.amount_off"),
                    "is not allowed with percent: a coupon takes either a percentage or a fixed amount off",
                ));
            }
            (None, None) => return Err(Error::catalog(format!("{at}.percent"), "one of percent or amount_off is required")),
            (Some(p), None) => {
                if p < Decimal::ZERO || p > Decimal::ONE_HUNDRED {
                    return Err(Error::catalog(format!("{at}.percent"), format!("{p} must be between 0 and 100 (\"20\" is 20%)")));
                }
                if let Some(c) = &self.currency {
                    return Err(Error::catalog(format!("{at}.currency"), format!("{c:?} is only used with amount_off")));
                }
            }
            (None, Some(a)) => {
                let code =
                    self.currency.as_deref().ok_or_else(|| Error::catalog(format!("{at}.currency"), "is required with amount_off"))?;
                let currency = Currency::from_code(code).map_err(|e| Error::catalog(format!("{at}.currency"), e.to_string()))?;
                if a <= Decimal::ZERO {
                    return Err(Error::catalog(format!("{at}.amount_off"), format!("{a} must be greater than 0")));
                }
                if a.normalize().scale() > currency.minor_units() {
                    return Err(Error::catalog(
                        format!("{at}.amount_off"),
                        format!("{a} has more decimals than {currency} allows ({})", currency.minor_units()),
                    ));
                }
            }
        }
        match (self.duration, self.periods) {
            (CouponDuration::Repeating, None | Some(0)) => {
                Err(Error::catalog(format!("{at}.periods"), "must be 1 or more for duration repeating"))
            }
            (CouponDuration::Once | CouponDuration::Forever, Some(n)) => {
                Err(Error::catalog(format!("{at}.periods"), format!("{n} is only used with duration repeating")))
            }
            _ => Ok(()),
        }
    }
}

/// A subscription's redemption of a coupon: `{ code, start }`, or just the code (`WELCOME20`)
/// to start with the subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Redemption {
    /// Coupon code.
    pub code: String,
    /// From when it applies; the subscription's start when absent.
    pub start: Option<DateTime<Utc>>,
}

/// The map form of [`Redemption`], with the derived (field-naming) errors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RedemptionMap {
    code: String,
    #[serde(default)]
    start: Option<DateTime<Utc>>,
}

impl<'de> Deserialize<'de> for Redemption {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Redemption;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a coupon code or { code, start }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Redemption, E> {
                Ok(Redemption { code: v.to_owned(), start: None })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> std::result::Result<Redemption, A::Error> {
                let m = RedemptionMap::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(Redemption { code: m.code, start: m.start })
            }
        }
        d.deserialize_any(V)
    }
}

/// The 1-based cycle number of the cycle closed by `label`, counted from the cycle of
/// `schedule` that contains `start` (so a quarterly subscription counts quarters); `None` when
/// `label` is before that cycle or closes none of the schedule's cycles.
pub fn cycle_number(label: PeriodLabel, schedule: &Schedule, start: DateTime<Utc>) -> Option<u32> {
    let first = schedule.cycle_containing(start).label;
    schedule.cycles_between(first, label).map(|n| n.saturating_add(1))
}

/// Whether `coupon` redeemed from `start` applies in `label`; returns its cycle number.
pub fn applies_in(coupon: &Coupon, label: PeriodLabel, schedule: &Schedule, start: DateTime<Utc>) -> Option<u32> {
    let n = cycle_number(label, schedule, start)?;
    coupon.cycles().is_none_or(|c| n <= c).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn coupon(duration: CouponDuration, periods: Option<u32>) -> Coupon {
        Coupon {
            code: "C".into(),
            name: None,
            percent: Some(Decimal::TEN),
            amount_off: None,
            currency: None,
            meter: None,
            duration,
            periods,
        }
    }

    #[test]
    fn cycles_count_from_the_cycle_holding_the_start() {
        let oct: PeriodLabel = "2026-10".parse().unwrap();
        let (m1, m15) = (Schedule::monthly(1), Schedule::monthly(15));
        // Anchor 1, start 16 Oct: October is cycle 1.
        assert_eq!(cycle_number(oct, &m1, t("2026-10-16T00:00:00Z")), Some(1));
        assert_eq!(cycle_number(oct.next(), &m1, t("2026-10-16T00:00:00Z")), Some(2));
        assert_eq!(cycle_number(oct, &m1, t("2026-11-01T00:00:00Z")), None);
        // Anchor 15, start 3 Nov: the cycle 15 Oct - 15 Nov (label 2026-10) holds it.
        assert_eq!(cycle_number(oct, &m15, t("2026-11-03T00:00:00Z")), Some(1));
        // Year rollover.
        assert_eq!(cycle_number("2027-02".parse().unwrap(), &m1, t("2026-12-01T00:00:00Z")), Some(3));
    }

    #[test]
    fn quarterly_cycles_count_quarters() {
        // Calendar quarters; redeemed 10 Feb: Q1 (label 2026-03) is cycle 1, Q2 (2026-06) cycle 2,
        // Q3 (2026-09) cycle 3; 2026-04 closes no quarter.
        let q = Schedule::new(3, 1, 1);
        let start = t("2026-02-10T00:00:00Z");
        let l = |s: &str| s.parse::<PeriodLabel>().unwrap();
        assert_eq!(cycle_number(l("2026-03"), &q, start), Some(1));
        assert_eq!(cycle_number(l("2026-06"), &q, start), Some(2));
        assert_eq!(cycle_number(l("2026-09"), &q, start), Some(3));
        assert_eq!(cycle_number(l("2026-04"), &q, start), None);
        assert_eq!(cycle_number(l("2025-12"), &q, start), None);
        let two = coupon(CouponDuration::Repeating, Some(2));
        assert_eq!(["2026-03", "2026-06", "2026-09"].map(|s| applies_in(&two, l(s), &q, start)), [Some(1), Some(2), None]);
    }

    #[test]
    fn durations() {
        let start = t("2026-10-01T00:00:00Z");
        let m = Schedule::monthly(1);
        let oct: PeriodLabel = "2026-10".parse().unwrap();
        let (nov, dec) = (oct.next(), oct.next().next());
        let once = coupon(CouponDuration::Once, None);
        assert_eq!((applies_in(&once, oct, &m, start), applies_in(&once, nov, &m, start)), (Some(1), None));
        let two = coupon(CouponDuration::Repeating, Some(2));
        assert_eq!([oct, nov, dec].map(|l| applies_in(&two, l, &m, start)), [Some(1), Some(2), None]);
        let forever = coupon(CouponDuration::Forever, None);
        assert_eq!(applies_in(&forever, "2030-01".parse().unwrap(), &m, start), Some(40));
    }

    #[test]
    fn redemptions_are_a_code_or_a_map() {
        let v: Vec<Redemption> = serde_json::from_str(r#"["A", {"code": "B", "start": "2026-10-20T00:00:00Z"}, {"code": "C"}]"#).unwrap();
        assert_eq!(v[0], Redemption { code: "A".into(), start: None });
        assert_eq!(v[1].start, Some(t("2026-10-20T00:00:00Z")));
        assert_eq!(v[2], Redemption { code: "C".into(), start: None });
        let e = serde_json::from_str::<Vec<Redemption>>(r#"[{"code": "B", "from": "x"}]"#).unwrap_err().to_string();
        assert!(e.contains("unknown field `from`"), "{e}");
        // Stored form round-trips.
        let back: Vec<Redemption> = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn validation_names_entry_and_field() {
        let e = |c: Coupon| c.validate().unwrap_err().to_string();
        let mut c = coupon(CouponDuration::Once, None);
        c.percent = Some(Decimal::from(120));
        assert_eq!(e(c.clone()), "coupons[C].percent: 120 must be between 0 and 100 (\"20\" is 20%)");
        c.percent = None;
        assert_eq!(e(c.clone()), "coupons[C].percent: one of percent or amount_off is required");
        c.amount_off = Some(Decimal::new(5005, 3));
        assert_eq!(e(c.clone()), "coupons[C].currency: is required with amount_off");
        c.currency = Some("USD".into());
        assert_eq!(e(c.clone()), "coupons[C].amount_off: 5.005 has more decimals than USD allows (2)");
        c.currency = Some("KWD".into());
        assert!(c.validate().is_ok());
        c.amount_off = Some(Decimal::ZERO);
        assert_eq!(e(c.clone()), "coupons[C].amount_off: 0 must be greater than 0");
        c.amount_off = Some(Decimal::ONE);
        c.percent = Some(Decimal::ONE);
        assert!(e(c.clone()).starts_with("coupons[C].amount_off: is not allowed with percent"));
        let r = coupon(CouponDuration::Repeating, None);
        assert_eq!(e(r), "coupons[C].periods: must be 1 or more for duration repeating");
        let f = coupon(CouponDuration::Forever, Some(3));
        assert_eq!(e(f), "coupons[C].periods: 3 is only used with duration repeating");
        let mut p = coupon(CouponDuration::Once, None);
        p.currency = Some("USD".into());
        assert_eq!(e(p), "coupons[C].currency: \"USD\" is only used with amount_off");
    }
}
