//! `meterline invoices list|pay|void|mark-uncollectible|credit-note|history`.

use comfy_table::{CellAlignment, Table};
use rust_decimal::Decimal;

use meterline_invoicer::writer::{list_invoices, list_lines};
use meterline_schemas::invoice::InvoiceRow;
use meterline_schemas::money::Currency;
use meterline_schemas::period::PeriodLabel;

use meterline_invoicer::credit_notes::{self, Credit};
use meterline_invoicer::lifecycle;
use meterline_schemas::invoice::InvoiceStatus;

use crate::cli::{CreditNoteArgs, Format, InvoicesCommand, TransitionArgs};
use crate::config::Config;
use crate::connect;

pub async fn run(cfg: &Config, cmd: InvoicesCommand) -> anyhow::Result<()> {
    let (period, format, lines) = match cmd {
        InvoicesCommand::List { period, format, lines } => (period, format, lines),
        InvoicesCommand::Pay(a) => return transition(cfg, a, InvoiceStatus::Paid).await,
        InvoicesCommand::Void(a) => return transition(cfg, a, InvoiceStatus::Void).await,
        InvoicesCommand::MarkUncollectible(a) => return transition(cfg, a, InvoiceStatus::Uncollectible).await,
        InvoicesCommand::CreditNote(a) => return credit_note(cfg, a).await,
        InvoicesCommand::History { id } => return history(cfg, &id).await,
    };
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
