//! Telecom rating: longest prefix, bands, offsets, increments, fees, exactness, validation.
//!
//! Every expected amount is worked out by hand in a comment. Calendar used throughout (checked by
//! `calendar_used_by_these_tests`): 2026-03-02 is a Monday, 03-06 a Friday, 03-07 a Saturday,
//! 03-08 a Sunday.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use chrono::{DateTime, Datelike, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;

use meterline_rater::calls::sum_calls;
use meterline_rater::telecom::{
    Band, CallRecord, Increments, Rate, RateTable, RatedCall, TelecomError, Weekday, rate_call, rate_calls, total,
};

const WEEKDAYS: &[Weekday] = &[Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri];
const WEEKEND: &[Weekday] = &[Weekday::Sat, Weekday::Sun];

fn d(s: &str) -> Decimal {
    Decimal::from_str_exact(s).unwrap()
}

fn band(name: &str, days: &[Weekday], from: &str, to: &str, per_minute: &str) -> Band {
    Band { name: name.into(), days: days.to_vec(), from: from.into(), to: to.into(), price_per_minute: d(per_minute) }
}

/// One band covering every day, all day.
fn any_time(per_minute: &str) -> Vec<Band> {
    vec![band("any time", &[], "00:00", "00:00", per_minute)]
}

fn rate(prefix: &str, description: &str, bands: Vec<Band>, first: u32, next: u32) -> Rate {
    Rate {
        prefix: prefix.into(),
        description: description.into(),
        bands,
        connect_fee: Decimal::ZERO,
        increments: Increments { first, next },
        min_duration_secs: 0,
    }
}

fn table(rates: Vec<Rate>) -> RateTable {
    RateTable { key: "t".into(), currency: "USD".into(), timezone_offset_minutes: 0, rates }
}

/// Weekday peak 08:00–18:00 at 0.05, weekday off-peak 18:00–08:00 at 0.02, weekend at 0.01.
fn uk_bands() -> Vec<Band> {
    vec![
        band("peak", WEEKDAYS, "08:00", "18:00", "0.05"),
        band("off-peak", WEEKDAYS, "18:00", "08:00", "0.02"),
        band("weekend", WEEKEND, "00:00", "00:00", "0.01"),
    ]
}

/// A UK table priced per started minute with [`uk_bands`].
fn uk() -> RateTable {
    table(vec![rate("44", "United Kingdom", uk_bands(), 60, 60)])
}

fn call(id: &str, destination: &str, start: &str, duration_secs: u64) -> CallRecord {
    CallRecord { id: id.into(), destination: destination.into(), start: start.parse::<DateTime<Utc>>().unwrap(), duration_secs }
}

fn rated(t: &RateTable, destination: &str, start: &str, secs: u64) -> RatedCall {
    rate_call(t, &call("c", destination, start, secs)).unwrap()
}

/// (band, amount) of a call to the UK table's destination.
fn band_and_amount(t: &RateTable, start: &str, secs: u64) -> (String, Decimal) {
    let r = rated(t, "+44 20 7946 0000", start, secs);
    (r.band, r.amount)
}

fn err(t: &RateTable, destination: &str, start: &str, secs: u64) -> String {
    rate_call(t, &call("c", destination, start, secs)).unwrap_err().to_string()
}

const MON_NOON: &str = "2026-03-02T12:00:00Z";

#[test]
fn calendar_used_by_these_tests() {
    let day = |s: &str| s.parse::<DateTime<Utc>>().unwrap().weekday();
    assert_eq!(day("2026-03-02T00:00:00Z"), chrono::Weekday::Mon);
    assert_eq!(day("2026-03-06T00:00:00Z"), chrono::Weekday::Fri);
    assert_eq!(day("2026-03-07T00:00:00Z"), chrono::Weekday::Sat);
    assert_eq!(day("2026-03-08T00:00:00Z"), chrono::Weekday::Sun);
}

// ---- prefixes ----

/// Rates listed out of order, so that a first-match rule would fail the test.
fn nested_prefixes() -> Vec<Rate> {
    vec![
        rate("447", "UK mobile", any_time("0.10"), 60, 60),
        rate("44", "UK", any_time("0.05"), 60, 60),
        rate("4479", "UK mobile 79", any_time("0.20"), 60, 60),
    ]
}

#[test]
fn longest_prefix_wins_whatever_the_order() {
    let t = table(nested_prefixes());
    let matched = |dest: &str| {
        let r = rated(&t, dest, MON_NOON, 60);
        (r.matched_prefix, r.description, r.amount)
    };
    // 442079460000: only "44" matches; 60 s × 0.05/min = 0.05
    assert_eq!(matched("+44 20 7946 0000"), ("44".into(), "UK".into(), d("0.05")));
    // 447700900123: "44" and "447" match ("4479" does not: 4477…); 60 s × 0.10 = 0.10
    assert_eq!(matched("+447700 900123"), ("447".into(), "UK mobile".into(), d("0.1")));
    // 447900900123: all three match, "4479" is the longest; 60 s × 0.20 = 0.20
    assert_eq!(matched("+44790-0900123"), ("4479".into(), "UK mobile 79".into(), d("0.2")));
    // a destination equal to a prefix matches it
    assert_eq!(matched("+44 79").0, "4479");
    // spaces, dashes and the '+' are not digits: the same number written three ways
    assert_eq!(matched("447900900123").0, matched("+44 7900-900 123").0);
}

#[test]
fn catch_all_prefix_prices_what_nothing_else_matches() {
    let mut rates = nested_prefixes();
    rates.push(rate("", "Rest of world", any_time("1.00"), 60, 60));
    let t = table(rates);
    t.validate().unwrap();
    let r = rated(&t, "+1 212 555 0100", MON_NOON, 90);
    // 90 s in 60/60 → 120 s; 120 × 1.00 / 60 = 2
    assert_eq!((r.matched_prefix.as_str(), r.description.as_str(), r.billed_secs, r.amount), ("", "Rest of world", 120, d("2")));
    // any real prefix beats the catch-all
    assert_eq!(rated(&t, "+44 20 7946 0000", MON_NOON, 60).matched_prefix, "44");
}

#[test]
fn no_matching_prefix_is_an_error_naming_the_destination() {
    let t = table(nested_prefixes());
    assert_eq!(
        err(&t, "+1 212 555 0100", MON_NOON, 60),
        r#"destination "+1 212 555 0100" (digits 12125550100) matches no rate prefix in table t"#
    );
    // "4" is shorter than every prefix
    assert!(matches!(rate_call(&t, &call("c", "+4", MON_NOON, 60)), Err(TelecomError::NoRate { .. })));
    // a 0-second attempt to an unknown destination is still reported
    assert!(matches!(rate_call(&t, &call("c", "+1 212", MON_NOON, 0)), Err(TelecomError::NoRate { .. })));
    // no dial-plan conversion: 0044… is not 44…
    assert!(err(&t, "0044 20 7946 0000", MON_NOON, 60).contains("digits 00442079460000"));
}

#[test]
fn malformed_destinations_are_refused() {
    let t = table(nested_prefixes());
    assert_eq!(
        err(&t, "+44 (20) 7946", MON_NOON, 60),
        r#"destination "+44 (20) 7946" is not a phone number: only digits, a leading '+', spaces and '-' are allowed"#
    );
    assert_eq!(err(&t, "44+20", MON_NOON, 60), r#"destination "44+20" is not a phone number: '+' is only allowed as the first character"#);
    assert_eq!(err(&t, " + ", MON_NOON, 60), r#"destination " + " is not a phone number: it has no digits"#);
}

// ---- bands ----

#[test]
fn weekday_peak_off_peak_and_weekend_bands() {
    let t = uk();
    let at = |start| band_and_amount(&t, start, 60);
    // 60 s is one minute at the band's price
    assert_eq!(at("2026-03-02T12:00:00Z"), ("peak".into(), d("0.05")));
    assert_eq!(at("2026-03-02T07:59:59Z"), ("off-peak".into(), d("0.02"))); // before 08:00: the wrapped part
    assert_eq!(at("2026-03-02T08:00:00Z"), ("peak".into(), d("0.05"))); // `from` is inclusive
    assert_eq!(at("2026-03-03T03:00:00Z"), ("off-peak".into(), d("0.02"))); // Tuesday early hours
    assert_eq!(at("2026-03-06T23:30:00Z"), ("off-peak".into(), d("0.02"))); // Friday late
    // Saturday 00:30: Friday's off-peak does not carry over midnight; the weekend band prices it
    assert_eq!(at("2026-03-07T00:30:00Z"), ("weekend".into(), d("0.01")));
    assert_eq!(at("2026-03-08T23:59:59Z"), ("weekend".into(), d("0.01")));
}

#[test]
fn a_call_is_priced_entirely_by_its_start_band() {
    let t = uk();
    // 17:59:59 is peak; the hour runs almost entirely in off-peak but is all peak: 60 × 0.05 = 3
    assert_eq!(band_and_amount(&t, "2026-03-02T17:59:59Z", 3600), ("peak".into(), d("3")));
    assert_eq!(band_and_amount(&t, "2026-03-02T17:59:59.999Z", 3600), ("peak".into(), d("3")));
    // 18:00:00 is off-peak (`to` is exclusive): 60 × 0.02 = 1.2
    assert_eq!(band_and_amount(&t, "2026-03-02T18:00:00Z", 3600), ("off-peak".into(), d("1.2")));
}

#[test]
fn the_first_matching_band_wins() {
    let weekend_first = vec![band("weekend", WEEKEND, "00:00", "00:00", "0.01"), band("standard", &[], "00:00", "00:00", "0.04")];
    let t = table(vec![rate("44", "UK", weekend_first.clone(), 60, 60)]);
    assert_eq!(band_and_amount(&t, "2026-03-07T12:00:00Z", 60), ("weekend".into(), d("0.01")));
    assert_eq!(band_and_amount(&t, "2026-03-02T12:00:00Z", 60), ("standard".into(), d("0.04")));
    // the same bands the other way round: "standard" covers Saturday too and comes first
    let t = table(vec![rate("44", "UK", weekend_first.into_iter().rev().collect(), 60, 60)]);
    assert_eq!(band_and_amount(&t, "2026-03-07T12:00:00Z", 60), ("standard".into(), d("0.04")));
}

#[test]
fn no_band_is_an_error_naming_the_local_time() {
    let mut t = table(vec![rate("44", "United Kingdom", vec![band("peak", WEEKDAYS, "08:00", "18:00", "0.05")], 60, 60)]);
    assert_eq!(
        err(&t, "+44 20 7946 0000", "2026-03-07T10:00:00Z", 60),
        r#"rate "44" (United Kingdom) has no band covering the call's start, 2026-03-07 10:00:00 +00:00 (sat)"#
    );
    // the time is named in the table's offset
    t.timezone_offset_minutes = 60;
    assert_eq!(
        err(&t, "+44 20 7946 0000", "2026-03-02T17:30:00Z", 60),
        r#"rate "44" (United Kingdom) has no band covering the call's start, 2026-03-02 18:30:00 +01:00 (mon)"#
    );
}

#[test]
fn the_offset_moves_a_call_across_midnight_into_another_weekday() {
    let mut t = uk();
    // Friday 23:30 UTC is Friday off-peak in UTC ...
    assert_eq!(band_and_amount(&t, "2026-03-06T23:30:00Z", 60), ("off-peak".into(), d("0.02")));
    // ... and Saturday 00:30 at UTC+01:00: weekend
    t.timezone_offset_minutes = 60;
    assert_eq!(band_and_amount(&t, "2026-03-06T23:30:00Z", 60), ("weekend".into(), d("0.01")));
    // Monday 07:30 UTC is 08:30 at UTC+01:00: peak
    assert_eq!(band_and_amount(&t, "2026-03-02T07:30:00Z", 60), ("peak".into(), d("0.05")));
    // Monday 02:00 UTC is Sunday 21:00 at UTC−05:00: weekend, not Monday off-peak
    t.timezone_offset_minutes = -300;
    assert_eq!(band_and_amount(&t, "2026-03-02T02:00:00Z", 60), ("weekend".into(), d("0.01")));
    // half-hour offsets: Monday 02:30 UTC is 08:00 at UTC+05:30, the first second of peak
    t.timezone_offset_minutes = 330;
    assert_eq!(band_and_amount(&t, "2026-03-02T02:30:00Z", 60), ("peak".into(), d("0.05")));
    assert_eq!(band_and_amount(&t, "2026-03-02T02:29:59Z", 60), ("off-peak".into(), d("0.02")));
}

// ---- increments, minimum, fees ----

/// (billed seconds, amount) of a weekday-noon call to a one-rate table.
fn billed(r: Rate, secs: u64) -> (u64, Decimal) {
    let out = rated(&table(vec![r]), "+44 20 7946 0000", MON_NOON, secs);
    (out.billed_secs, out.amount)
}

#[test]
fn increments_60_60_charge_every_started_minute() {
    let r = rate("44", "UK", any_time("0.05"), 60, 60);
    assert_eq!(billed(r.clone(), 1), (60, d("0.05"))); // 1 → 60 s; 60 × 0.05 / 60 = 0.05
    assert_eq!(billed(r.clone(), 60), (60, d("0.05")));
    assert_eq!(billed(r.clone(), 61), (120, d("0.1"))); // 61 → 60 + ⌈1/60⌉ × 60 = 120; 120 × 0.05 / 60 = 0.10
    assert_eq!(billed(r, 121), (180, d("0.15"))); // 121 → 180; 3 × 0.05
}

#[test]
fn increments_30_6_charge_30_seconds_then_6_second_blocks() {
    let r = rate("44", "UK", any_time("0.12"), 30, 6);
    assert_eq!(billed(r.clone(), 31), (36, d("0.072"))); // 31 → 30 + ⌈1/6⌉ × 6 = 36; 36 × 0.12 = 4.32; ÷ 60 = 0.072
    assert_eq!(billed(r.clone(), 30), (30, d("0.06"))); // 30 → 30; 3.6 ÷ 60 = 0.06
    assert_eq!(billed(r.clone(), 1), (30, d("0.06"))); // 1 → the first block, 30
    assert_eq!(billed(r, 37), (42, d("0.084"))); // 37 → 30 + ⌈7/6⌉ × 6 = 42; 5.04 ÷ 60 = 0.084
}

#[test]
fn increments_1_1_charge_every_second() {
    let r = rate("44", "UK", any_time("0.06"), 1, 1);
    assert_eq!(billed(r.clone(), 37), (37, d("0.037"))); // 37 × 0.06 = 2.22; ÷ 60 = 0.037
    assert_eq!(billed(r, 1), (1, d("0.001"))); // 0.06 ÷ 60
}

#[test]
fn the_minimum_duration_applies_before_increments() {
    let mut r = rate("44", "UK", any_time("0.06"), 1, 1);
    r.min_duration_secs = 60;
    assert_eq!(billed(r.clone(), 10), (60, d("0.06"))); // 10 → minimum 60; 60 × 0.06 / 60
    assert_eq!(billed(r, 75), (75, d("0.075"))); // above the minimum: 75 × 0.06 = 4.5; ÷ 60 = 0.075
    let mut r = rate("44", "UK", any_time("0.12"), 30, 6);
    r.min_duration_secs = 45;
    // 10 → minimum 45 → 30 + ⌈15/6⌉ × 6 = 48; 48 × 0.12 = 5.76; ÷ 60 = 0.096
    assert_eq!(billed(r, 10), (48, d("0.096")));
}

#[test]
fn the_connect_fee_is_added_once_per_answered_call() {
    let mut r = rate("44", "UK", any_time("0.05"), 60, 60);
    r.connect_fee = d("0.15");
    let out = rated(&table(vec![r]), "+44 20 7946 0000", MON_NOON, 61);
    // 61 → 120 s; usage 120 × 0.05 / 60 = 0.10; amount 0.15 + 0.10 = 0.25
    assert_eq!((out.billed_secs, out.connect_fee, out.usage_amount, out.amount), (120, d("0.15"), d("0.1"), d("0.25")));
}

#[test]
fn a_zero_second_call_is_an_unanswered_attempt() {
    let mut r = rate("44", "UK", uk_bands(), 60, 60);
    r.connect_fee = d("0.15");
    r.min_duration_secs = 60;
    let out = rated(&table(vec![r]), "+44 20 7946 0000", MON_NOON, 0);
    // no minimum, no increment, no connect fee; still matched to a rate and a band
    assert_eq!((out.billed_secs, out.connect_fee, out.usage_amount, out.amount), (0, d("0"), d("0"), d("0")));
    assert_eq!((out.matched_prefix.as_str(), out.band.as_str(), out.duration_secs), ("44", "peak", 0));
}

// ---- exactness and totals ----

#[test]
fn a_price_with_many_decimals_stays_exact() {
    let t = table(vec![rate("44", "UK", any_time("0.0137"), 1, 1)]);
    // 36 × 0.0137 = 0.4932; ÷ 60 = 0.00822 exactly (binary floats give 0.008220000000000001)
    assert_eq!(rated(&t, "+44 20", MON_NOON, 36).amount, d("0.00822"));
    // 1000 such calls add up to 8.22 exactly
    let calls: Vec<_> = (0..1000).map(|i| call(&format!("c{i}"), "+44 20", MON_NOON, 36)).collect();
    let (ok, failed) = rate_calls(&t, &calls);
    assert!(failed.is_empty());
    assert_eq!(total(&ok).unwrap(), d("8.22"));
    // 37 × 0.0137 = 0.5069 exactly; ÷ 60 = 0.008448333… does not terminate, so the quotient is
    // rounded at Decimal's 28th decimal place, the only inexact step
    let r = rated(&t, "+44 20", MON_NOON, 37);
    assert_eq!(r.amount, d("0.0084483333333333333333333333"));
    // × 60 = 0.506899999…998 (27 decimals): 2 × 10⁻²⁷ short of 0.5069
    assert_eq!(d("0.5069") - r.amount * Decimal::from(60), Decimal::new(2, 27));
    // eight decimals per minute: whole minutes are always exact
    let t = table(vec![rate("44", "UK", any_time("0.01369998"), 1, 1)]);
    // 60 s × 0.01369998 / 60 = 0.01369998
    assert_eq!(rated(&t, "+44 20", MON_NOON, 60).amount, d("0.01369998"));
    // 120 s → 1.6439976 / 60 = 0.02739996
    assert_eq!(rated(&t, "+44 20", MON_NOON, 120).amount, d("0.02739996"));
}

#[test]
fn total_adds_amounts_exactly_and_refuses_mixed_currencies() {
    let t = uk();
    let calls = [
        call("a", "+44 20", "2026-03-02T12:00:00Z", 61),  // peak, 120 s: 0.10
        call("b", "+44 20", "2026-03-02T19:00:00Z", 600), // off-peak, 600 s: 10 × 0.02 = 0.20
        call("c", "+44 20", "2026-03-07T12:00:00Z", 1),   // weekend, 60 s: 0.01
    ];
    let (ok, failed) = rate_calls(&t, &calls);
    assert!(failed.is_empty());
    assert_eq!(total(&ok).unwrap(), d("0.31")); // 0.10 + 0.20 + 0.01
    assert_eq!(total(&[]).unwrap(), d("0"));
    let mut eur = t.clone();
    eur.currency = "EUR".into();
    let mut mixed = ok.clone();
    mixed.push(rate_call(&eur, &call("d", "+44 20", MON_NOON, 60)).unwrap());
    assert_eq!(total(&mixed).unwrap_err().to_string(), "cannot total calls in USD and EUR (call d): totals are per currency");
}

#[test]
fn rate_calls_keeps_order_and_pairs_failures_with_their_ids() {
    let t = table(nested_prefixes());
    let calls = [
        call("1", "+44 20", MON_NOON, 60),
        call("2", "+1 212", MON_NOON, 60),
        call("3", "+4479 00", MON_NOON, 60),
        call("4", "not a number", MON_NOON, 60),
        call("5", "+447 7", MON_NOON, 60),
    ];
    let (ok, failed) = rate_calls(&t, &calls);
    let ok: Vec<_> = ok.iter().map(|r| (r.call_id.as_str(), r.matched_prefix.as_str())).collect();
    assert_eq!(ok, [("1", "44"), ("3", "4479"), ("5", "447")]);
    assert_eq!(failed.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["2", "4"]);
    assert!(matches!(failed[0].1, TelecomError::NoRate { .. }));
    assert!(matches!(failed[1].1, TelecomError::BadDestination { .. }));
    // a table that cannot rate anything fails every call with the same error
    let mut bad = t.clone();
    bad.currency = "usd".into();
    let (ok, failed) = rate_calls(&bad, &calls);
    assert!(ok.is_empty() && failed.len() == 5);
    assert_eq!(failed[4].1.to_string(), r#"currency: unknown currency "usd": not an active ISO 4217 code"#);
}

// ---- validation ----

fn validation_error(edit: impl FnOnce(&mut RateTable)) -> String {
    let mut t = table(vec![rate("44", "UK", uk_bands(), 60, 60), rate("", "Rest of world", any_time("1"), 60, 60)]);
    t.validate().unwrap();
    edit(&mut t);
    t.validate().unwrap_err().to_string()
}

#[test]
fn validation_names_the_rate_and_the_field() {
    assert_eq!(
        validation_error(|t| t.rates[0].prefix = "44a".into()),
        r#"rates[44a].prefix: "44a" must be ASCII digits only (no '+', spaces or dashes)"#
    );
    assert_eq!(
        validation_error(|t| t.rates[0].prefix = "+44".into()),
        r#"rates[+44].prefix: "+44" must be ASCII digits only (no '+', spaces or dashes)"#
    );
    assert_eq!(validation_error(|t| t.rates[1].prefix = "44".into()), r#"rates[44].prefix: "44" is defined twice"#);
    assert_eq!(
        validation_error(|t| t.rates[0].bands[1].from = "25:00".into()),
        r#"rates[44].bands[1].from: "25:00" is not HH:MM (00:00 to 23:59)"#
    );
    assert_eq!(
        validation_error(|t| t.rates[0].bands[2].to = "24:00".into()),
        r#"rates[44].bands[2].to: "24:00" is not HH:MM (00:00 to 23:59)"#
    );
    assert_eq!(
        validation_error(|t| t.rates[1].bands[0].to = "8:00".into()),
        r#"rates[].bands[0].to: "8:00" is not HH:MM (00:00 to 23:59)"#
    );
    assert_eq!(validation_error(|t| t.rates[0].increments.next = 0), "rates[44].increments.next: 0 must be at least 1");
    assert_eq!(validation_error(|t| t.rates[0].increments.first = 0), "rates[44].increments.first: 0 must be at least 1");
    assert_eq!(validation_error(|t| t.rates[0].bands.clear()), "rates[44].bands: must list at least one band");
    assert_eq!(
        validation_error(|t| t.rates[0].bands[0].price_per_minute = d("-0.01")),
        "rates[44].bands[0].price_per_minute: -0.01 must not be negative"
    );
    assert_eq!(validation_error(|t| t.rates[0].connect_fee = d("-1")), "rates[44].connect_fee: -1 must not be negative");
    assert_eq!(validation_error(|t| t.currency = "USX".into()), r#"currency: unknown currency "USX": not an active ISO 4217 code"#);
    assert_eq!(
        validation_error(|t| t.timezone_offset_minutes = 1500),
        "timezone_offset_minutes: 1500 is outside ±18:00 (-1080 to 1080 minutes)"
    );
    assert_eq!(
        validation_error(|t| t.timezone_offset_minutes = i32::MIN),
        "timezone_offset_minutes: -2147483648 is outside ±18:00 (-1080 to 1080 minutes)"
    );
    validation_error(|t| t.timezone_offset_minutes = 1081);
    let mut edge = uk();
    edge.timezone_offset_minutes = -1080;
    edge.validate().unwrap();
    assert_eq!(validation_error(|t| t.key = String::new()), r#"key: "" is not a valid key: use 1-128 letters, digits, '_' or '-'"#);
}

#[test]
fn rating_rechecks_the_matched_rate_of_an_unvalidated_table() {
    // increments 0 would divide by zero: the call fails with the validation error instead
    let mut t = uk();
    t.rates[0].increments.next = 0;
    assert_eq!(err(&t, "+44 20", MON_NOON, 61), "rates[44].increments.next: 0 must be at least 1");
    let mut t = uk();
    t.rates[0].bands[0].from = "noon".into();
    assert_eq!(err(&t, "+44 20", MON_NOON, 61), r#"rates[44].bands[0].from: "noon" is not HH:MM (00:00 to 23:59)"#);
    // duplicates are only found by validate(); rating uses the first of them
    let t = table(vec![rate("44", "first", any_time("0.05"), 60, 60), rate("44", "second", any_time("0.07"), 60, 60)]);
    assert_eq!(rated(&t, "+44 20", MON_NOON, 60).description, "first");
    let (ok, _) = rate_calls(&t, &[call("c", "+44 20", MON_NOON, 60)]);
    assert_eq!(ok[0].description, "first");
}

// ---- file format ----

const TABLE_JSON: &str = r#"{
  "key": "uk-retail", "currency": "GBP", "timezone_offset_minutes": 60,
  "rates": [
    { "prefix": "44", "description": "United Kingdom", "increments": { "first": 60, "next": 60 }, "connect_fee": "0.05",
      "bands": [
        { "name": "peak", "days": ["mon", "tue", "wed", "thu", "fri"], "from": "08:00", "to": "18:00", "price_per_minute": "0.05" },
        { "name": "off-peak", "days": ["mon", "tue", "wed", "thu", "fri"], "from": "18:00", "to": "08:00", "price_per_minute": "0.02" },
        { "name": "weekend", "days": ["sat", "sun"], "from": "00:00", "to": "00:00", "price_per_minute": "0.01" } ] },
    { "prefix": "447", "description": "UK mobile", "increments": { "first": 30, "next": 6 }, "min_duration_secs": 10,
      "bands": [ { "name": "any time", "from": "00:00", "to": "00:00", "price_per_minute": 1 } ] }
  ] }"#;

#[test]
fn tables_and_records_read_from_json() {
    let t: RateTable = serde_json::from_str(TABLE_JSON).unwrap();
    t.validate().unwrap();
    assert_eq!((t.rates[1].connect_fee, t.rates[0].min_duration_secs, t.rates[1].bands[0].days.len()), (d("0"), 0, 0));
    let c: CallRecord = serde_json::from_str(
        r#"{"id": "cdr-1", "destination": "+44 7700 900123", "start": "2026-03-02T11:00:00+01:00", "duration_secs": 5}"#,
    )
    .unwrap();
    let r = rate_call(&t, &c).unwrap();
    // 5 s → minimum 10 → first block 30 s; 30 × 1 / 60 = 0.5
    assert_eq!((r.matched_prefix.as_str(), r.band.as_str(), r.billed_secs, r.amount), ("447", "any time", 30, d("0.5")));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["amount"], "0.5");
    assert_eq!(json["currency"], "GBP");
    assert_eq!(serde_json::from_value::<RatedCall>(json).unwrap(), r);
    let back: RateTable = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
    assert_eq!(back, t);
}

#[test]
fn json_floats_unknown_fields_and_unknown_days_are_refused() {
    let float = TABLE_JSON.replace(r#""price_per_minute": "0.05""#, r#""price_per_minute": 0.05"#);
    let e = serde_json::from_str::<RateTable>(&float).unwrap_err().to_string();
    assert!(e.contains("binary float"), "{e}");
    let unknown = TABLE_JSON.replace(r#""min_duration_secs": 10"#, r#""min_duration": 10"#);
    let e = serde_json::from_str::<RateTable>(&unknown).unwrap_err().to_string();
    assert!(e.contains("min_duration"), "{e}");
    let day = TABLE_JSON.replace(r#"["sat", "sun"]"#, r#"["saturday"]"#);
    let e = serde_json::from_str::<RateTable>(&day).unwrap_err().to_string();
    assert!(e.contains("saturday"), "{e}");
}

// ---- properties ----

/// A one-rate table with any increments, minimum, connect fee and per-minute price.
fn any_rate_table() -> impl Strategy<Value = RateTable> {
    (1u32..=120, 1u32..=60, 0u32..=300, 0i64..=100_000, 0i64..=5_000_000).prop_map(|(first, next, min, fee, price)| {
        let mut r = rate("", "any", vec![band("b", &[], "00:00", "00:00", "0")], first, next);
        r.bands[0].price_per_minute = Decimal::new(price, 6);
        r.connect_fee = Decimal::new(fee, 4);
        r.min_duration_secs = min;
        table(vec![r])
    })
}

proptest! {
    /// Lines keep every second and fee (exact sums), compute one division each, and differ from
    /// the sum of the per-call amounts only by what `Decimal` cut off those per-call quotients.
    #[test]
    fn lines_sum_calls_exactly(t in any_rate_table(), durations in prop::collection::vec(0u64..=10_000, 0..40)) {
        let calls: Vec<CallRecord> =
            durations.iter().enumerate().map(|(i, s)| call(&i.to_string(), "+1", MON_NOON, *s)).collect();
        let (rated_calls, failed) = rate_calls(&t, &calls);
        prop_assert!(failed.is_empty());
        let lines = sum_calls(&rated_calls).unwrap();
        prop_assert!(lines.len() <= 1);
        let billed: u64 = rated_calls.iter().map(|c| c.billed_secs).sum();
        let fees: Decimal = rated_calls.iter().map(|c| c.connect_fee).sum();
        let (line_billed, line_fees, line_amount) =
            lines.first().map_or((0, Decimal::ZERO, Decimal::ZERO), |l| (l.billed_secs, l.connect_fees, l.amount));
        prop_assert_eq!((line_billed, line_fees), (billed, fees));
        let price = t.rates[0].bands[0].price_per_minute;
        prop_assert_eq!(line_amount, fees + Decimal::from(billed) * price / Decimal::from(60));
        let per_call = total(&rated_calls).unwrap();
        prop_assert!((line_amount - per_call).abs() < Decimal::new(1, 20), "{} vs {}", line_amount, per_call);
    }

    #[test]
    fn billed_seconds_cover_the_call_by_less_than_one_increment(t in any_rate_table(), secs in 1u64..=1_000_000) {
        let r = &t.rates[0];
        let out = rated(&t, "+1", MON_NOON, secs);
        let charged = secs.max(u64::from(r.min_duration_secs));
        let (first, next) = (u64::from(r.increments.first), u64::from(r.increments.next));
        prop_assert!(out.billed_secs >= secs);
        prop_assert!(out.billed_secs >= charged);
        if charged > first {
            prop_assert!(out.billed_secs - charged < next);
            prop_assert_eq!((out.billed_secs - first) % next, 0);
        } else {
            prop_assert_eq!(out.billed_secs, first);
        }
        prop_assert_eq!(out.amount, r.connect_fee + Decimal::from(out.billed_secs) * r.bands[0].price_per_minute / Decimal::from(60));
    }

    #[test]
    fn the_amount_is_monotonic_in_duration(t in any_rate_table(), a in 0u64..=100_000, b in 0u64..=100_000) {
        let (short, long) = (a.min(b), a.max(b));
        prop_assert!(rated(&t, "+1", MON_NOON, short).amount <= rated(&t, "+1", MON_NOON, long).amount);
    }

    #[test]
    fn batch_and_single_rating_pick_the_longest_prefix(
        prefixes in prop::collection::vec("[0-3]{0,4}", 1..12),
        destinations in prop::collection::vec("[0-3]{1,8}", 1..20),
    ) {
        let rates: Vec<Rate> = prefixes.iter().enumerate().map(|(i, p)| rate(p, &i.to_string(), any_time("1"), 60, 60)).collect();
        let t = table(rates);
        let calls: Vec<_> = destinations.iter().enumerate().map(|(i, dest)| call(&i.to_string(), dest, MON_NOON, 60)).collect();
        let (ok, failed) = rate_calls(&t, &calls);
        prop_assert_eq!(ok.len() + failed.len(), calls.len());
        let mut ok = ok.into_iter();
        for (c, dest) in calls.iter().zip(&destinations) {
            // brute force: the first of the longest prefixes of dest
            let longest = prefixes.iter().enumerate().filter(|(_, p)| dest.starts_with(p.as_str())).max_by_key(|(i, p)| (p.len(), std::cmp::Reverse(*i)));
            let single = rate_call(&t, c);
            match longest {
                Some((i, p)) => {
                    let batch = ok.next().unwrap();
                    let single = single.unwrap();
                    prop_assert_eq!((&batch.matched_prefix, &batch.description), (p, &i.to_string()));
                    prop_assert_eq!(batch, single);
                }
                None => prop_assert!(matches!(single, Err(TelecomError::NoRate { .. })), "{:?}", single),
            }
        }
    }
}
