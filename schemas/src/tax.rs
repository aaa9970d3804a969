//! Tax and currency reference data shared by the catalog and the invoicer: dated tax rates,
//! EU VAT id format checks, the tax rounding setting and dated FX rates.
//!
//! The arithmetic (splitting lines at rate changes, inclusive prices, rounding) lives in
//! `meterline-invoicer` `tax.rs`; this module only says what the catalog may contain and how a
//! rate is looked up. See docs/TAX.md.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::money::exact;

/// How tax is rounded to the currency's minor unit (`[billing] tax_rounding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaxRounding {
    /// One rounding per tax line: `round(Σ lines × rate)` (the default, and what Meterline did
    /// before this setting existed).
    #[default]
    PerInvoice,
    /// Each line's tax is rounded on its own, the tax line is the sum: `Σ round(line × rate)`.
    PerLine,
}

impl TaxRounding {
    /// The name used in configuration and line breakdowns.
    pub fn as_str(self) -> &'static str {
        match self {
            TaxRounding::PerInvoice => "per_invoice",
            TaxRounding::PerLine => "per_line",
        }
    }
}

/// A tax rate of a jurisdiction, optionally limited to dates.
///
/// Written either with an opaque `jurisdiction` key (`US-CA`, `DE`, `NONE`) or with `country`
/// and optional `region`, which make the key `DE` or `US-CA`. A customer in `US-CA` is taxed by
/// a `US-CA` rate when one covers the date, else by a `US` rate (region wins over country).
/// An entry without `from`/`to` is the jurisdiction's default; dated entries override it on their
/// dates (UTC days, `from` and `to` both inclusive) and may not overlap each other.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaxRate {
    /// Jurisdiction key; derived from `country`/`region` when absent.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jurisdiction: String,
    /// ISO 3166 alpha-2 country.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Region (state, province) within `country`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Name printed on the tax line, e.g. `VAT 19%`.
    pub name: String,
    /// Rate as a fraction: `"0.19"` for 19%.
    #[serde(with = "exact")]
    pub rate: Decimal,
    /// First day the rate applies (UTC, inclusive); absent: the default rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<NaiveDate>,
    /// Last day the rate applies (UTC, inclusive); absent: open-ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<NaiveDate>,
}

impl TaxRate {
    /// The catalog key: the jurisdiction, plus `.<from>` for dated entries.
    pub fn key(&self) -> String {
        match (self.from, self.to) {
            (Some(f), _) => format!("{}.{f}", self.jurisdiction),
            (None, Some(t)) => format!("{}.until.{t}", self.jurisdiction),
            (None, None) => self.jurisdiction.clone(),
        }
    }

    /// Whether this entry has dates (and so overrides the default entry on them).
    pub fn is_dated(&self) -> bool {
        self.from.is_some() || self.to.is_some()
    }

    /// Whether the rate applies at `t` (by UTC day).
    pub fn covers(&self, t: DateTime<Utc>) -> bool {
        let day = t.date_naive();
        self.from.is_none_or(|f| f <= day) && self.to.is_none_or(|to| day <= to)
    }

    /// Instants inside `(start, end)` where this entry starts or stops applying.
    pub fn boundaries(&self) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        if let Some(f) = self.from {
            out.push(f.and_hms_opt(0, 0, 0).map(|d| d.and_utc()));
        }
        if let Some(t) = self.to {
            out.push(t.succ_opt().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|d| d.and_utc()));
        }
        out.into_iter().flatten().collect()
    }
}

/// The jurisdiction keys tried for a customer's jurisdiction, most specific first: `US-CA` tries
/// `US-CA` then `US`; `DE` tries `DE`.
pub fn jurisdiction_candidates(jurisdiction: &str) -> Vec<String> {
    let mut v = vec![jurisdiction.to_owned()];
    if let Some((country, _)) = jurisdiction.split_once('-') {
        v.push(country.to_owned());
    }
    v
}

/// EU member states (ISO 3166 alpha-2) for reverse charge.
pub const EU_COUNTRIES: &[&str] = &[
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL",
    "PT", "RO", "SE", "SI", "SK",
];

/// VAT id formats per EU prefix (the part after the two-letter prefix), from the European
/// Commission's VIES documentation. Pattern characters: `9` a digit, `A` a letter, `X` a letter
/// or digit, anything else itself. Greece uses the prefix `EL`.
const VAT_FORMATS: &[(&str, &[&str])] = &[
    ("AT", &["U99999999"]),
    ("BE", &["9999999999"]),
    ("BG", &["999999999", "9999999999"]),
    ("CY", &["99999999A"]),
    ("CZ", &["99999999", "999999999", "9999999999"]),
    ("DE", &["999999999"]),
    ("DK", &["99999999"]),
    ("EE", &["999999999"]),
    ("EL", &["999999999"]),
    ("ES", &["X9999999X"]),
    ("FI", &["99999999"]),
    ("FR", &["XX999999999"]),
    ("HR", &["99999999999"]),
    ("HU", &["99999999"]),
    ("IE", &["9999999A", "9999999AA", "9X99999A"]),
    ("IT", &["99999999999"]),
    ("LT", &["999999999", "999999999999"]),
    ("LU", &["99999999"]),
    ("LV", &["99999999999"]),
    ("MT", &["99999999"]),
    ("NL", &["999999999B99"]),
    ("PL", &["9999999999"]),
    ("PT", &["999999999"]),
    ("RO", &["99", "999", "9999", "99999", "999999", "9999999", "99999999", "999999999", "9999999999"]),
    ("SE", &["999999999901"]),
    ("SI", &["99999999"]),
    ("SK", &["9999999999"]),
];

fn matches(pattern: &str, s: &str) -> bool {
    pattern.len() == s.len()
        && pattern.bytes().zip(s.bytes()).all(|(p, c)| match p {
            b'9' => c.is_ascii_digit(),
            b'A' => c.is_ascii_uppercase(),
            b'X' => c.is_ascii_uppercase() || c.is_ascii_digit(),
            other => other == c,
        })
}

/// If `vat_id` has an EU prefix, whether its format is valid: `Some(Ok(country))` with the ISO
/// country (`EL` → `GR`), `Some(Err(expected))` naming the formats allowed; `None` for a
/// non-EU id (stored, but never a reason for reverse charge). Spaces, dots and dashes are
/// ignored; letters must be upper case. Only the format is checked, not the registration
/// (VIES): see docs/TAX.md.
pub fn check_vat_id(vat_id: &str) -> Option<Result<&'static str, String>> {
    let id: String = vat_id.chars().filter(|c| !matches!(c, ' ' | '.' | '-')).collect();
    let prefix = id.get(..2)?;
    let (code, formats) = VAT_FORMATS.iter().find(|(p, _)| *p == prefix)?;
    let rest = &id[2..];
    if formats.iter().any(|f| matches(f, rest)) {
        let country = if *code == "EL" { "GR" } else { EU_COUNTRIES.iter().find(|c| **c == *code).copied().unwrap_or("") };
        Some(Ok(country))
    } else {
        Some(Err(format!("{code} followed by {}", formats.join(" or "))))
    }
}

/// A dated exchange rate: 1 `from` = `rate` `to`, valid from `date` (UTC) until the next entry of
/// the pair. Used only for the `*_base` reporting columns, never for what a customer owes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FxRate {
    /// Invoice currency.
    pub from: String,
    /// Reporting currency.
    pub to: String,
    /// Units of `to` per unit of `from`.
    #[serde(with = "exact")]
    pub rate: Decimal,
    /// First day of validity.
    pub date: NaiveDate,
}

impl FxRate {
    /// The catalog key: `EUR.USD.2026-10-31`.
    pub fn key(&self) -> String {
        format!("{}.{}.{}", self.from, self.to, self.date)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vat_id_formats() {
        assert_eq!(check_vat_id("DE123456789"), Some(Ok("DE")));
        assert_eq!(check_vat_id("FR 12 345678901"), Some(Ok("FR")));
        assert_eq!(check_vat_id("EL123456789"), Some(Ok("GR")));
        assert_eq!(check_vat_id("ATU12345678"), Some(Ok("AT")));
        assert_eq!(check_vat_id("NL123456789B01"), Some(Ok("NL")));
        assert_eq!(check_vat_id("IE1234567WA"), Some(Ok("IE")));
        assert_eq!(check_vat_id("ESX1234567X"), Some(Ok("ES")));
        assert_eq!(check_vat_id("DE12345678"), Some(Err("DE followed by 999999999".into())));
        assert_eq!(check_vat_id("ATU1234567"), Some(Err("AT followed by U99999999".into())));
        assert_eq!(check_vat_id("GB123456789"), None);
        assert_eq!(check_vat_id("x"), None);
    }

    #[test]
    fn rate_dates_are_inclusive_utc_days() {
        let r = TaxRate {
            jurisdiction: "DE".into(),
            name: "16%".into(),
            rate: Decimal::new(16, 2),
            from: NaiveDate::from_ymd_opt(2020, 7, 1),
            to: NaiveDate::from_ymd_opt(2020, 12, 31),
            ..Default::default()
        };
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert!(!r.covers(t("2020-06-30T23:59:59Z")));
        assert!(r.covers(t("2020-07-01T00:00:00Z")));
        assert!(r.covers(t("2020-12-31T23:59:59Z")));
        assert!(!r.covers(t("2021-01-01T00:00:00Z")));
        assert_eq!(r.boundaries(), vec![t("2020-07-01T00:00:00Z"), t("2021-01-01T00:00:00Z")]);
        assert_eq!(r.key(), "DE.2020-07-01");
        assert_eq!(jurisdiction_candidates("US-CA"), vec!["US-CA".to_string(), "US".to_string()]);
    }
}
