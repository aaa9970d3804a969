//! Golden tests for rating and invoicing: one case per file under `cases/`, each a catalog, a
//! period and usage events in; the invoices with every line and tier out, as text in a `.out`
//! file next to the case.
//!
//! The expected outputs are reviewed by hand (each case's comment shows the arithmetic). To
//! regenerate them after an intended change, run `METERLINE_BLESS=1 cargo test -p
//! meterline-invoicer --test golden` and review the diff line by line;
//! `METERLINE_GOLDEN_FILTER=<part of a file name>` runs only matching cases.
//!
//! A case closes one `period`, or several `periods` in order (coupon durations, fees in
//! advance, credit balances): each close sees the credit lines of the closes before it, as a
//! close sees the stored invoices of earlier periods.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;

use meterline_ingest::LedgerConfig;
use meterline_ingest::segment::{Ledger, build_segments};
use meterline_ingest::validate::Validator;
use meterline_invoicer::spend::{self, Refresher};
use meterline_invoicer::tax::usage_by_tax_period;
use meterline_invoicer::{CreditUsage, Settings, build_invoices_with_usage};
use meterline_schemas::catalog::{Catalog, CatalogFile};
use meterline_schemas::invoice::InvoiceLineRow;
use meterline_schemas::money::{Currency, RoundingMode};
use meterline_schemas::period::PeriodLabel;
use meterline_schemas::tax::TaxRounding;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// Period to close.
    #[serde(default)]
    period: Option<String>,
    /// Periods to close one after the other (instead of `period`).
    #[serde(default)]
    periods: Vec<String>,
    /// Rounding mode (default half_even).
    #[serde(default)]
    rounding: RoundingMode,
    /// Tax rounding (default per_invoice).
    #[serde(default)]
    tax_rounding: TaxRounding,
    /// The seller's country, for reverse charge (default none).
    #[serde(default)]
    seller_country: Option<String>,
    /// Reporting currency of the `*_base` columns (default none; shown when set).
    #[serde(default)]
    reporting_currency: Option<String>,
    /// The catalog.
    catalog: CatalogFile,
    /// Usage events; `source` defaults to `golden`.
    #[serde(default)]
    events: Vec<Event>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Event {
    id: String,
    #[serde(default = "default_source")]
    source: String,
    #[serde(rename = "type")]
    ty: String,
    subject: String,
    time: String,
    #[serde(default)]
    data: serde_json::Map<String, serde_json::Value>,
}

fn default_source() -> String {
    "golden".into()
}

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/cases");
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "yaml")).collect();
    if let Ok(filter) = std::env::var("METERLINE_GOLDEN_FILTER") {
        v.retain(|p| p.file_name().is_some_and(|n| n.to_string_lossy().contains(&filter)));
    }
    v.sort();
    v
}

/// A case's catalog, labels and its events as ingest accepts them.
fn load_case(path: &Path) -> (Case, Catalog, Vec<PeriodLabel>, Vec<meterline_ingest::validate::Accepted>) {
    let case: Case = serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let catalog = case.catalog.validate(&Catalog::default()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let labels: Vec<PeriodLabel> = case.period.iter().chain(&case.periods).map(|p| p.parse().unwrap()).collect();
    assert!(!labels.is_empty(), "{}: give period or periods", path.display());
    // Events go through ingest's own validation.
    let validator = Validator::new(catalog.meters_by_event_type());
    let (mut accepted, mut refused) = (Vec::new(), Vec::new());
    for e in &case.events {
        let json = serde_json::json!({
            "specversion": "1.0", "id": e.id, "source": e.source, "type": e.ty,
            "subject": e.subject, "time": e.time, "data": e.data,
        });
        validator.check(json.to_string().as_bytes(), &mut accepted, &mut refused);
    }
    assert!(
        refused.is_empty(),
        "{}: invalid events in the case: {:?}",
        path.display(),
        refused.iter().map(|r| r.error.to_string()).collect::<Vec<_>>()
    );
    (case, catalog, labels, accepted)
}

async fn run_case(path: &Path) -> String {
    let (case, catalog, labels, accepted) = load_case(path);
    // The events go through ingest's segment writer into a temporary ledger.
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&LedgerConfig { path: dir.path().to_path_buf() }).unwrap();
    let refs: Vec<_> = accepted.iter().collect();
    let ingested_at = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
    for seg in build_segments(0, &refs, 1, refs.len() as u64, ingested_at).unwrap() {
        ledger.write(&seg).await.unwrap();
    }

    let billing = Settings {
        rounding: case.rounding,
        tax_rounding: case.tax_rounding,
        seller_country: case.seller_country.clone(),
        reporting_currency: case.reporting_currency.as_deref().map(|c| Currency::from_code(c).unwrap()),
        provider: None,
        ..Settings::default()
    };
    let mut out = String::new();
    let mut credits = CreditUsage::none();
    for (i, label) in labels.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let rated = meterline_rater::rate_period(dir.path(), &catalog, *label).await.unwrap();
        let parts = usage_by_tax_period(dir.path(), &rated, &billing, billing.provider(&catalog).as_ref()).await.unwrap();
        let invoices = build_invoices_with_usage(&rated, &catalog, *label, &billing, &credits, &parts).unwrap();
        for inv in &invoices {
            credits.add_lines(&inv.lines).unwrap();
            assert_eq!(inv.row.content_hash, canonical_hash(inv), "content hash of {}", inv.row.subscription_id);
        }
        render_period(&mut out, *label, &billing, &invoices);
        render_calls(&mut out, &rated);
    }
    out
}

/// The documented content hash, computed the plain way: xxh3-64 of the JSON of (header without
/// its lifecycle and reporting-currency fields, lines with version 0), in one buffer. Stored
/// hashes must never change, or re-closing a finalized period would report conflicts.
fn canonical_hash(inv: &meterline_invoicer::Invoice) -> u64 {
    let mut r = inv.row.clone();
    (r.content_hash, r.status, r.number, r.status_at, r.due_at, r.lines_version, r.version) = (0, 0, String::new(), 0, 0, 0, 0);
    (r.reporting_currency, r.subtotal_base, r.tax_base, r.total_base, r.fx_rate, r.fx_date) =
        (String::new(), Decimal::ZERO, Decimal::ZERO, Decimal::ZERO, Decimal::ZERO, 0);
    let lines: Vec<_> = inv
        .lines
        .iter()
        .cloned()
        .map(|mut l| {
            l.version = 0;
            l
        })
        .collect();
    xxhash_rust::xxh3::xxh3_64(&serde_json::to_vec(&(r, lines)).unwrap())
}

/// Telecom prices: every rated call, as `rated_calls` stores it.
fn render_calls(out: &mut String, rated: &[meterline_rater::RatedSubscription]) {
    for r in rated {
        for t in r.usage.iter().filter_map(|u| u.telecom.as_ref()).filter(|t| !t.calls.is_empty()) {
            writeln!(out, "\nrated calls of {} (rate table {}):", r.subscription.id, t.rate_table).unwrap();
            for c in &t.calls {
                let k = &c.call;
                writeln!(
                    out,
                    "  {} to {:?} answered {}: prefix {:?} ({}) band {}, {} s -> {} s billed x {}/min = {} + connect {} = {}",
                    c.event_id,
                    c.destination,
                    c.answered_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    k.matched_prefix,
                    k.description,
                    k.band,
                    k.duration_secs,
                    k.billed_secs,
                    k.price_per_minute,
                    k.usage_amount,
                    k.connect_fee,
                    k.amount
                )
                .unwrap();
            }
        }
    }
}

fn render_period(out: &mut String, label: PeriodLabel, billing: &Settings, invoices: &[meterline_invoicer::Invoice]) {
    // Tax settings are shown only when they differ from the defaults, so older cases read as before.
    let mut settings = String::new();
    if billing.tax_rounding != TaxRounding::PerInvoice {
        write!(settings, ", tax rounding {}", billing.tax_rounding.as_str()).unwrap();
    }
    if let Some(c) = &billing.seller_country {
        write!(settings, ", seller in {c}").unwrap();
    }
    writeln!(out, "period {label}, rounding {}{settings}", billing.rounding.as_str()).unwrap();
    for inv in invoices {
        let r = &inv.row;
        let cur = Currency::from_code(&r.currency).unwrap();
        writeln!(
            out,
            "\ninvoice {} customer {} plan {}@{} {}: subtotal {} tax {} total {}",
            r.subscription_id,
            r.customer,
            r.plan,
            r.plan_version,
            r.currency,
            cur.format(r.subtotal),
            cur.format(r.tax),
            cur.format(r.total)
        )
        .unwrap();
        if !r.reporting_currency.is_empty() {
            let rc = Currency::from_code(&r.reporting_currency).unwrap();
            writeln!(
                out,
                "  in {}: subtotal {} tax {} total {} at {} of day {}",
                r.reporting_currency,
                rc.format(r.subtotal_base),
                rc.format(r.tax_base),
                rc.format(r.total_base),
                r.fx_rate.normalize(),
                chrono::NaiveDate::default() + chrono::Duration::days(i64::from(r.fx_date))
            )
            .unwrap();
        }
        for l in &inv.lines {
            render_line(out, l, cur);
        }
    }
}

fn render_line(out: &mut String, l: &InvoiceLineRow, cur: Currency) {
    let meter = if l.meter.is_empty() { String::new() } else { format!(" [{}]", l.meter) };
    writeln!(
        out,
        "  {}. {}{}: {} qty {} events {} = {} (exact {})",
        l.line_no,
        l.description,
        meter,
        l.price_model,
        l.quantity.normalize(),
        l.event_count,
        cur.format(l.amount),
        l.amount_unrounded
    )
    .unwrap();
    let b: serde_json::Value = serde_json::from_str(&l.breakdown).unwrap();
    if let Some(tiers) = b.get("tiers").and_then(|t| t.as_array()) {
        for t in tiers {
            let text = |k: &str| t[k].as_str().unwrap_or("?").to_owned();
            if let Some(n) = t.get("packages").and_then(|v| v.as_str()) {
                writeln!(out, "       {n} packages × {} = {} ({} units)", text("unit_price"), text("amount"), text("quantity")).unwrap();
                continue;
            }
            let group = t.get("group").and_then(|v| v.as_str()).map(|g| format!(" for group {g}")).unwrap_or_default();
            let range = format!("({}, {}", text("from"), t["up_to"].as_str().map_or_else(|| "∞)".to_string(), |u| format!("{u}]")));
            writeln!(
                out,
                "       tier {} {range}: {} × {} + {} = {}{group}",
                t["tier"],
                text("quantity"),
                text("unit_price"),
                text("flat_fee"),
                text("amount")
            )
            .unwrap();
        }
    }
    if let Some(p) = b.get("percentage") {
        writeln!(
            out,
            "       percentage: {} events on {} charged {} ({} raised to min_fee, {} lowered to max_fee)",
            p["events"],
            p["base"].as_str().unwrap_or("?"),
            p["charges"].as_str().unwrap_or("?"),
            p["at_min_fee"],
            p["at_max_fee"]
        )
        .unwrap();
    }
    if let Some(band) = b.get("band").and_then(|v| v.as_str()) {
        let text = |k: &str| b[k].as_str().unwrap_or("?").to_owned();
        writeln!(
            out,
            "       table {} prefix {:?} band {band}: {} calls ({} answered), {} s -> {} s billed x {}/min / 60 = {} + connect fees {}",
            text("rate_table"),
            text("matched_prefix"),
            b["calls"],
            b["answered"],
            b["duration_secs"],
            b["billed_secs"],
            text("price_per_minute"),
            text("usage_amount"),
            text("connect_fees")
        )
        .unwrap();
    }
    for key in ["free_units", "capped_from", "minimum_commitment", "shortfall"] {
        if let Some(v) = b.get(key) {
            writeln!(out, "       {key}: {}", v.as_str().unwrap_or("?")).unwrap();
        }
    }
    if let Some(p) = b.get("proration") {
        writeln!(out, "       prorated {} s of {} s", p["active_seconds"], p["period_seconds"]).unwrap();
    }
    if let Some(period) = b.get("service_period").and_then(|v| v.as_str()) {
        writeln!(out, "       {} for {period}", b["billing"].as_str().unwrap_or("?")).unwrap();
    }
    if let Some(segments) = b.get("segments").and_then(|v| v.as_array()) {
        let relative = b.get("relative_to_seats").and_then(|v| v.as_str()).map(|n| format!(" relative to {n}")).unwrap_or_default();
        for seg in segments {
            writeln!(
                out,
                "       {} seats{relative} × {} s from {} (period {} s)",
                seg["seats"].as_str().unwrap_or("?"),
                seg["seconds"],
                seg["from"].as_str().unwrap_or("?"),
                b["period_seconds"]
            )
            .unwrap();
        }
    }
    if let Some(t) = b.get("tax_period") {
        let text = |k: &str| t[k].as_str().unwrap_or("?").to_owned();
        writeln!(out, "       tax period share {} of {} by {}", text("share"), text("line_amount"), text("split_by")).unwrap();
    }
    if let Some(t) = b.get("tax_inclusive") {
        let text = |k: &str| t[k].as_str().unwrap_or("?").to_owned();
        match t.get("net") {
            Some(_) => writeln!(out, "       gross {} / (1 + {}) -> net {}", text("gross"), text("rate"), text("net")).unwrap(),
            None => writeln!(out, "       tax included in gross {}", text("gross")).unwrap(),
        }
    }
    if l.price_model == "tax" && b.get("rate").is_some() {
        let text = |k: &str| b[k].as_str().unwrap_or("?").to_owned();
        if b.get("treatment").is_some() || b["rounding"].as_str() == Some("per_line") {
            writeln!(
                out,
                "       rate {} on {} ({})",
                text("rate"),
                text("taxable"),
                b.get("treatment").or(b.get("rounding")).and_then(|v| v.as_str()).unwrap_or("?")
            )
            .unwrap();
        }
    }
    if let Some(code) = b.get("coupon").and_then(|v| v.as_str()) {
        let cycles = b["cycles"].as_u64().map_or_else(|| "∞".to_owned(), |n| n.to_string());
        writeln!(out, "       coupon {code} cycle {} of {cycles} on base {}", b["cycle"], b["base"].as_str().unwrap_or("?")).unwrap();
    }
    if let Some(grant) = b.get("grant").and_then(|v| v.as_str()) {
        let text = |k: &str| b[k].as_str().unwrap_or("?").to_owned();
        writeln!(
            out,
            "       grant {grant}: due {}, balance {} - applied {} = remaining {}",
            text("amount_due"),
            text("balance_before"),
            text("applied"),
            text("remaining")
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_cases() {
    let bless = std::env::var_os("METERLINE_BLESS").is_some();
    let mut failures = Vec::new();
    let cases = cases();
    assert!(!cases.is_empty(), "no golden cases found");
    for case in &cases {
        let got = run_case(case).await;
        let out = case.with_extension("out");
        if bless {
            std::fs::write(&out, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&out).unwrap_or_default();
        if got != want {
            failures.push(format!("--- {}\n+++ got\n{got}\n--- want\n{want}", out.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} golden cases differ (METERLINE_BLESS=1 regenerates; review the diff):\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Current spend refreshed incrementally equals current spend read from the whole ledger, for
/// every golden case (every price model, telecom calls, distinct counts, latest values): the
/// events are written as three batches of segments, and after each batch the long-lived
/// refresher reads only the new segments, and its rows equal a fresh read of everything. Then a
/// catalog change (a subscription removed) makes it read the period again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_spend_equals_a_full_read() {
    let key = |rows: Vec<meterline_schemas::invoice::SpendRow>| -> Vec<_> {
        rows.into_iter().map(|r| (r.subscription_id, r.period, r.currency, r.usage_amount, r.fees, r.subtotal, r.ledger_rows)).collect()
    };
    let now = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
    let (mut cases_with_usage, mut segments_read) = (0, 0);
    for path in cases() {
        let (case, catalog, labels, accepted) = load_case(&path);
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&LedgerConfig { path: dir.path().to_path_buf() }).unwrap();
        let refs: Vec<_> = accepted.iter().collect();
        let chunk = refs.len().div_ceil(3).max(1);
        let mut refreshers: Vec<Refresher> = labels.iter().map(|_| Refresher::default()).collect();
        for (k, part) in refs.chunks(chunk).enumerate() {
            let first = (k * chunk + 1) as u64;
            let written = build_segments(0, part, first, first + part.len() as u64 - 1, now).unwrap();
            for seg in &written {
                ledger.write(seg).await.unwrap();
            }
            for (label, refresher) in labels.iter().zip(&mut refreshers) {
                let got = refresher.compute(dir.path(), &catalog, Some(*label), now, case.rounding).await.unwrap();
                let want = spend::compute(dir.path(), &catalog, *label, case.rounding).await.unwrap();
                assert_eq!(key(got), key(want), "{} {label} after batch {k}", path.display());
                assert!(
                    refresher.last_read <= written.len(),
                    "{}: read {} segments, {} new",
                    path.display(),
                    refresher.last_read,
                    written.len()
                );
                segments_read += refresher.last_read;
            }
        }
        cases_with_usage += usize::from(!refs.is_empty());
        // Nothing new: nothing read, same rows.
        let label = labels[0];
        let again = refreshers[0].compute(dir.path(), &catalog, Some(label), now, case.rounding).await.unwrap();
        assert_eq!(refreshers[0].last_read, 0, "{}", path.display());
        if !refs.is_empty() {
            // (Without usage, this was the refresher's first refresh.)
            assert_eq!(refreshers[0].last_changed, 0, "{}: no new usage, no subscription priced again", path.display());
        }
        assert_eq!(key(again), key(spend::compute(dir.path(), &catalog, label, case.rounding).await.unwrap()));
        // A catalog without its first subscription: the period is read again under it.
        if let Some(first) = catalog.subscriptions.keys().next().cloned() {
            let mut fewer = catalog.clone();
            fewer.subscriptions.remove(&first);
            let got = refreshers[0].compute(dir.path(), &fewer, Some(label), now, case.rounding).await.unwrap();
            assert_eq!(refreshers[0].last_changed, got.len(), "{}: a new catalog prices every subscription", path.display());
            let want = spend::compute(dir.path(), &fewer, label, case.rounding).await.unwrap();
            assert_eq!(key(got), key(want), "{} without {first}", path.display());
        }
    }
    assert!(cases_with_usage >= 40 && segments_read >= 100, "{cases_with_usage} cases with usage, {segments_read} segments read");
}

/// The tax seam: a second [`meterline_invoicer::TaxProvider`] (standing in for an external tax
/// service) decides the treatment and rates, Meterline does the arithmetic. Case 121's catalog;
/// the provider taxes everyone at 10% except fr-b2b, which it reverse-charges with its own note.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_tax_provider_seam() {
    use meterline_invoicer::tax::{TaxDetermination, TaxPeriod, TaxRequest};
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct External {
        seen: Mutex<Vec<String>>,
    }
    impl meterline_invoicer::TaxProvider for External {
        fn name(&self) -> &str {
            "external-test"
        }
        fn determine(&self, req: &TaxRequest) -> meterline_invoicer::Result<TaxDetermination> {
            // The request is plain JSON for a service: docs/TAX.md shows this shape.
            self.seen.lock().unwrap().push(serde_json::to_string(req).unwrap());
            if req.customer == "fr-b2b" {
                return Ok(TaxDetermination::ReverseCharge { note: "External RC".into() });
            }
            Ok(TaxDetermination::Standard {
                periods: vec![TaxPeriod {
                    from: req.start,
                    until: req.end,
                    jurisdiction: "EXT".into(),
                    name: "External tax 10%".into(),
                    rate: "0.10".parse().unwrap(),
                }],
            })
        }
    }

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/cases/121_reverse_charge_eu_b2b.yaml");
    let case: Case = serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let catalog = case.catalog.validate(&Catalog::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let label: PeriodLabel = "2026-10".parse().unwrap();
    let rated = meterline_rater::rate_period(dir.path(), &catalog, label).await.unwrap();
    let external = Arc::new(External::default());
    let billing = Settings { seller_country: Some("DE".into()), provider: Some(external.clone()), ..Settings::default() };
    let invoices = meterline_invoicer::build_invoices(&rated, &catalog, label, billing, &CreditUsage::none()).unwrap();
    let summary: Vec<(String, String, String, String)> = invoices
        .iter()
        .map(|i| {
            let tax_line = i.lines.iter().find(|l| l.price_model == "tax").map(|l| l.description.clone()).unwrap_or_default();
            (i.row.customer.clone(), i.row.tax.to_string(), i.row.total.to_string(), tax_line)
        })
        .collect();
    let s = |a: &str, b: &str, c: &str, d: &str| (a.to_owned(), b.to_owned(), c.to_owned(), d.to_owned());
    assert_eq!(
        summary,
        vec![
            s("de-b2b", "10.00", "110.00", "External tax 10%"),
            s("fr-b2b", "0.00", "100.00", "External RC"),
            s("fr-b2c", "10.00", "110.00", "External tax 10%"),
        ]
    );
    let seen = external.seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert_eq!(
        seen[1],
        r#"{"customer":"fr-b2b","jurisdiction":"FR","country":"FR","vat_id":"FR12345678901","tax_exempt":false,"tax_exempt_reason":null,"seller_country":"DE","currency":"EUR","tax_inclusive":false,"start":"2026-10-01T00:00:00Z","end":"2026-11-01T00:00:00Z"}"#
    );
}
