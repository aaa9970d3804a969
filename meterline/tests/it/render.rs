//! `invoices render` and `invoices export` against real ClickHouse and the catalog in NATS:
//! documents in the customer's locale with the stored totals, a PDF through Chromium, CSV rows.

use meterline_invoicer::writer::{list_invoices, list_lines};

use crate::common::TestEnv;
use crate::scenario::{CATALOG, messages};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn render_and_export_closed_invoices() {
    let env = TestEnv::new("render").await;
    env.catalog(CATALOG).await;
    for m in messages() {
        env.publish(&m).await;
    }
    let (ok, stdout, stderr) = env.meterline(&["ingest", "--until-idle"], &[]);
    assert!(ok, "ingest: {stdout}\n{stderr}");
    let (ok, stdout, stderr) = env.meterline(&["close", "--period", "2026-10"], &[]);
    assert!(ok, "close: {stdout}\n{stderr}");
    let ch = env.clickhouse().await;
    let invoices = list_invoices(&ch, "2026-10").await.unwrap();
    let id = |customer: &str| invoices.iter().find(|i| i.customer == customer).unwrap().invoice_id.to_string();
    // What the document prints: the number once finalized (the period's deadline has passed).
    let number = |customer: &str| invoices.iter().find(|i| i.customer == customer).unwrap().number.clone();

    // bob: de-DE, EUR; totals of the scenario test (8.73 + 1.66 = 10.39).
    let (ok, html, stderr) = env.meterline(&["invoices", "render", "--id", &id("bob"), "--format", "html"], &[]);
    assert!(ok, "{stderr}");
    for expected in ["<html lang=\"de\">", "Rechnung", "Bob GmbH", "8,73\u{a0}€", "1,66\u{a0}€", "10,39\u{a0}€", "USt 19%"] {
        assert!(html.contains(expected), "{expected:?} missing:\n{html}");
    }
    // chiyo: ja-JP, JPY without minor units; --locale overrides the customer's locale.
    let (ok, html, _) = env.meterline(&["invoices", "render", "--id", &id("chiyo")], &[]);
    assert!(ok && html.contains("請求書") && html.contains("￥1,111") && html.contains("2026年11月1日"), "{html}");
    let (ok, html, _) = env.meterline(&["invoices", "render", "--id", &id("chiyo"), "--locale", "fr-FR"], &[]);
    assert!(ok && html.contains("Facture") && html.contains("1\u{202f}111\u{a0}JPY"), "{html}");

    // PDF (needs Chromium: Debian package `chromium`).
    let pdf = env.ledger_path().join("docs/bob.pdf");
    let (ok, _, stderr) =
        env.meterline(&["invoices", "render", "--id", &id("bob"), "--format", "pdf", "--out", pdf.to_str().unwrap()], &[]);
    assert!(ok, "{stderr}");
    let bytes = std::fs::read(&pdf).unwrap();
    assert!(bytes.starts_with(b"%PDF-"));
    assert!(String::from_utf8_lossy(&bytes).contains(&format!("/Title (Rechnung {})", number("bob"))));
    assert!(number("bob").starts_with("INV-2026-"), "{}", number("bob"));
    // Without Chromium the error names the binary.
    let (ok, _, stderr) = env.meterline(
        &["invoices", "render", "--id", &id("bob"), "--format", "pdf"],
        &[("METERLINE__RENDER__CHROMIUM", "/nonexistent/chromium")],
    );
    assert!(!ok && stderr.contains("\"/nonexistent/chromium\" was not found"), "{stderr}");
    let (ok, _, stderr) = env.meterline(&["invoices", "render", "--id", "00000000-0000-0000-0000-000000000000"], &[]);
    assert!(!ok && stderr.contains("no invoice with id 00000000-0000-0000-0000-000000000000"), "{stderr}");

    // CSV: a header and one CRLF-terminated row per invoice / line, exact amounts.
    let (ok, csv, stderr) = env.meterline(&["invoices", "export", "--period", "2026-10", "--format", "csv"], &[]);
    assert!(ok, "{stderr}");
    assert_eq!(csv.matches("\r\n").count(), 1 + invoices.len());
    assert!(csv.contains(",EUR,") && csv.contains(",8.73,1.66,10.39,") && csv.contains(",1010,101,1111,"), "{csv}");
    let (ok, csv, _) = env.meterline(&["invoices", "export", "--period", "2026-10", "--format", "csv", "--lines"], &[]);
    assert!(ok);
    assert_eq!(csv.matches("\r\n").count(), 1 + list_lines(&ch, "2026-10").await.unwrap().len());
    env.cleanup().await;
}
