//! Billing periods: monthly cycles with an anchor day, in UTC.
//!
//! The period labelled `YYYY-MM` of a subscription with anchor day `a` runs from day `a` of that
//! month (00:00 UTC) to day `a` of the next month, exclusive. When a month is shorter than the
//! anchor, the period starts on its last day (anchor 31 → 30 April, 28/29 February). A
//! subscription that starts or ends inside a period is billed for the overlap only: usage is
//! counted inside the overlap, and recurring fees are prorated by seconds of overlap.

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

    /// The label of the month containing `t`.
    pub fn containing(t: DateTime<Utc>) -> PeriodLabel {
        PeriodLabel { year: t.year(), month: t.month() }
    }

    /// Start of the cycle with anchor day `anchor_day` that begins in this month.
    pub fn cycle_start(&self, anchor_day: u32) -> DateTime<Utc> {
        let day = anchor_day.clamp(1, days_in_month(self.year, self.month));
        let date = NaiveDate::from_ymd_opt(self.year, self.month, day).expect("day clamped to the month's length");
        Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight exists"))
    }

    /// `[start, end)` of the cycle with anchor day `anchor_day` that begins in this month.
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

/// The part of a billing period during which a subscription is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
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
    /// The active part of the cycle `label` for a subscription active in `[sub_start, sub_end)`;
    /// `None` when they do not overlap.
    pub fn of(label: PeriodLabel, anchor_day: u32, sub_start: DateTime<Utc>, sub_end: Option<DateTime<Utc>>) -> Option<Window> {
        let (period_start, period_end) = label.cycle(anchor_day);
        let start = period_start.max(sub_start);
        let end = sub_end.map_or(period_end, |e| e.min(period_end));
        (start < end).then_some(Window { period_start, period_end, start, end })
    }

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

    #[test]
    fn windows_clip_to_the_subscription() {
        let p: PeriodLabel = "2026-10".parse().unwrap();
        let w = Window::of(p, 1, t("2026-10-16T00:00:00Z"), None).unwrap();
        assert_eq!(w.seconds(), (16 * 86_400, 31 * 86_400));
        assert!(!w.is_full());
        assert!(Window::of(p, 1, t("2026-11-01T00:00:00Z"), None).is_none());
        assert!(Window::of(p, 1, t("2026-01-01T00:00:00Z"), Some(t("2026-10-01T00:00:00Z"))).is_none());
        assert!(Window::of(p, 1, t("2026-01-01T00:00:00Z"), None).unwrap().is_full());
    }
}
