//! Payment terms (net-N days) and the due date stored on every invoice (`invoices.due_at`).
//!
//! An invoice falls due N days after the UTC day it is issued, where N is its customer's
//! `payment_terms_days` (catalog) or else `[billing] payment_terms_days` (30 by default). The due
//! date is a calendar day: `due_at` holds 00:00 UTC of it, so documents and the
//! `receivables_ageing` view (migration 0010) read the same day whatever the time of issue. Net 0
//! means due on the day of issue.
//!
//! When "issued" is: a draft's `status_at` is the end of its cycle, so a draft carries a
//! provisional due date `cycle end + N`; finalization (`close.rs`) sets the final one from the
//! finalized row's `status_at`, the time the invoice was finalized and numbered, i.e. sent. The
//! terms in force at that moment apply. Later transitions (paid, void, uncollectible) keep it.

use chrono::{DateTime, Days, Utc};

use meterline_schemas::catalog::{Catalog, Customer};

use crate::settings::Settings;

/// The payment terms in days of `customer`'s invoices: its own, else the billing default.
pub fn terms_days(settings: &Settings, customer: Option<&Customer>) -> u32 {
    customer.and_then(|c| c.payment_terms_days).unwrap_or(settings.payment_terms_days)
}

/// [`terms_days`] of the catalog customer `key` (the default for a customer no longer in it).
pub fn terms_days_of(settings: &Settings, catalog: &Catalog, key: &str) -> u32 {
    terms_days(settings, catalog.customers.get(key))
}

/// The due date of an invoice issued at `issued` (UTC seconds) on net-`days` terms: 00:00 UTC of
/// the issue day plus `days` calendar days, as UTC seconds. Saturates at the end of the `u32`
/// range (2106) rather than wrapping; validated terms stay far below it.
pub fn due_at(issued: u32, days: u32) -> u32 {
    let day = DateTime::<Utc>::from_timestamp(i64::from(issued), 0).unwrap_or_default().date_naive();
    day.checked_add_days(Days::new(u64::from(days)))
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|t| u32::try_from(t.and_utc().timestamp()).ok())
        .unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(rfc3339: &str) -> u32 {
        u32::try_from(DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp()).unwrap()
    }

    #[test]
    fn due_dates_are_the_issue_day_plus_the_terms() {
        // 2026-12-05 + 30 days crosses the year: 26 days left in December, 4 in January.
        assert_eq!(due_at(secs("2026-12-05T00:00:00Z"), 30), secs("2027-01-04T00:00:00Z"));
        assert_eq!(due_at(secs("2026-12-05T00:00:00Z"), 30), 1_799_020_800);
        // The time of day does not matter: the due date is a day, stored as its 00:00 UTC.
        assert_eq!(due_at(secs("2026-12-05T23:59:59Z"), 30), secs("2027-01-04T00:00:00Z"));
        // Net 0: due on the day of issue.
        assert_eq!(due_at(secs("2026-12-05T13:45:00Z"), 0), secs("2026-12-05T00:00:00Z"));
        // The default draft of an October cycle: issued at the cycle end, net 30.
        assert_eq!(due_at(secs("2026-11-01T00:00:00Z"), 30), secs("2026-12-01T00:00:00Z"));
        // Leap day: 2028-02-01 + 28 = 2028-02-29.
        assert_eq!(due_at(secs("2028-02-01T00:00:00Z"), 28), secs("2028-02-29T00:00:00Z"));
        // The longest validated terms stay in range; beyond the u32 range saturates.
        assert_eq!(due_at(secs("2026-12-05T00:00:00Z"), 3650), secs("2036-12-02T00:00:00Z"));
        assert_eq!(due_at(u32::MAX - 10, 365), u32::MAX);
    }

    #[test]
    fn a_customer_override_beats_the_default() {
        let settings = Settings { payment_terms_days: 30, ..Settings::default() };
        let customer = |days: Option<u32>| Customer {
            key: "acme".into(),
            name: "Acme".into(),
            currency: "USD".into(),
            jurisdiction: "US-CA".into(),
            locale: "en-US".into(),
            country: None,
            region: None,
            vat_id: None,
            tax_exempt: false,
            tax_exempt_reason: None,
            payment_terms_days: days,
        };
        assert_eq!(terms_days(&settings, None), 30);
        assert_eq!(terms_days(&settings, Some(&customer(None))), 30);
        assert_eq!(terms_days(&settings, Some(&customer(Some(14)))), 14);
        assert_eq!(terms_days(&settings, Some(&customer(Some(0)))), 0, "net 0 is a valid override");
        assert_eq!(terms_days(&Settings::default(), None), 30, "the default is net 30");
    }
}
