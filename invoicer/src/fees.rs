//! Fixed charges: the plan's recurring fee and seats, billed in arrears or in advance.
//!
//! Both are "quantity × price per period", prorated by whole **seconds** of the period: the fee
//! has quantity 1, seats have the subscription's seat count, which may change at dated
//! `seat_changes`. For a part of the period `[from, until)` with `n` seats the charge is
//! `price × n × seconds(from, until) ÷ period_seconds`; a line sums its parts exactly and is
//! rounded once when it becomes an invoice line.
//!
//! **Arrears** (default): the invoice of period P (issued at P's end) bills P's fee and seats
//! for the part of P the subscription was active, with every seat change in P.
//!
//! P is the subscription's cycle (a month, quarter or year) and P+1, P−1 its next and previous
//! cycles (for a quarterly subscription, the next and previous quarter).
//!
//! **Advance**: Meterline issues invoices at period close only, so "in advance" means the
//! invoice of P (issued at P's end, which is P+1's start) bills P+1:
//! - P+1's fee and seats, prorated to the subscription's active part of P+1 when it ends
//!   inside P+1, at the seat count in effect when that part starts;
//! - on P's own invoice, the true-up of seat changes during P: `price × Σ (n_i − n_0) ×
//!   seconds_i ÷ period_seconds` (negative for fewer seats), so that advance and arrears bill
//!   exactly the same total for every period, only earlier;
//! - in the subscription's first period (not active in P−1, so no earlier invoice could bill
//!   it), P's fee and seats in full, as arrears would.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::json;

use meterline_rater::RatedSubscription;
use meterline_schemas::catalog::{FeeBilling, Subscription};
use meterline_schemas::invoice::LineKind;
use meterline_schemas::period::{PeriodLabel, Window};

use crate::build::Charge;
use crate::error::{Error, Result};

/// The fee and seat lines of `r`'s invoice for `label`, in that order.
pub(crate) fn fixed_charges(r: &RatedSubscription, label: PeriodLabel) -> Result<Vec<Charge>> {
    let mut out = Vec::new();
    let fee = r.plan.recurring_fee.filter(|f| !f.is_zero());
    let s = &r.subscription;
    match r.plan.billing {
        FeeBilling::Arrears => {
            if let Some(fee) = fee {
                out.push(arrears_fee(r, fee)?);
            }
            match (r.plan.seat_price, r.metered_seats) {
                (Some(price), Some(n)) => out.push(metered_seats(r, price, n, label)?),
                (Some(price), None) => out.push(seats(r, price, label, &r.window, Part::Whole, format!("{} seats", r.plan.name))?),
                _ => {}
            }
        }
        FeeBilling::Advance => {
            // The subscription's own cycles: for a quarterly one, the previous and next quarter.
            let first = s.previous_window(&r.window).is_none();
            let next = s.next_window(&r.window);
            if let Some(fee) = fee {
                if first {
                    out.push(advance_fee(r, fee, label, &r.window, "first period")?);
                }
                if let Some(w) = &next {
                    out.push(advance_fee(r, fee, w.label, w, "in advance")?);
                }
            }
            if let Some(price) = r.plan.seat_price {
                if first {
                    out.push(seats(r, price, label, &r.window, Part::Whole, format!("{} seats, {label} (first period)", r.plan.name))?);
                } else if s.seat_segments(r.window.start, r.window.end).iter().any(|seg| seg.2 != s.seats_at(r.window.start)) {
                    out.push(seats(r, price, label, &r.window, Part::Changes, format!("{} seat changes, {label}", r.plan.name))?);
                }
                if let Some(w) = &next {
                    let desc = format!("{} seats, {} in advance", r.plan.name, w.label);
                    out.push(seats(r, price, w.label, w, Part::AtStart, desc)?);
                }
            }
        }
    }
    Ok(out)
}

fn secs(a: DateTime<Utc>, b: DateTime<Utc>) -> i64 {
    (b - a).num_seconds()
}

/// `price × quantity × seconds ÷ period_seconds`, exact.
fn prorate(price: Decimal, quantity: Decimal, seconds: i64, period_seconds: i64) -> Result<Decimal> {
    price
        .checked_mul(quantity)
        .and_then(|x| x.checked_mul(Decimal::from(seconds)))
        .and_then(|x| x.checked_div(Decimal::from(period_seconds)))
        .ok_or_else(|| Error::Overflow(format!("proration of {price} × {quantity}")))
}

/// The recurring fee in arrears: unchanged from before fees could be billed in advance, so
/// invoices closed earlier hash identically.
fn arrears_fee(r: &RatedSubscription, fee: Decimal) -> Result<Charge> {
    let (active, total) = r.window.seconds();
    let unrounded = if r.window.is_full() { fee } else { prorate(fee, Decimal::ONE, active, total)? };
    let breakdown = json!({
        "fee": fee.to_string(),
        "proration": { "basis": "seconds", "active_seconds": active, "period_seconds": total,
                       "active_from": r.window.start.to_rfc3339(), "active_until": r.window.end.to_rfc3339() },
    });
    let desc = if r.window.is_full() { format!("{} plan fee", r.plan.name) } else { format!("{} plan fee (prorated)", r.plan.name) };
    Ok(Charge::new(LineKind::Recurring, desc, Decimal::ONE, "recurring", unrounded, breakdown))
}

/// The recurring fee of service period `service` (window `w`), billed in advance.
fn advance_fee(r: &RatedSubscription, fee: Decimal, service: PeriodLabel, w: &Window, why: &str) -> Result<Charge> {
    let (active, total) = w.seconds();
    let unrounded = if w.is_full() { fee } else { prorate(fee, Decimal::ONE, active, total)? };
    let breakdown = json!({
        "fee": fee.to_string(),
        "billing": "advance",
        "service_period": service.to_string(),
        "proration": { "basis": "seconds", "active_seconds": active, "period_seconds": total,
                       "active_from": w.start.to_rfc3339(), "active_until": w.end.to_rfc3339() },
    });
    let prorated = if w.is_full() { "" } else { " (prorated)" };
    let desc = format!("{} plan fee, {service} {why}{prorated}", r.plan.name);
    Ok(Charge::new(LineKind::Recurring, desc, Decimal::ONE, "recurring", unrounded, breakdown))
}

/// Seats counted by the plan's `seat_meter` (MAX: the peak, LATEST: the last value in the
/// active part of the period), in arrears, prorated like the fee by the active part of the
/// period: `price × n × active_seconds ÷ period_seconds`.
fn metered_seats(r: &RatedSubscription, price: Decimal, n: Decimal, service: PeriodLabel) -> Result<Charge> {
    let meter = r.plan.seat_meter.clone().unwrap_or_default();
    if n < Decimal::ZERO {
        return Err(Error::Catalog(format!("seat meter {meter} of subscription {} is negative: {n}", r.subscription.id)));
    }
    let (active, total) = r.window.seconds();
    let unrounded = prorate(price, n, active, total)?;
    let seat_periods = prorate(Decimal::ONE, n, active, total)?;
    let breakdown = json!({
        "seat_price": price.to_string(),
        "billing": "arrears",
        "service_period": service.to_string(),
        "basis": "seconds",
        "period_seconds": total,
        "seat_meter": meter,
        "segments": [ { "from": r.window.start.to_rfc3339(), "until": r.window.end.to_rfc3339(), "seats": n.to_string(), "seconds": active } ],
        "seat_periods": seat_periods.normalize().to_string(),
    });
    let mut c = Charge::new(LineKind::Seats, format!("{} seats", r.plan.name), seat_periods, "seats", unrounded, breakdown);
    c.meter = meter;
    Ok(c)
}

/// Which part of a window's seats a line bills.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Every seat-second of the window (arrears, or a first period in advance).
    Whole,
    /// The seat count at the window's start for the whole window (advance).
    AtStart,
    /// Seat-seconds above or below the count at the window's start (advance true-up).
    Changes,
}

fn seats(r: &RatedSubscription, price: Decimal, service: PeriodLabel, w: &Window, part: Part, desc: String) -> Result<Charge> {
    let s: &Subscription = &r.subscription;
    let period_seconds = secs(w.period_start, w.period_end);
    let at_start = Decimal::from(s.seats_at(w.start));
    let segments = match part {
        Part::AtStart => vec![(w.start, w.end, s.seats_at(w.start))],
        Part::Whole | Part::Changes => s.seat_segments(w.start, w.end),
    };
    // Σ seats × seconds, exact integers; one division by the period at the end.
    let mut seat_seconds = Decimal::ZERO;
    let mut rows = Vec::with_capacity(segments.len());
    for (from, until, n) in &segments {
        let n = Decimal::from(*n) - if part == Part::Changes { at_start } else { Decimal::ZERO };
        let seconds = secs(*from, *until);
        seat_seconds += n * Decimal::from(seconds);
        rows.push(json!({ "from": from.to_rfc3339(), "until": until.to_rfc3339(), "seats": n.to_string(), "seconds": seconds }));
    }
    let seat_periods = seat_seconds.checked_div(Decimal::from(period_seconds)).ok_or_else(|| Error::Overflow("seat periods".into()))?;
    let unrounded = prorate(price, seat_seconds, 1, period_seconds)?;
    let mut breakdown = json!({
        "seat_price": price.to_string(),
        "billing": r.plan.billing.as_str(),
        "service_period": service.to_string(),
        "basis": "seconds",
        "period_seconds": period_seconds,
        "segments": rows,
        "seat_periods": seat_periods.normalize().to_string(),
    });
    if part == Part::Changes {
        breakdown["relative_to_seats"] = json!(at_start.to_string());
    }
    Ok(Charge::new(LineKind::Seats, desc, seat_periods, "seats", unrounded, breakdown))
}
