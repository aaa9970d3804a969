//! Reading one invoice and its lines back from ClickHouse for rendering.

use meterline_schemas::clickhouse::ClickHouse;
use meterline_schemas::invoice::{InvoiceLineRow, InvoiceRow};

use crate::error::Result;

/// The invoice `id` (current state: `invoices_current`) and its current lines (the header's
/// `lines_version`) in line order; `None` when unknown.
pub async fn load_invoice(ch: &ClickHouse, id: uuid::Uuid) -> Result<Option<(InvoiceRow, Vec<InvoiceLineRow>)>> {
    // toUUID: ClickHouse 18.16 does not compare a UUID column with a string literal.
    let id = id.to_string();
    let invoice = ch
        .client()
        .query("SELECT ?fields FROM invoices_current WHERE invoice_id = toUUID(?)")
        .bind(id.as_str())
        .fetch_optional::<InvoiceRow>()
        .await?;
    let Some(invoice) = invoice else { return Ok(None) };
    let lines = ch
        .client()
        .query("SELECT ?fields FROM invoice_lines FINAL WHERE invoice_id = toUUID(?) AND version = ? ORDER BY line_no")
        .bind(id.as_str())
        .bind(invoice.lines_version)
        .fetch_all::<InvoiceLineRow>()
        .await?;
    Ok(Some((invoice, lines)))
}
