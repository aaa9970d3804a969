//! Billing periods: monthly, quarterly and annual cycles with an anchor, in UTC.
//!
//! **Cycles.** A subscription's cycles follow a [`Schedule`]: every 1, 3 or 12 months, starting
//! on day `anchor_day` (00:00 UTC) of the months `anchor_month`, `anchor_month + step`, … When a
//! month is shorter than the anchor day, the cycle starts on its last day (anchor 31 → 30 April,
//! 28/29 February). The subscription's `alignment` picks the default anchor:
//! - `anniversary` (default): the day and month of its `start`, so a subscription starting
//!   10 February on a quarterly cycle runs [10 Feb, 10 May), [10 May, 10 Aug), …;
//! - `calendar`: day 1 of January, so monthly cycles start on the 1st, quarterly ones on
//!   1 January/April/July/October, annual ones on 1 January.
//!
//! `anchor_day` and `anchor_month` in the catalog override either default (`anchor_month` only
//! for quarterly and annual cycles). Monthly cycles ignore the month.
//!
//! **Labels.** A close runs for a label `YYYY-MM`. A cycle of any length is labelled by the month
//! in which its *last monthly step* begins: monthly [15 Jan, 15 Feb) → `2026-01`, quarterly
//! [15 Jan, 15 Apr) → `2026-03`, annual [1 Jan 2026, 1 Jan 2027) → `2026-12`. So the cycles a
//! close of label L bills all end where the monthly cycles of L with the same anchor day end, and
//! a subscription whose cycle does not end with L has no invoice in that close (not even a zero
//! one): [`Schedule::window`] returns `None` for it.
//!
//! **Windows.** A subscription that starts or ends inside a cycle is billed for the overlap only
//! (a prorated first or last period): usage is counted inside the overlap, and recurring fees are
//! prorated by seconds of overlap over seconds of the whole cycle (a quarterly fee for one month
//! of a 90-day quarter is `fee × 31 days ÷ 90 days` when that month has 31 days).
//!
//! Everything that needs a subscription's cycle (rating, fees in advance, coupon cycles, the
//! late-event deadline at ingest, current spend) asks the subscription
//! (`Subscription::window`, `Subscription::cycle_containing`, `Subscription::next_window`), which
//! asks its [`Schedule`]; nothing else computes cycle months.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// A billing period label, `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeriodLabel {
    year: i32,
    month: u32,
}

impl PeriodLabel {
    /// A label from year and month (1–12).
    pub fn new(year: i32, month: u32) -> Option<Self> {
        ((1..=12).contains(&month) && (1970..=9999).contains(&year)).then_some(PeriodLabel { year, month })
    }

    /// The year.
    pub fn year(&self) -> i32 {
        self.year
    }

    /// The month, 1–12.
    pub fn month(&self) -> u32 {
        self.month
    }

    /// The following month.
    pub fn next(&self) -> PeriodLabel {
        if self.month == 12 {
            PeriodLabel { year: self.year + 1, month: 1 }
        } else {
            PeriodLabel { year: self.year, month: self.month + 1 }
        }
    }

    /// The previous month.
    pub fn prev(&self) -> PeriodLabel {
        if self.month == 1 {
            PeriodLabel { year: self.year - 1, month: 12 }
        } else {
            PeriodLabel { year: self.year, month: self.month - 1 }
        }
    }

    /// The label `n` months later (earlier when `n` is negative).
    pub fn plus_months(&self, n: i32) -> PeriodLabel {
        let i = self.index() + i64::from(n);
        // Years stay far inside i32 for any label a close can name (1970–9999 ± a few years).
        PeriodLabel { year: i32::try_from(i.div_euclid(12)).unwrap_or(i32::MAX), month: (i.rem_euclid(12) + 1) as u32 }
    }

    /// Months since year 0: consecutive months have consecutive indexes.
    fn index(&self) -> i64 {
        i64::from(self.year) * 12 + i64::from(self.month) - 1
    }

    /// The label of the month containing `t`.
    pub fn containing(t: DateTime<Utc>) -> PeriodLabel {
        // The UTC date as stored (`t.year()` converts to a local time first: per event on ingest).
        let d = t.naive_utc();
        PeriodLabel { year: d.year(), month: d.month() }
    }

    /// Day `anchor_day` of this month at 00:00 UTC, clamped to the month's last day: where a
    /// cycle (or a cycle's monthly step) with that anchor day begins in this month.
    pub fn cycle_start(&self, anchor_day: u32) -> DateTime<Utc> {
        let day = anchor_day.clamp(1, days_in_month(self.year, self.month));
        let date = NaiveDate::from_ymd_opt(self.year, self.month, day).expect("day clamped to the month's length");
        Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight exists"))
    }

    /// `[start, end)` of the monthly cycle with anchor day `anchor_day` that begins in this month
    /// (subscriptions use their [`Schedule`], which also knows quarterly and annual cycles).
    pub fn cycle(&self, anchor_day: u32) -> (DateTime<Utc>, DateTime<Utc>) {
        (self.cycle_start(anchor_day), self.next().cycle_start(anchor_day))
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let (ny, nm) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    let first_next = NaiveDate::from_ymd_opt(ny, nm, 1).expect("valid month");
    first_next.pred_opt().expect("has a previous day").day()
}

impl fmt::Display for PeriodLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for PeriodLabel {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::InvalidPeriod(s.to_owned());
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        PeriodLabel::new(y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?).ok_or_else(bad)
    }
}

impl Serialize for PeriodLabel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PeriodLabel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// When a subscription's cycles start: every `months` months (1, 3 or 12) on day `anchor_day`
/// (clamped to short months) of the months `anchor_month`, `anchor_month + months`, … (see the
/// module docs for labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Schedule {
    months: u32,
    anchor_day: u32,
    anchor_month: u32,
}

/// One whole cycle of a [`Schedule`]: `[start, end)` and the label that closes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BillingCycle {
    /// The close label (the month in which the cycle's last monthly step begins).
    pub label: PeriodLabel,
    /// Start (inclusive).
    pub start: DateTime<Utc>,
    /// End (exclusive).
    pub end: DateTime<Utc>,
}

impl Schedule {
    /// A schedule of `months`-month cycles (1, 3 or 12: other values are clamped to 1–12; the
    /// catalog only produces those three). `anchor_day` is clamped to 1–31 and `anchor_month`
    /// to 1–12; for monthly cycles the month does not matter.
    pub fn new(months: u32, anchor_day: u32, anchor_month: u32) -> Schedule {
        let months = months.clamp(1, 12);
        let anchor_month = if months == 1 { 1 } else { anchor_month.clamp(1, 12) };
        Schedule { months, anchor_day: anchor_day.clamp(1, 31), anchor_month }
    }

    /// Monthly cycles from `anchor_day`.
    pub fn monthly(anchor_day: u32) -> Schedule {
        Schedule::new(1, anchor_day, 1)
    }

    /// Cycle length in months.
    pub fn months(&self) -> u32 {
        self.months
    }

    /// The anchor day (1–31).
    pub fn anchor_day(&self) -> u32 {
        self.anchor_day
    }

    /// Whether a cycle starts in month `m`.
    fn starts_in(&self, m: PeriodLabel) -> bool {
        (m.index() - i64::from(self.anchor_month) + 1).rem_euclid(i64::from(self.months)) == 0
    }

    /// Whether `label` closes a cycle of this schedule (the next month starts one).
    pub fn closes(&self, label: PeriodLabel) -> bool {
        self.starts_in(label.next())
    }

    /// The whole cycle closed by `label`; `None` when `label` closes none of this schedule's
    /// cycles (a quarterly cycle ends only every third label).
    pub fn cycle(&self, label: PeriodLabel) -> Option<BillingCycle> {
        self.closes(label).then(|| BillingCycle {
            label,
            start: label.plus_months(1 - self.step()).cycle_start(self.anchor_day),
            end: label.next().cycle_start(self.anchor_day),
        })
    }

    /// The cycle with `start ≤ t < end`.
    pub fn cycle_containing(&self, t: DateTime<Utc>) -> BillingCycle {
        let month = PeriodLabel::containing(t);
        // The latest month at or before t's month in which a cycle starts…
        let back = (month.index() - i64::from(self.anchor_month) + 1).rem_euclid(i64::from(self.months));
        let mut first = month.plus_months(-i32::try_from(back).unwrap_or(0));
        // …unless that cycle starts later in t's own month (t before the anchor day).
        if t < first.cycle_start(self.anchor_day) {
            first = first.plus_months(-self.step());
        }
        let label = first.plus_months(self.step() - 1);
        BillingCycle { label, start: first.cycle_start(self.anchor_day), end: label.next().cycle_start(self.anchor_day) }
    }

    /// The label closing the cycle after the one closed by `label`.
    pub fn next_label(&self, label: PeriodLabel) -> PeriodLabel {
        label.plus_months(self.step())
    }

    /// The label closing the cycle before the one closed by `label`.
    pub fn prev_label(&self, label: PeriodLabel) -> PeriodLabel {
        label.plus_months(-self.step())
    }

    /// The number of whole cycles from the one closed by `from` to the one closed by `to`
    /// (0 for the same cycle); `None` when `to` is earlier or closes no cycle.
    pub fn cycles_between(&self, from: PeriodLabel, to: PeriodLabel) -> Option<u32> {
        let n = to.index() - from.index();
        (n >= 0 && self.closes(to) && n % i64::from(self.months) == 0)
            .then(|| u32::try_from(n / i64::from(self.months)).unwrap_or(u32::MAX))
    }

    /// The active part of the cycle closed by `label` for a subscription active in
    /// `[sub_start, sub_end)`; `None` when `label` closes no cycle or they do not overlap.
    pub fn window(&self, label: PeriodLabel, sub_start: DateTime<Utc>, sub_end: Option<DateTime<Utc>>) -> Option<Window> {
        let c = self.cycle(label)?;
        let start = c.start.max(sub_start);
        let end = sub_end.map_or(c.end, |e| e.min(c.end));
        (start < end).then_some(Window { label, period_start: c.start, period_end: c.end, start, end })
    }

    fn step(&self) -> i32 {
        // months is 1..=12 (see new).
        self.months as i32
    }
}

/// The part of a billing cycle during which a subscription is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The label that closes the cycle.
    pub label: PeriodLabel,
    /// Start of the full cycle.
    pub period_start: DateTime<Utc>,
    /// End of the full cycle (exclusive).
    pub period_end: DateTime<Utc>,
    /// Start of the active part.
    pub start: DateTime<Utc>,
    /// End of the active part (exclusive).
    pub end: DateTime<Utc>,
}

impl Window {
    /// Whether the subscription covers the whole cycle.
    pub fn is_full(&self) -> bool {
        self.start == self.period_start && self.end == self.period_end
    }

    /// Active seconds and cycle seconds, the proration basis.
    pub fn seconds(&self) -> (i64, i64) {
        ((self.end - self.start).num_seconds(), (self.period_end - self.period_start).num_seconds())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn parses_labels() {
        let p: PeriodLabel = "2026-10".parse().unwrap();
        assert_eq!((p.year(), p.month()), (2026, 10));
        assert_eq!(p.next().to_string(), "2026-11");
        assert_eq!("2026-12".parse::<PeriodLabel>().unwrap().next().to_string(), "2027-01");
        assert_eq!("2027-01".parse::<PeriodLabel>().unwrap().prev().to_string(), "2026-12");
        assert_eq!(p.prev().next(), p);
        for bad in ["2026-13", "2026-1", "26-10", "2026/10", "abcd-ef"] {
            let e = bad.parse::<PeriodLabel>().unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn calendar_month_and_clamped_anchor() {
        let p: PeriodLabel = "2026-02".parse().unwrap();
        assert_eq!(p.cycle(1), (t("2026-02-01T00:00:00Z"), t("2026-03-01T00:00:00Z")));
        // anchor 31: February clamps to the 28th, March does not.
        assert_eq!(p.cycle(31), (t("2026-02-28T00:00:00Z"), t("2026-03-31T00:00:00Z")));
        assert_eq!("2028-02".parse::<PeriodLabel>().unwrap().cycle_start(30), t("2028-02-29T00:00:00Z"));
    }

    fn l(s: &str) -> PeriodLabel {
        s.parse().unwrap()
    }

    #[test]
    fn plus_months_crosses_years() {
        assert_eq!(l("2026-11").plus_months(3), l("2027-02"));
        assert_eq!(l("2026-02").plus_months(-2), l("2025-12"));
        assert_eq!(l("2026-01").plus_months(-13), l("2024-12"));
        assert_eq!(l("2026-05").plus_months(12), l("2027-05"));
    }

    #[test]
    fn windows_clip_to_the_subscription() {
        let m = Schedule::monthly(1);
        let p = l("2026-10");
        let w = m.window(p, t("2026-10-16T00:00:00Z"), None).unwrap();
        // October has 31 days; active from the 16th: 16 days.
        assert_eq!(w.seconds(), (16 * 86_400, 31 * 86_400));
        assert_eq!(w.label, p);
        assert!(!w.is_full());
        assert!(m.window(p, t("2026-11-01T00:00:00Z"), None).is_none());
        assert!(m.window(p, t("2026-01-01T00:00:00Z"), Some(t("2026-10-01T00:00:00Z"))).is_none());
        assert!(m.window(p, t("2026-01-01T00:00:00Z"), None).unwrap().is_full());
    }

    #[test]
    fn quarterly_anniversary_labels_the_third_month() {
        // Start 2026-02-10, anchor day 10, anchor month 2: [10 Feb, 10 May) is closed by the
        // label of the month its last monthly step begins in, April; then July, October, January.
        let q = Schedule::new(3, 10, 2);
        let start = t("2026-02-10T00:00:00Z");
        let w = q.window(l("2026-04"), start, None).unwrap();
        assert_eq!((w.period_start, w.period_end), (t("2026-02-10T00:00:00Z"), t("2026-05-10T00:00:00Z")));
        assert!(w.is_full());
        // Feb 10 → May 10: 19 (Feb 10–28) + 31 + 30 + 9 = 89 days.
        assert_eq!(w.seconds(), (7_689_600, 7_689_600));
        let w = q.window(l("2026-07"), start, None).unwrap();
        assert_eq!((w.period_start, w.period_end), (t("2026-05-10T00:00:00Z"), t("2026-08-10T00:00:00Z")));
        assert_eq!(q.cycle(l("2027-01")).unwrap().start, t("2026-11-10T00:00:00Z"));
        // Labels that close no cycle of this subscription: no window, so no invoice.
        for none in ["2026-02", "2026-03", "2026-05", "2026-06", "2026-08"] {
            assert!(q.window(l(none), start, None).is_none(), "{none}");
        }
        // Before the start: the cycle [10 Nov 2025, 10 Feb 2026) does not overlap.
        assert!(q.window(l("2026-01"), start, None).is_none());
        assert_eq!(q.next_label(l("2026-04")), l("2026-07"));
        assert_eq!(q.prev_label(l("2026-04")), l("2026-01"));
        assert_eq!(q.cycles_between(l("2026-04"), l("2026-10")), Some(2));
        assert_eq!(q.cycles_between(l("2026-04"), l("2026-09")), None);
        assert_eq!(q.cycles_between(l("2026-07"), l("2026-04")), None);
    }

    #[test]
    fn quarterly_calendar_prorates_the_first_quarter() {
        // Calendar quarters from day 1: [1 Jan, 1 Apr) closed by 2026-03. A subscription starting
        // 10 Feb is active 10 Feb → 1 Apr: 19 (Feb 10–28) + 31 (Mar) = 50 days of
        // 31 + 28 + 31 = 90.
        let q = Schedule::new(3, 1, 1);
        let w = q.window(l("2026-03"), t("2026-02-10T00:00:00Z"), None).unwrap();
        assert_eq!((w.period_start, w.period_end), (t("2026-01-01T00:00:00Z"), t("2026-04-01T00:00:00Z")));
        assert_eq!((w.start, w.end), (t("2026-02-10T00:00:00Z"), t("2026-04-01T00:00:00Z")));
        assert_eq!(w.seconds(), (4_320_000, 7_776_000));
        // Ending 15 May: the last quarter [1 Apr, 1 Jul) is active 30 + 14 = 44 of 91 days.
        let w = q.window(l("2026-06"), t("2026-02-10T00:00:00Z"), Some(t("2026-05-15T00:00:00Z"))).unwrap();
        assert_eq!(w.seconds(), (44 * 86_400, 91 * 86_400));
        assert!(q.window(l("2026-09"), t("2026-02-10T00:00:00Z"), Some(t("2026-05-15T00:00:00Z"))).is_none());
        // The quarter containing a time, and its label.
        let c = q.cycle_containing(t("2026-11-26T00:18:00Z"));
        assert_eq!((c.label, c.start, c.end), (l("2026-12"), t("2026-10-01T00:00:00Z"), t("2027-01-01T00:00:00Z")));
    }

    #[test]
    fn annual_calendar_and_anniversary() {
        let cal = Schedule::new(12, 1, 1);
        let c = cal.cycle(l("2026-12")).unwrap();
        assert_eq!((c.start, c.end), (t("2026-01-01T00:00:00Z"), t("2027-01-01T00:00:00Z")));
        assert!(cal.cycle(l("2026-06")).is_none());
        // Start 1 Jul 2026: the first year is active 184 of 365 days (Jul 31 + Aug 31 + Sep 30 +
        // Oct 31 + Nov 30 + Dec 31 = 184).
        let w = cal.window(l("2026-12"), t("2026-07-01T00:00:00Z"), None).unwrap();
        assert_eq!(w.seconds(), (184 * 86_400, 365 * 86_400));
        // Anniversary from 15 Mar 2026: [15 Mar 2026, 15 Mar 2027) is closed by 2027-02.
        let ann = Schedule::new(12, 15, 3);
        let w = ann.window(l("2027-02"), t("2026-03-15T00:00:00Z"), None).unwrap();
        assert_eq!((w.period_start, w.period_end), (t("2026-03-15T00:00:00Z"), t("2027-03-15T00:00:00Z")));
        assert!(w.is_full());
        assert!(ann.window(l("2026-12"), t("2026-03-15T00:00:00Z"), None).is_none());
        assert_eq!(ann.cycle_containing(t("2027-03-14T23:59:59Z")).label, l("2027-02"));
        assert_eq!(ann.cycle_containing(t("2027-03-15T00:00:00Z")).label, l("2028-02"));
    }

    #[test]
    fn anchor_31_in_short_months() {
        // Quarterly from 31 Jan: 31 Jan, 30 Apr, 31 Jul, 31 Oct.
        let q = Schedule::new(3, 31, 1);
        assert_eq!(q.cycle(l("2026-03")).unwrap().end, t("2026-04-30T00:00:00Z"));
        let c = q.cycle(l("2026-06")).unwrap();
        assert_eq!((c.start, c.end), (t("2026-04-30T00:00:00Z"), t("2026-07-31T00:00:00Z")));
        // Monthly anchor 31: 28 Feb → 31 Mar → 30 Apr.
        let m = Schedule::monthly(31);
        assert_eq!(m.cycle_containing(t("2026-03-30T12:00:00Z")).start, t("2026-02-28T00:00:00Z"));
        assert_eq!(m.cycle_containing(t("2026-03-31T00:00:00Z")).end, t("2026-04-30T00:00:00Z"));
    }

    #[test]
    fn leap_day_annual_anniversary() {
        // Start 29 Feb 2028: anchor day 29 of February, clamped to the 28th in common years.
        let a = Schedule::new(12, 29, 2);
        let start = t("2028-02-29T00:00:00Z");
        let w = a.window(l("2029-01"), start, None).unwrap();
        assert_eq!((w.period_start, w.period_end), (start, t("2029-02-28T00:00:00Z")));
        // 29 Feb 2028 → 28 Feb 2029: 365 days; the next year 28 Feb 2029 → 28 Feb 2030, 365 days.
        assert_eq!(w.seconds(), (365 * 86_400, 365 * 86_400));
        let c = a.cycle(l("2032-01")).unwrap();
        assert_eq!((c.start, c.end), (t("2031-02-28T00:00:00Z"), t("2032-02-29T00:00:00Z")));
        assert_eq!(a.cycle_containing(t("2029-02-28T00:00:00Z")).label, l("2030-01"));
    }

    #[test]
    fn monthly_cycle_containing_matches_the_anchor() {
        // Anchor 15: 3 Nov is in [15 Oct, 15 Nov), label 2026-10.
        let c = Schedule::monthly(15).cycle_containing(t("2026-11-03T00:00:00Z"));
        assert_eq!((c.label, c.start, c.end), (l("2026-10"), t("2026-10-15T00:00:00Z"), t("2026-11-15T00:00:00Z")));
        assert_eq!(Schedule::monthly(15).cycle_containing(t("2026-11-15T00:00:00Z")).label, l("2026-11"));
    }
}
