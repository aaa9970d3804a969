//! `meterline invoices list|pay|void|mark-uncollectible|credit-note|history|render|export`.

use std::path::{Path, PathBuf};

use comfy_table::{CellAlignment, Table};
use rust_decimal::Decimal;

use meterline_invoicer::writer::{list_invoices, list_lines};
use meterline_schemas::invoice::InvoiceRow;
use meterline_schemas::money::Currency;
use meterline_schemas::period::PeriodLabel;

use anyhow::Context as _;
use meterline_invoicer::credit_notes::{self, Credit};
use meterline_invoicer::lifecycle;
use meterline_invoicer::render::{self, InvoiceData, Locale};
use meterline_schemas::catalog::Catalog;
use meterline_schemas::invoice::InvoiceStatus;

use crate::cli::{CreditNoteArgs, DocFormat, ExportFormat, Format, InvoicesCommand, TransitionArgs};
use crate::config::Config;
use crate::connect;

pub async fn run(cfg: &Config, cmd: InvoicesCommand) -> anyhow::Result<()> {
    match cmd {
        InvoicesCommand::List { period, format, lines } => list(cfg, period, format, lines).await,
        InvoicesCommand::Render { id, format, out, locale } => render_one(cfg, &id, format, out, locale).await,
        InvoicesCommand::Export { period, format, lines, out } => export(cfg, &period, format, lines, out).await,
        InvoicesCommand::Pay(a) => transition(cfg, a, InvoiceStatus::Paid).await,
        InvoicesCommand::Void(a) => transition(cfg, a, InvoiceStatus::Void).await,
        InvoicesCommand::MarkUncollectible(a) => transition(cfg, a, InvoiceStatus::Uncollectible).await,
        InvoicesCommand::CreditNote(a) => credit_note(cfg, a).await,
        InvoicesCommand::History { id } => history(cfg, &id).await,
        InvoicesCommand::ReplayEvents { since } => replay_events(cfg, &since).await,
    }
}

async fn list(cfg: &Config, period: String, format: Format, lines: bool) -> anyhow::Result<()> {
    let label: PeriodLabel = period.parse()?;
    let ch = connect::clickhouse(cfg).await?;
    let invoices = list_invoices(&ch, &label.to_string()).await?;
    match format {
        Format::Json => {
            let all_lines = if lines { list_lines(&ch, &label.to_string()).await? } else { Vec::new() };
            let out: Vec<_> = invoices
                .iter()
                .map(|i| {
                    let mut v = invoice_json(i);
                    if lines {
                        let ls: Vec<_> = all_lines.iter().filter(|l| l.invoice_id == i.invoice_id).map(|l| line_json(l, i)).collect();
                        v["lines"] = serde_json::Value::Array(ls);
                    }
                    v
                })
                .collect();
            crate::output::emit(serde_json::to_string_pretty(&out)?)?;
        }
        Format::Table => {
            let mut t = Table::new();
            t.set_header([
                "number",
                "status",
                "customer",
                "subscription",
                "plan",
                "currency",
                "subtotal",
                "tax",
                "total",
                "lines",
                "invoice id",
            ]);
            for i in &invoices {
                let f = money(i);
                t.add_row(vec![
                    i.number.clone(),
                    status_name(i.status).to_owned(),
                    i.customer.clone(),
                    i.subscription_id.clone(),
                    format!("{}@{}", i.plan, i.plan_version),
                    i.currency.clone(),
                    f(i.subtotal),
                    f(i.tax),
                    f(i.total),
                    i.line_count.to_string(),
                    i.invoice_id.to_string(),
                ]);
            }
            for c in 6..=8 {
                if let Some(col) = t.column_mut(c) {
                    col.set_cell_alignment(CellAlignment::Right);
                }
            }
            crate::output::emit(format!("{t}"))?;
            crate::output::emit(format!("{} invoices for period {label}", invoices.len()))?;
        }
    }
    Ok(())
}

/// Formats amounts of an invoice with its currency's minor units.
pub fn money(i: &InvoiceRow) -> impl Fn(Decimal) -> String + use<> {
    let cur = Currency::from_code(&i.currency).ok();
    move |d| cur.map_or_else(|| d.to_string(), |c| c.format(d))
}

fn invoice_json(i: &InvoiceRow) -> serde_json::Value {
    let f = money(i);
    serde_json::json!({
        "invoice_id": i.invoice_id.to_string(),
        "subscription_id": i.subscription_id,
        "customer": i.customer,
        "period": i.period,
        "period_start": ts(i.period_start),
        "period_end": ts(i.period_end),
        "currency": i.currency,
        "plan": i.plan,
        "plan_version": i.plan_version,
        "subtotal": f(i.subtotal),
        "tax": f(i.tax),
        "total": f(i.total),
        "line_count": i.line_count,
        "number": i.number,
        "status": status_name(i.status),
        "status_at": ts(i.status_at),
        "revision": i.revision,
        "issued_at": ts(i.issued_at),
    })
}

fn line_json(l: &meterline_schemas::invoice::InvoiceLineRow, i: &InvoiceRow) -> serde_json::Value {
    let f = money(i);
    serde_json::json!({
        "line_no": l.line_no,
        "kind": meterline_schemas::invoice::LineKind::name_of(l.kind),
        "description": l.description,
        "meter": l.meter,
        "quantity": l.quantity.normalize().to_string(),
        "event_count": l.event_count,
        "price_model": l.price_model,
        "amount": f(l.amount),
        "amount_unrounded": l.amount_unrounded,
        "rounding_mode": l.rounding_mode,
        "breakdown": serde_json::from_str::<serde_json::Value>(&l.breakdown).unwrap_or(serde_json::Value::String(l.breakdown.clone())),
        "segments": l.segments,
    })
}

fn ts(secs: u32) -> String {
    chrono::DateTime::from_timestamp(i64::from(secs), 0).map(|t| t.to_rfc3339()).unwrap_or_default()
}

fn status_name(s: i8) -> &'static str {
    InvoiceStatus::from_i8(s).map_or("unknown", |s| s.name())
}

async fn transition(cfg: &Config, a: TransitionArgs, to: InvoiceStatus) -> anyhow::Result<()> {
    let (client, js) = connect::nats(cfg).await?;
    let billing = connect::billing(cfg, &js).await?;
    let row = lifecycle::transition(&billing, &a.id, to, &a.reason, chrono::Utc::now()).await?;
    client.flush().await?;
    crate::output::emit(format!("invoice {} is {} now", lifecycle::describe(&row), status_name(row.status)))?;
    Ok(())
}

async fn replay_events(cfg: &Config, since: &str) -> anyhow::Result<()> {
    let since = chrono::DateTime::parse_from_rfc3339(since)
        .map_err(|e| anyhow::anyhow!("--since {since:?}: expected an RFC 3339 time such as 2026-11-25T00:00:00Z ({e})"))?
        .with_timezone(&chrono::Utc);
    let (client, js) = connect::nats(cfg).await?;
    let billing = connect::billing(cfg, &js).await?;
    let r = lifecycle::replay_events(&billing, since).await?;
    client.flush().await?;
    crate::output::emit(format!(
        "published {} invoice events and {} credit note events recorded since {} (JetStream drops those it already has)",
        r.invoice_events,
        r.credit_notes,
        since.to_rfc3339()
    ))?;
    Ok(())
}

async fn credit_note(cfg: &Config, a: CreditNoteArgs) -> anyhow::Result<()> {
    let what = match (&a.amount, a.line.is_empty(), a.full) {
        (Some(x), _, _) => Credit::Amount(
            Decimal::from_str_exact(x).map_err(|e| anyhow::anyhow!("--amount {x:?}: expected an exact decimal such as 12.50 ({e})"))?,
        ),
        (None, false, _) => Credit::Lines(a.line.clone()),
        _ => Credit::Full,
    };
    let (client, js) = connect::nats(cfg).await?;
    let billing = connect::billing(cfg, &js).await?;
    let issued = credit_notes::issue(&billing, &a.id, what, &a.reason, chrono::Utc::now()).await?;
    client.flush().await?;
    let cur = Currency::from_code(&issued.note.currency)?;
    crate::output::emit(format!(
        "credit note {} on invoice {}: {} {}, {} {} left to credit",
        issued.note.number,
        issued.note.invoice_number,
        cur.format(issued.note.amount),
        issued.note.currency,
        cur.format(issued.remaining),
        issued.note.currency
    ))?;
    Ok(())
}

async fn history(cfg: &Config, id: &str) -> anyhow::Result<()> {
    let ch = connect::clickhouse(cfg).await?;
    let inv = lifecycle::find(&ch, id).await?;
    let mut t = Table::new();
    t.set_header(["at", "from", "to", "number", "actor", "reason"]);
    for e in lifecycle::history(&ch, inv.invoice_id).await? {
        let from = if e.from_status == 0 { "none" } else { status_name(e.from_status) };
        t.add_row(vec![ts(e.at), from.to_owned(), status_name(e.to_status).to_owned(), e.number, e.actor, e.reason]);
    }
    crate::output::emit(t)?;
    let f = money(&inv);
    for c in credit_notes::of_invoice(&ch, inv.invoice_id).await? {
        crate::output::emit(format!("credit note {} at {}: {} {} ({})", c.number, ts(c.issued_at), f(c.amount), c.currency, c.reason))?;
    }
    crate::output::emit(format!("invoice {} is {}", lifecycle::describe(&inv), status_name(inv.status)))?;
    Ok(())
}

/// Loads the catalog for customer names and locales; documents still render without it.
async fn catalog_or_empty(cfg: &Config) -> Catalog {
    let load = async {
        let (_client, js) = connect::nats(cfg).await?;
        anyhow::Ok(connect::catalog(cfg, &js).await?.load().await?)
    };
    match load.await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "catalog unavailable: documents show customer keys and the en-US locale");
            Catalog::default()
        }
    }
}

/// An invoice's document data, with the customer's name and locale from the catalog.
fn document_data(catalog: &Catalog, invoice: InvoiceRow, lines: Vec<meterline_schemas::invoice::InvoiceLineRow>) -> InvoiceData {
    let customer = catalog.customers.get(&invoice.customer);
    InvoiceData {
        customer_name: customer.map_or_else(|| invoice.customer.clone(), |c| c.name.clone()),
        locale: customer.map_or_else(|| "en-US".to_owned(), |c| c.locale.clone()),
        invoice,
        lines,
    }
}

/// Renders `data` to HTML, and to PDF when asked.
fn document(cfg: &Config, data: &InvoiceData, locale: Option<&str>, format: DocFormat) -> anyhow::Result<Vec<u8>> {
    let locale = Locale::resolve(locale.unwrap_or(&data.locale));
    if locale.fallback {
        tracing::warn!(locale = %locale.requested, "unsupported document locale; using English (supported: en, de, fr, es, ja)");
    }
    let html = render::invoice_html(data, &locale, &cfg.branding, &cfg.render)?;
    Ok(match format {
        DocFormat::Html => html.into_bytes(),
        DocFormat::Pdf => render::html_to_pdf(&html, &cfg.render)?,
    })
}

async fn render_one(cfg: &Config, id: &str, format: DocFormat, out: Option<PathBuf>, locale: Option<String>) -> anyhow::Result<()> {
    let uuid: uuid::Uuid = id.parse().with_context(|| format!("--id {id:?} is not an invoice id (a UUID, as `invoices list` shows)"))?;
    let ch = connect::clickhouse(cfg).await?;
    let (invoice, lines) = render::load::load_invoice(&ch, uuid).await?.ok_or_else(|| anyhow::anyhow!("no invoice with id {uuid}"))?;
    let catalog = catalog_or_empty(cfg).await;
    let data = document_data(&catalog, invoice, lines);
    let bytes = document(cfg, &data, locale.as_deref(), format)?;
    match (out, format) {
        (Some(path), _) => write_file(&path, &bytes)?,
        (None, DocFormat::Html) => crate::output::emit(String::from_utf8_lossy(&bytes).trim_end())?,
        (None, DocFormat::Pdf) => write_file(Path::new(&format!("invoice-{uuid}.pdf")), &bytes)?,
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("write {}", path.display()))?;
    eprintln!("wrote {} ({} bytes)", path.display(), bytes.len());
    Ok(())
}

async fn export(cfg: &Config, period: &str, format: ExportFormat, lines: bool, out: Option<PathBuf>) -> anyhow::Result<()> {
    let label: PeriodLabel = period.parse()?;
    let ch = connect::clickhouse(cfg).await?;
    let text = match (format, lines) {
        (ExportFormat::Csv, false) => render::csv::invoices_csv(&list_invoices(&ch, &label.to_string()).await?),
        (ExportFormat::Csv, true) => render::csv::lines_csv(&list_lines(&ch, &label.to_string()).await?),
    };
    match out {
        Some(path) => write_file(&path, text.as_bytes()),
        None => {
            use std::io::Write as _;
            let mut stdout = std::io::stdout().lock();
            match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(crate::output::StdoutClosed.into()),
                r => Ok(r?),
            }
        }
    }
}

/// Renders one invoice per customer locale of `period` as HTML and PDF into `dir` (the demo's
/// samples). PDF is skipped with a warning when Chromium is missing. Returns the files written.
pub async fn render_samples(cfg: &Config, period: &str, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let ch = connect::clickhouse(cfg).await?;
    let catalog = catalog_or_empty(cfg).await;
    let invoices = list_invoices(&ch, period).await?;
    let mut seen = std::collections::BTreeSet::new();
    let mut written = Vec::new();
    let mut pdf_ok = true;
    for inv in invoices {
        let locale = catalog.customers.get(&inv.customer).map_or_else(|| "en-US".to_owned(), |c| c.locale.clone());
        if !seen.insert(locale.clone()) {
            continue;
        }
        let Some((invoice, lines)) = render::load::load_invoice(&ch, inv.invoice_id).await? else { continue };
        let data = document_data(&catalog, invoice, lines);
        let stem = format!("invoice-{locale}-{}", data.invoice.customer);
        let (html_path, pdf_path) = (dir.join(format!("{stem}.html")), dir.join(format!("{stem}.pdf")));
        let html = document(cfg, &data, None, DocFormat::Html)?;
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        std::fs::write(&html_path, &html)?;
        written.push(html_path);
        if pdf_ok {
            match render::html_to_pdf(&String::from_utf8_lossy(&html), &cfg.render) {
                Ok(pdf) => {
                    std::fs::write(&pdf_path, pdf)?;
                    written.push(pdf_path);
                }
                Err(e) => {
                    eprintln!("    no PDFs: {e}");
                    pdf_ok = false;
                }
            }
        }
    }
    Ok(written)
}
