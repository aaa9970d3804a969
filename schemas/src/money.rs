//! Money: ISO 4217 currencies, rounding modes and the one function that rounds a line.
//!
//! Amounts are [`rust_decimal::Decimal`] everywhere: never `f32`/`f64`. Computation keeps full
//! precision (up to 28 significant digits); each invoice line is rounded exactly once, by
//! [`round_line`], to the currency's minor unit with the configured [`RoundingMode`]. Sums of
//! rounded lines are exact, so an invoice total equals the sum of its lines to the last minor unit.

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// An ISO 4217 currency with its number of minor-unit digits (USD 2, JPY 0, KWD 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    code: &'static str,
    minor_units: u32,
}

impl Currency {
    /// Looks up an active ISO 4217 code (upper case, three letters).
    pub fn from_code(code: &str) -> Result<Currency> {
        if let Some(c) = THREE_DIGITS.iter().find(|c| **c == code) {
            return Ok(Currency { code: c, minor_units: 3 });
        }
        if let Some(c) = ZERO_DIGITS.iter().find(|c| **c == code) {
            return Ok(Currency { code: c, minor_units: 0 });
        }
        if let Some(c) = FOUR_DIGITS.iter().find(|c| **c == code) {
            return Ok(Currency { code: c, minor_units: 4 });
        }
        if let Some(c) = TWO_DIGITS.iter().find(|c| **c == code) {
            return Ok(Currency { code: c, minor_units: 2 });
        }
        Err(Error::UnknownCurrency(code.to_owned()))
    }

    /// The three-letter code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// Digits after the decimal point of the minor unit.
    pub fn minor_units(&self) -> u32 {
        self.minor_units
    }

    /// Formats an already rounded amount with exactly the currency's minor-unit digits.
    pub fn format(&self, amount: Decimal) -> String {
        let mut a = amount.round_dp_with_strategy(self.minor_units, RoundingStrategy::MidpointNearestEven);
        a.rescale(self.minor_units);
        a.to_string()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::from_code(&s).map_err(serde::de::Error::custom)
    }
}

// ISO 4217 active codes grouped by minor units (list of 2024; funds codes included).
// A hand-kept table rather than a crate: it is small, audited in review, and billing must not
// change behaviour because a dependency changed a table. See docs/DECISIONS.md.
const ZERO_DIGITS: &[&str] =
    &["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"];
const THREE_DIGITS: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];
const FOUR_DIGITS: &[&str] = &["CLF", "UYW"];
const TWO_DIGITS: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BMD", "BND", "BOB", "BOV", "BRL",
    "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHE", "CHF", "CHW", "CNY", "COP", "COU", "CRC", "CUP", "CVE", "CZK", "DKK", "DOP",
    "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR",
    "ILS", "INR", "IRR", "JMD", "KES", "KGS", "KHR", "KPW", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "MAD", "MDL", "MGA", "MKD",
    "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "PAB", "PEN",
    "PGK", "PHP", "PKR", "PLN", "QAR", "RON", "RSD", "RUB", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP",
    "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "USD", "USN", "UYU", "UZS", "VED", "VES",
    "WST", "XCD", "YER", "ZAR", "ZMW", "ZWG",
];

/// How a line amount is rounded to the currency's minor unit.
///
/// | mode | rule | 2.345 USD | -2.345 USD | 2.341 USD |
/// | --- | --- | --- | --- | --- |
/// | `half_even` | nearest, ties to the even digit (banker's rounding) | 2.34 | -2.34 | 2.34 |
/// | `half_up` | nearest, ties away from zero (commercial rounding) | 2.35 | -2.35 | 2.34 |
/// | `up` | away from zero | 2.35 | -2.35 | 2.35 |
/// | `down` | toward zero (truncate) | 2.34 | -2.34 | 2.34 |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoundingMode {
    /// Nearest; ties to even. The default: unbiased over many lines.
    #[default]
    HalfEven,
    /// Nearest; ties away from zero.
    HalfUp,
    /// Away from zero.
    Up,
    /// Toward zero.
    Down,
}

impl RoundingMode {
    fn strategy(self) -> RoundingStrategy {
        match self {
            RoundingMode::HalfEven => RoundingStrategy::MidpointNearestEven,
            RoundingMode::HalfUp => RoundingStrategy::MidpointAwayFromZero,
            RoundingMode::Up => RoundingStrategy::AwayFromZero,
            RoundingMode::Down => RoundingStrategy::ToZero,
        }
    }

    /// The name used in configuration and stored on invoice lines.
    pub fn as_str(self) -> &'static str {
        match self {
            RoundingMode::HalfEven => "half_even",
            RoundingMode::HalfUp => "half_up",
            RoundingMode::Up => "up",
            RoundingMode::Down => "down",
        }
    }
}

impl FromStr for RoundingMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "half_even" => Ok(RoundingMode::HalfEven),
            "half_up" => Ok(RoundingMode::HalfUp),
            "up" => Ok(RoundingMode::Up),
            "down" => Ok(RoundingMode::Down),
            other => Err(format!("unknown rounding mode {other:?}: expected half_even, half_up, up or down")),
        }
    }
}

/// Rounds one invoice line to the currency's minor unit: the only place a line is rounded.
///
/// The result carries exactly `currency.minor_units()` decimal places, so sums of rounded
/// lines need no further rounding.
pub fn round_line(amount: Decimal, currency: Currency, mode: RoundingMode) -> Decimal {
    let mut rounded = amount.round_dp_with_strategy(currency.minor_units, mode.strategy());
    rounded.rescale(currency.minor_units);
    rounded
}

/// Parses an exact decimal from text: plain (`12.5`, `-3`) or scientific (`1.5e3`) notation.
pub fn parse_decimal(text: &str) -> Option<Decimal> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    if t.contains(['e', 'E']) { Decimal::from_scientific(t).ok() } else { Decimal::from_str_exact(t).ok() }
}

/// Serde for decimals in configuration and catalog files: strings or integers, never floats.
///
/// A YAML/TOML float such as `0.1` has already been turned into a binary `f64` by the parser
/// before we see it, so it is refused with an error that shows how to write it exactly.
pub mod exact {
    use super::*;
    use serde::de::{self, Visitor};

    /// Serializes a decimal as a string.
    pub fn serialize<S: Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&d.to_string())
    }

    /// Deserializes a decimal from a string or an integer.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        d.deserialize_any(ExactVisitor)
    }

    pub(crate) struct ExactVisitor;

    impl Visitor<'_> for ExactVisitor {
        type Value = Decimal;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a decimal written as a string (\"0.002\") or an integer")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Decimal, E> {
            parse_decimal(v).ok_or_else(|| E::custom(format!("{v:?} is not a decimal number")))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }
        #[allow(clippy::float_arithmetic)]
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Decimal, E> {
            Err(E::custom(format!("{v} is a binary float; write decimals as strings to keep them exact, e.g. \"{v}\"")))
        }
    }

    /// The same for `Option<Decimal>`; `null` or a missing key is `None`.
    pub mod option {
        use super::*;

        /// Serializes an optional decimal as a string or null.
        pub fn serialize<S: Serializer>(d: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_str(&d.to_string()),
                None => s.serialize_none(),
            }
        }

        /// Deserializes an optional decimal.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
            struct OptVisitor;
            impl<'de> Visitor<'de> for OptVisitor {
                type Value = Option<Decimal>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a decimal written as a string, an integer, or null")
                }
                fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                    Ok(None)
                }
                fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                    Ok(None)
                }
                fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                    d.deserialize_any(ExactVisitor).map(Some)
                }
            }
            d.deserialize_option(OptVisitor)
        }
    }
}

/// Scale of every `Decimal(38, 9)` column (ledger values, ClickHouse amounts and quantities).
pub const COLUMN_SCALE: u32 = 9;

/// Converts a decimal to the unscaled `i128` of a `Decimal(38, 9)` column, refusing to round.
pub fn to_scaled_i128(value: Decimal, what: &'static str) -> Result<i128> {
    // Ingest runs this once per ledger row. At a scale of at most 9 the result is the mantissa
    // times a power of ten, computed exactly in i128 (|mantissa| < 2^96, times 10^9 < 2^126);
    // it is the value `normalize` + `rescale` give, and it is refused exactly when theirs is:
    // when it does not fit the 96-bit mantissa that `rescale` must reach.
    if value.scale() <= COLUMN_SCALE {
        let scaled = value.mantissa() * 10i128.pow(COLUMN_SCALE - value.scale());
        if scaled.unsigned_abs() < 1u128 << 96 {
            return Ok(scaled);
        }
        return Err(Error::DecimalRange { value: value.to_string(), what });
    }
    let normalized = value.normalize();
    if normalized.scale() > COLUMN_SCALE {
        return Err(Error::DecimalRange { value: value.to_string(), what });
    }
    let mut v = normalized;
    v.rescale(COLUMN_SCALE);
    if v.scale() != COLUMN_SCALE {
        // rescale could not reach the scale without overflowing the 96-bit mantissa
        return Err(Error::DecimalRange { value: value.to_string(), what });
    }
    Ok(v.mantissa())
}

/// The inverse of [`to_scaled_i128`].
pub fn from_scaled_i128(unscaled: i128) -> Decimal {
    Decimal::from_i128_with_scale(unscaled, COLUMN_SCALE).normalize()
}

/// Serde for a `Decimal` stored in a ClickHouse `Decimal(38, 9)` column (RowBinary `Int128`).
pub mod ch_decimal {
    use super::*;

    /// Serializes as the unscaled 128-bit integer.
    pub fn serialize<S: Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        let v = to_scaled_i128(*d, "Decimal(38, 9)").map_err(serde::ser::Error::custom)?;
        s.serialize_i128(v)
    }

    /// Deserializes from the unscaled 128-bit integer.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        let v = i128::deserialize(d)?;
        Ok(from_scaled_i128(v))
    }
}

#[cfg(test)]
mod tests {
    /// [`super::to_scaled_i128`] before its fast path: normalize, then rescale.
    fn to_scaled_i128_by_rescale(value: Decimal) -> Option<i128> {
        let normalized = value.normalize();
        if normalized.scale() > COLUMN_SCALE {
            return None;
        }
        let mut v = normalized;
        v.rescale(COLUMN_SCALE);
        (v.scale() == COLUMN_SCALE).then(|| v.mantissa())
    }

    #[test]
    fn scaled_i128_is_what_rescaling_gives() {
        let max = Decimal::MAX.mantissa();
        let mut mantissas = vec![0i128, 1, 7, 10, 123_456_789, 1_000_000_000, max, max - 1];
        for k in 0..=28u32 {
            let p = 10i128.pow(k);
            // Near the 96-bit bound at every scale, and with trailing zeros for normalize.
            mantissas.extend([p, p - 1, p + 1, max / p, max / p + 1, max / 7 / p * p]);
        }
        for m in mantissas.into_iter().filter(|&m| m <= max) {
            for scale in 0..=28u32 {
                for v in [Decimal::from_i128_with_scale(m, scale), Decimal::from_i128_with_scale(-m, scale)] {
                    let got = to_scaled_i128(v, "test").ok();
                    assert_eq!(got, to_scaled_i128_by_rescale(v), "{v} (mantissa {m}, scale {scale})");
                }
            }
        }
    }

    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    fn cur(code: &str) -> Currency {
        Currency::from_code(code).unwrap()
    }

    #[test]
    fn minor_units_follow_iso_4217() {
        assert_eq!(cur("USD").minor_units(), 2);
        assert_eq!(cur("EUR").minor_units(), 2);
        assert_eq!(cur("JPY").minor_units(), 0);
        assert_eq!(cur("KRW").minor_units(), 0);
        assert_eq!(cur("KWD").minor_units(), 3);
        assert_eq!(cur("BHD").minor_units(), 3);
        assert_eq!(cur("CLF").minor_units(), 4);
        let err = Currency::from_code("XYZ").unwrap_err().to_string();
        assert!(err.contains("\"XYZ\""), "{err}");
        assert!(Currency::from_code("usd").is_err(), "codes are upper case");
    }

    #[test]
    fn rounding_zero_minor_units_jpy() {
        let jpy = cur("JPY");
        assert_eq!(round_line(d("1234.5"), jpy, RoundingMode::HalfEven), d("1234"));
        assert_eq!(round_line(d("1235.5"), jpy, RoundingMode::HalfEven), d("1236"));
        assert_eq!(round_line(d("1234.5"), jpy, RoundingMode::HalfUp), d("1235"));
        assert_eq!(round_line(d("1234.01"), jpy, RoundingMode::Up), d("1235"));
        assert_eq!(round_line(d("1234.99"), jpy, RoundingMode::Down), d("1234"));
        assert_eq!(round_line(d("-1234.5"), jpy, RoundingMode::HalfUp), d("-1235"));
        assert_eq!(round_line(d("1234.5"), jpy, RoundingMode::HalfEven).scale(), 0);
    }

    #[test]
    fn rounding_two_minor_units_usd() {
        let usd = cur("USD");
        assert_eq!(round_line(d("2.345"), usd, RoundingMode::HalfEven), d("2.34"));
        assert_eq!(round_line(d("2.355"), usd, RoundingMode::HalfEven), d("2.36"));
        assert_eq!(round_line(d("2.345"), usd, RoundingMode::HalfUp), d("2.35"));
        assert_eq!(round_line(d("-2.345"), usd, RoundingMode::HalfUp), d("-2.35"));
        assert_eq!(round_line(d("2.341"), usd, RoundingMode::Up), d("2.35"));
        assert_eq!(round_line(d("-2.341"), usd, RoundingMode::Up), d("-2.35"));
        assert_eq!(round_line(d("2.349"), usd, RoundingMode::Down), d("2.34"));
        assert_eq!(round_line(d("0.000000001"), usd, RoundingMode::Up), d("0.01"));
        // Rounded values always carry the minor-unit scale, so "29" prints as 29.00.
        assert_eq!(round_line(d("29"), usd, RoundingMode::HalfEven).to_string(), "29.00");
    }

    #[test]
    fn rounding_three_minor_units_kwd() {
        let kwd = cur("KWD");
        assert_eq!(round_line(d("1.2345"), kwd, RoundingMode::HalfEven), d("1.234"));
        assert_eq!(round_line(d("1.2355"), kwd, RoundingMode::HalfEven), d("1.236"));
        assert_eq!(round_line(d("1.2345"), kwd, RoundingMode::HalfUp), d("1.235"));
        assert_eq!(round_line(d("1.2341"), kwd, RoundingMode::Up), d("1.235"));
        assert_eq!(round_line(d("1.2349"), kwd, RoundingMode::Down), d("1.234"));
        assert_eq!(round_line(d("7"), kwd, RoundingMode::HalfEven).to_string(), "7.000");
    }

    #[test]
    fn decimal_text_parsing_is_exact() {
        assert_eq!(parse_decimal("0.1"), Some(d("0.1")));
        assert_eq!(parse_decimal("1.5e3"), Some(d("1500")));
        assert_eq!(parse_decimal("-2"), Some(d("-2")));
        assert_eq!(parse_decimal("abc"), None);
        assert_eq!(parse_decimal(""), None);
    }

    #[test]
    fn scaled_i128_refuses_to_round() {
        assert_eq!(to_scaled_i128(d("1.5"), "t").unwrap(), 1_500_000_000);
        assert_eq!(from_scaled_i128(1_500_000_000), d("1.5"));
        assert!(to_scaled_i128(d("0.0000000001"), "t").is_err());
        assert_eq!(to_scaled_i128(d("2.1000000000000"), "t").unwrap(), 2_100_000_000);
    }

    #[test]
    fn catalog_decimals_refuse_floats() {
        #[derive(Deserialize)]
        struct P {
            #[serde(with = "exact")]
            price: Decimal,
        }
        let ok: P = serde_json::from_str(r#"{"price":"0.002"}"#).unwrap();
        assert_eq!(ok.price, d("0.002"));
        let int: P = serde_json::from_str(r#"{"price":3}"#).unwrap();
        assert_eq!(int.price, d("3"));
        let err = serde_json::from_str::<P>(r#"{"price":0.1}"#).err().unwrap().to_string();
        assert!(err.contains("0.1") && err.contains("string"), "{err}");
    }
}
