//! Idempotent writes of invoices to ClickHouse, and reading them back.
//!
//! Closing a period twice must write no duplicate rows, even without `FINAL`. Before inserting,
//! the writer reads which invoice ids of the period already have a header and which already have
//! lines; it inserts only what is missing. Lines go first and the header last, so a header means
//! "complete": a close interrupted between the two inserts is finished by the next one without
//! duplicating lines. An invoice whose stored content hash differs from the recomputed one is
//! never overwritten (finalized invoices are immutable) and is reported as a conflict.

use std::collections::{HashMap, HashSet};

use clickhouse::Row;
use serde::Deserialize;

use meterline_schemas::clickhouse::ClickHouse;
use meterline_schemas::invoice::{InvoiceLineRow, InvoiceRow};

use crate::build::Invoice;
use crate::error::Result;

/// What a write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteSummary {
    /// Invoices inserted now.
    pub inserted: usize,
    /// Lines inserted now.
    pub lines_inserted: usize,
    /// Invoices already stored with identical content.
    pub unchanged: usize,
    /// Invoices already stored with different content (left untouched), by id.
    pub conflicts: Vec<String>,
}

#[derive(Row, Deserialize)]
struct Stored {
    id: String,
    content_hash: u64,
}

/// Writes `invoices` of `period`, skipping what is already stored.
pub async fn write_invoices(ch: &ClickHouse, period: &str, invoices: &[Invoice]) -> Result<WriteSummary> {
    let c = ch.client();
    let stored: HashMap<String, u64> = c
        .query("SELECT toString(invoice_id) AS id, content_hash FROM invoices FINAL WHERE period = ?")
        .bind(period)
        .fetch_all::<Stored>()
        .await?
        .into_iter()
        .map(|s| (s.id, s.content_hash))
        .collect();
    let with_lines: HashSet<String> = c
        .query("SELECT DISTINCT toString(invoice_id) FROM invoice_lines WHERE period = ?")
        .bind(period)
        .fetch_all::<String>()
        .await?
        .into_iter()
        .collect();

    let mut summary = WriteSummary::default();
    let mut headers: Vec<&InvoiceRow> = Vec::new();
    let mut lines: Vec<&InvoiceLineRow> = Vec::new();
    for inv in invoices {
        let id = inv.row.invoice_id.to_string();
        match stored.get(&id) {
            Some(h) if *h == inv.row.content_hash => summary.unchanged += 1,
            Some(_) => summary.conflicts.push(id),
            None => {
                if !with_lines.contains(&id) {
                    lines.extend(inv.lines.iter());
                }
                headers.push(&inv.row);
            }
        }
    }
    insert_all(c, "invoice_lines", &lines).await?;
    insert_all(c, "invoices", &headers).await?;
    summary.inserted = headers.len();
    summary.lines_inserted = lines.len();
    Ok(summary)
}

/// Inserts `rows` in one batch (nothing when empty).
pub(crate) async fn insert_all<T>(c: &clickhouse::Client, table: &str, rows: &[&T]) -> Result<()>
where
    T: clickhouse::RowOwned + clickhouse::RowWrite,
{
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = c.insert::<T>(table).await?;
    for r in rows {
        insert.write(*r).await?;
    }
    insert.end().await?;
    Ok(())
}

/// Invoices of a period, current state (`FINAL`), ordered by customer and subscription.
pub async fn list_invoices(ch: &ClickHouse, period: &str) -> Result<Vec<InvoiceRow>> {
    Ok(ch
        .client()
        .query("SELECT ?fields FROM invoices FINAL WHERE period = ? ORDER BY customer, subscription_id")
        .bind(period)
        .fetch_all::<InvoiceRow>()
        .await?)
}

/// Lines of a period, ordered by invoice and line number.
pub async fn list_lines(ch: &ClickHouse, period: &str) -> Result<Vec<InvoiceLineRow>> {
    Ok(ch
        .client()
        .query("SELECT ?fields FROM invoice_lines FINAL WHERE period = ? ORDER BY invoice_id, line_no")
        .bind(period)
        .fetch_all::<InvoiceLineRow>()
        .await?)
}
