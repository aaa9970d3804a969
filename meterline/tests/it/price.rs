//! `meterline price` prices with the invoice code and shows the tiers.

use std::process::Command;

fn price(args: &[&str]) -> (bool, String, String) {
    let catalog = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/examples/catalog.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_meterline")).args(["price", "--catalog", catalog]).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn graduated_preview_shows_each_tier() {
    // starter@1 llm_tokens: (0, 1M] free; (1M, 10M] at 0.000002; above at 0.0000015 + 5 flat.
    // 12,000,000.5 tokens: 0 + 9,000,000 × 0.000002 = 18 + 2,000,000.5 × 0.0000015 + 5 = 8.00000075
    // → 26.00000075 → 26.00 USD.
    let (ok, out, err) = price(&["--plan", "starter", "--meter", "llm_tokens", "--quantity", "12000000.5", "--format", "json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["amount"], "26.00");
    assert_eq!(v["amount_unrounded"], "26.00000075");
    assert_eq!(v["tiers"][1]["amount"], "18");
    assert_eq!(v["tiers"][2]["quantity"], "2000000.5");
    assert_eq!(v["tiers"][2]["amount"], "8.00000075");
}

#[test]
fn three_minor_units_and_bad_arguments() {
    // gulf-kwd@1 api_calls 125 × 0.0001 = 0.0125 KWD → half-even at 3 decimals → 0.012.
    let (ok, out, _) = price(&["--plan", "gulf-kwd@1", "--meter", "api_calls", "--quantity", "125"]);
    assert!(ok);
    assert!(out.contains("amount 0.012 KWD (exact 0.0125, rounded half_even to 3 decimals)"), "{out}");
    let (ok, _, err) = price(&["--plan", "starter@3", "--meter", "api_calls", "--quantity", "1"]);
    assert!(
        !ok && err.contains("--plan \"starter@3\" is not in the catalog; known: enterprise-jpy@1, gulf-kwd@1, scale@1, starter@1"),
        "{err}"
    );
    let (ok, _, err) = price(&["--plan", "starter", "--meter", "api_calls", "--quantity", "ten"]);
    assert!(!ok && err.contains("--quantity \"ten\" is not a decimal number"), "{err}");
    let (ok, _, err) = price(&["--plan", "starter", "--meter", "peak_connections", "--quantity", "1"]);
    assert!(!ok && err.contains("has no price for meter \"peak_connections\""), "{err}");
}

#[test]
fn modifiers_and_matrix_match_the_invoice_code() {
    // scale@1 api_calls: 50,000 free, then blocks of 10,000 at 3.00, a started block charged.
    // 123,456 calls → 73,456 billable → 7.3456 → 8 packages → 24.00.
    let (ok, out, err) = price(&["--plan", "scale", "--meter", "api_calls", "--quantity", "123456", "--format", "json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["amount"].as_str(), v["free_units"].as_str(), v["tiers"][0]["packages"].as_str()),
        (Some("24.00"), Some("50000"), Some("8"))
    );
    // scale@1 llm_tokens matrix: model=large at 0.000006 → 1,000,000 × 0.000006 = 6.00.
    let (ok, out, err) =
        price(&["--plan", "scale", "--meter", "llm_tokens", "--quantity", "1000000", "--group", "model=large", "--format", "json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["amount"], "6.00");
    let (ok, _, err) = price(&["--plan", "scale", "--meter", "llm_tokens", "--quantity", "10"]);
    assert!(!ok && err.contains("give its group-by values with --group"), "{err}");
    // storage capped at 250: 5,000,000 GB-hours × 0.0001 = 500 → 250.00.
    let (ok, out, _) = price(&["--plan", "scale", "--meter", "storage_gb_hours", "--quantity", "5000000"]);
    assert!(ok && out.contains("capped: 500") && out.contains("amount 250.00 USD"), "{out}");
}

fn call(id: &str, destination: &str, time: &str, extra: &str) -> String {
    format!(
        r#"{{"specversion":"1.0","id":"{id}","source":"switch-1","type":"call.completed","subject":"dialtone","time":"{time}","data":{{"destination":"{destination}"{extra}}}}}"#
    )
}

#[test]
fn telecom_event_preview_shows_prefix_band_and_increments() {
    // voice@1 (rate table uk-voice). +44 20 7946 0000 on Monday 2026-10-05 at 17:59:59 (peak, the
    // band of the answer time), 61 s in 60/60 → 120 s × 0.05 / 60 = 0.10 + connect fee 0.05 = 0.15.
    let event = call("c1", "+44 20 7946 0000", "2026-10-05T17:59:59Z", r#","duration_secs":61"#);
    let (ok, out, err) = price(&["--plan", "voice", "--event", &event, "--format", "json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["matched_prefix"].as_str(), v["band"].as_str(), v["billed_secs"].as_u64(), v["connect_fee"].as_str()),
        (Some("44"), Some("peak"), Some(120), Some("0.05"))
    );
    assert_eq!((v["increments"]["first"].as_u64(), v["increments"]["next"].as_u64()), (Some(60), Some(60)));
    assert_eq!(
        (v["usage_amount"].as_str(), v["amount_unrounded"].as_str(), v["amount"].as_str()),
        (Some("0.1"), Some("0.15"), Some("0.15"))
    );

    // The same call answered at 18:00:00 (answered_at, the event time stays 17:59:59) is off-peak:
    // 120 s × 0.02 / 60 = 0.04 + 0.05 = 0.09.
    let event = call("c2", "+44 20 7946 0000", "2026-10-05T17:59:59Z", r#","duration_secs":61,"answered_at":"2026-10-05T18:00:00Z""#);
    let (ok, out, err) = price(&["--plan", "voice", "--event", &event, "--format", "json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["band"].as_str(), v["amount"].as_str()), (Some("off-peak"), Some("0.09")));

    // +44 7700 900123: "447" beats "44"; 30/6 with a 10 s minimum: 37 s → 30 + ⌈7/6⌉ × 6 = 42 s;
    // 42 × 0.12 / 60 = 0.084 → 0.08 (half_even), no connect fee.
    let event = call("c3", "+44 7700 900123", "2026-10-05T12:00:00Z", r#","duration_secs":37"#);
    let (ok, out, err) = price(&["--plan", "voice", "--event", &event]);
    assert!(ok, "{err}");
    assert!(out.contains("UK mobile") && out.contains("30/6, minimum 10 s") && out.contains("42 x 0.12 / 60 = 0.084"), "{out}");
    assert!(out.contains("amount 0.08 USD (exact 0.084, rounded half_even to 2 decimals)"), "{out}");

    // Bad records are refused with the field named.
    let event = call("c4", "+44 20", "2026-10-05T12:00:00Z", r#","duration_secs":1.5"#);
    let (ok, _, err) = price(&["--plan", "voice", "--event", &event]);
    assert!(!ok && err.contains("data.duration_secs: 1.5 is not a whole number of seconds"), "{err}");
    let (ok, _, err) = price(&["--plan", "starter", "--event", &call("c5", "+44 20", "2026-10-05T12:00:00Z", r#","duration_secs":1"#)]);
    assert!(!ok && err.contains("plan starter@1 has no telecom price"), "{err}");
    let (ok, _, err) = price(&["--plan", "voice", "--meter", "calls", "--quantity", "5"]);
    assert!(!ok && err.contains("rate one call record with --event"), "{err}");
}
