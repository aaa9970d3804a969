//! `meterline invoices list`.

use comfy_table::{CellAlignment, Table};
use rust_decimal::Decimal;

use meterline_invoicer::writer::{list_invoices, list_lines};
use meterline_schemas::invoice::InvoiceRow;
use meterline_schemas::money::Currency;
use meterline_schemas::period::PeriodLabel;

use crate::cli::{Format, InvoicesCommand};
use crate::config::Config;
use crate::connect;

pub async fn run(cfg: &Config, cmd: InvoicesCommand) -> anyhow::Result<()> {
    let InvoicesCommand::List { period, format, lines } = cmd;
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
            t.set_header(["customer", "subscription", "plan", "currency", "subtotal", "tax", "total", "lines", "invoice id"]);
            for i in &invoices {
                let f = money(i);
                t.add_row(vec![
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
            for c in 4..=6 {
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
        "status": if i.status == 1 { "draft" } else { "finalized" },
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
