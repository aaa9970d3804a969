//! Invoice documents: HTML from a template, PDF from the same HTML, CSV exports.
//!
//! # Layout
//! - [`locale`]: labels, numbers, money, dates for en, de, fr, es, ja (CLDR conventions).
//! - [`branding`]: `[branding]` (issuer, logo, colours, footer) and `[render]` settings.
//! - [`view`]: the stored invoice → a view model with every value formatted.
//! - [`html`]: the minijinja template, auto-escaped.
//! - [`pdf`]: headless Chromium prints the HTML to PDF.
//! - [`csv`]: RFC 4180 exports of invoices and lines.
//! - [`load`]: one invoice and its lines read back from ClickHouse.
//!
//! See docs/INVOICES.md.

pub mod branding;
pub mod csv;
pub mod html;
pub mod load;
pub mod locale;
pub mod pdf;
pub mod view;

use std::time::Duration;

pub use branding::{Branding, RenderConfig};
pub use locale::{Lang, Locale};
pub use view::{InvoiceData, InvoiceView};

use crate::error::Result;

/// The HTML document of an invoice in `locale`.
pub fn invoice_html(data: &InvoiceData, locale: &Locale, branding: &Branding, cfg: &RenderConfig) -> Result<String> {
    let view = InvoiceView::build(data, locale, branding)?;
    let template = cfg.template_text()?;
    html::render_html(&view, template.as_deref())
}

/// The PDF of an HTML document, printed by the configured Chromium.
pub fn html_to_pdf(html: &str, cfg: &RenderConfig) -> Result<Vec<u8>> {
    pdf::Chromium::locate(&cfg.chromium, Duration::from_secs(cfg.pdf_timeout_secs))?.html_to_pdf(html)
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use meterline_schemas::invoice::{InvoiceLineRow, InvoiceRow, InvoiceStatus, LineKind};

    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    const OCT_1: u32 = 1_790_812_800; // 2026-10-01T00:00:00Z
    const NOV_1: u32 = 1_793_491_200; // 2026-11-01T00:00:00Z
    const DEC_4: u32 = 1_796_342_400; // 2026-12-04T00:00:00Z

    fn line(no: u32, kind: LineKind, description: &str, quantity: &str, amount: &str, breakdown: serde_json::Value) -> InvoiceLineRow {
        InvoiceLineRow {
            invoice_id: uuid::Uuid::nil(),
            line_no: no,
            kind: kind as i8,
            customer: "cust-1".into(),
            period: "2026-10".into(),
            period_start: OCT_1,
            currency: String::new(),
            description: description.into(),
            meter: String::new(),
            quantity: d(quantity),
            event_count: 0,
            price_model: String::new(),
            plan: "growth".into(),
            plan_version: 2,
            amount: d(amount),
            amount_unrounded: amount.into(),
            rounding_mode: "half_even".into(),
            breakdown: breakdown.to_string(),
            segments: vec![],
            version: 1,
        }
    }

    #[test]
    fn documents_show_the_number_once_finalized_and_the_id_while_draft() {
        let mut data = fixture("EUR", "Kunde", "de-DE");
        assert_eq!(data.number(), "INV-2026-000001");
        data.invoice.number = String::new();
        assert_eq!(data.number(), "01234567-89ab-cdef-0123-456789abcdef");
    }

    /// A fixed invoice: fee 1000, graduated usage 234.56, tax 19% = 44.5664 → 44.57, total 1279.13.
    fn fixture(currency: &str, customer_name: &str, locale: &str) -> InvoiceData {
        let id = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let tiers = serde_json::json!({ "tiers": [
            { "tier": 1, "from": "0", "up_to": "100000", "quantity": "100000", "unit_price": "0.002", "flat_fee": "0", "amount": "200" },
            { "tier": 2, "from": "100000", "up_to": null, "quantity": "34560", "unit_price": "0.001", "flat_fee": "0", "amount": "34.56" },
        ]});
        let mut lines = vec![
            line(1, LineKind::Recurring, "Growth plan fee", "1", "1000", serde_json::json!({ "fee": "1000" })),
            line(2, LineKind::Usage, "API calls, \"premium\" <tier>", "134560", "234.56", tiers),
            line(3, LineKind::Tax, "USt 19%", "1234.56", "44.57", serde_json::json!({ "rate": "0.19" })),
        ];
        let (subtotal, tax, total) = if currency == "JPY" {
            // JPY has no minor units: amounts are whole yen.
            lines[0].amount = d("1000");
            lines[1].amount = d("235");
            lines[2].amount = d("235");
            (d("1235"), d("235"), d("1470"))
        } else {
            (d("1234.56"), d("44.57"), d("1279.13"))
        };
        for l in &mut lines {
            l.invoice_id = id;
            l.currency = currency.into();
        }
        InvoiceData {
            invoice: InvoiceRow {
                invoice_id: id,
                subscription_id: "sub-1".into(),
                customer: "cust-1".into(),
                period: "2026-10".into(),
                period_start: OCT_1,
                period_end: NOV_1,
                currency: currency.into(),
                plan: "growth".into(),
                plan_version: 2,
                subtotal,
                tax,
                total,
                line_count: 3,
                status: InvoiceStatus::Finalized as i8,
                number: "INV-2026-000001".into(),
                status_at: NOV_1,
                lines_version: 1,
                revision: 0,
                content_hash: 0,
                issued_at: NOV_1,
                // Finalized on 2026-11-04 (after the grace window), net 30.
                due_at: DEC_4,
                version: 1,
                reporting_currency: String::new(),
                subtotal_base: Default::default(),
                tax_base: Default::default(),
                total_base: Default::default(),
                fx_rate: Default::default(),
                fx_date: 0,
            },
            lines,
            customer_name: customer_name.into(),
            locale: locale.into(),
        }
    }

    fn html(data: &InvoiceData) -> String {
        let locale = Locale::resolve(&data.locale);
        invoice_html(data, &locale, &Branding::default(), &RenderConfig::default()).unwrap()
    }

    #[test]
    fn rendered_totals_in_each_locale() {
        let cases = [
            ("en-US", "USD", ["$1,234.56", "$44.57", "$1,279.13"], "Invoice", "November 1, 2026"),
            ("de-DE", "EUR", ["1.234,56\u{a0}€", "44,57\u{a0}€", "1.279,13\u{a0}€"], "Rechnung", "1. November 2026"),
            ("fr-FR", "EUR", ["1\u{202f}234,56\u{a0}€", "44,57\u{a0}€", "1\u{202f}279,13\u{a0}€"], "Facture", "1 novembre 2026"),
            ("es-ES", "EUR", ["1234,56\u{a0}€", "44,57\u{a0}€", "1279,13\u{a0}€"], "Factura", "1 de noviembre de 2026"),
            ("ja-JP", "JPY", ["￥1,235", "￥235", "￥1,470"], "請求書", "2026年11月1日"),
        ];
        for (locale, currency, [subtotal, tax, total], title, issued) in cases {
            let h = html(&fixture(currency, "Acme GmbH", locale));
            for expected in [subtotal, tax, total, title, issued] {
                assert!(h.contains(expected), "{locale}: {expected:?} missing from\n{h}");
            }
            assert!(h.contains(&format!("<html lang=\"{}\">", &locale[..2])), "{locale}");
        }
        // Due date: the stored due_at (finalized 2026-11-04, net 30), not issue date + terms; the
        // period's last day is the day before period_end.
        let h = html(&fixture("USD", "Acme", "en-US"));
        assert!(h.contains("Due date</td><td>December 4, 2026"), "due date: {h}");
        assert!(!h.contains("December 1, 2026"), "{h}");
        let mut none = fixture("USD", "Acme", "en-US");
        none.invoice.due_at = 0;
        assert!(!html(&none).contains("Due date"), "no stored due date, none printed");
        let de = html(&fixture("EUR", "Acme GmbH", "de-DE"));
        assert!(de.contains("Fällig am</td><td>4. Dezember 2026"), "{de}");
        assert!(h.contains("October 1, 2026 – October 31, 2026"), "period");
        // Tier rows of the graduated line, with exact unit prices.
        assert!(h.contains("Tier 2: &gt; 100,000") && h.contains("$0.001") && h.contains("$34.56"), "{h}");
        // The fee line shows its unit price.
        assert!(h.contains("$1,000.00"), "{h}");
    }

    #[test]
    fn user_data_is_escaped() {
        let h = html(&fixture("USD", "<script>alert('x')</script> & Co", "en-US"));
        assert!(!h.contains("<script>"), "{h}");
        assert!(h.contains("&lt;script&gt;alert(&#x27;x&#x27;)&lt;&#x2f;script&gt; &amp; Co"), "{h}");
        assert!(h.contains("API calls, &quot;premium&quot; &lt;tier&gt;"), "{h}");
    }

    #[test]
    fn custom_templates_and_their_errors() {
        let data = fixture("USD", "Acme", "en-US");
        let view = InvoiceView::build(&data, &Locale::of(Lang::En), &Branding::default()).unwrap();
        assert_eq!(html::render_html(&view, Some("{{ number }}: {{ total }}")).unwrap(), "INV-2026-000001: $1,279.13");
        let err = html::render_html(&view, Some("{{ no_such_field }}")).unwrap_err().to_string();
        assert!(err.contains("undefined"), "{err}");
    }

    #[test]
    fn csv_quotes_per_rfc_4180() {
        let data = fixture("USD", "Acme", "en-US");
        let csv = csv::lines_csv(&data.lines);
        let mut rows = csv.split("\r\n");
        assert_eq!(rows.next().unwrap(), csv::LINE_COLUMNS.join(","));
        let usage = rows.nth(1).unwrap();
        assert!(usage.contains(",\"API calls, \"\"premium\"\" <tier>\","), "{usage}");
        assert!(usage.contains(",234.56,"), "exact amount with minor units: {usage}");
        assert!(csv.ends_with("\r\n"));
        assert_eq!(csv::field("a\nb"), "\"a\nb\"");
        assert_eq!(csv::field("plain"), "plain");
        let inv = csv::invoices_csv(std::slice::from_ref(&data.invoice));
        let row = inv.split("\r\n").nth(1).unwrap();
        assert!(row.starts_with("01234567-89ab-cdef-0123-456789abcdef,INV-2026-000001,"), "the number once finalized: {row}");
        assert!(row.contains(",finalized,"), "{row}");
        assert!(row.ends_with(",USD,growth,2,1234.56,44.57,1279.13,3,2026-12-04T00:00:00Z"), "{row}");
        assert!(row.contains(",2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,"), "{row}");
        let jpy = csv::invoices_csv(std::slice::from_ref(&fixture("JPY", "Acme", "ja").invoice));
        assert!(jpy.contains(",1235,235,1470,"), "{jpy}");
    }

    /// Needs Chromium (Debian package `chromium`); fails, never skips, when it is missing.
    #[test]
    fn pdf_from_the_same_html() {
        let data = fixture("EUR", "Acme GmbH", "de-DE");
        let h = html(&data);
        let pdf = html_to_pdf(&h, &RenderConfig::default()).unwrap_or_else(|e| panic!("{e}"));
        assert!(pdf.starts_with(b"%PDF-"));
        assert_eq!(pdf::page_count(&pdf), 1);
        // Chromium writes the <title> into the document info, uncompressed: `/Title (…)` for
        // ASCII text, UTF-16BE hex otherwise.
        let title = format!("/Title (Rechnung {})", data.number());
        assert!(String::from_utf8_lossy(&pdf).contains(&title), "the PDF's title holds the invoice number");
    }
}
