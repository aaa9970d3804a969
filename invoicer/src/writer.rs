//! Idempotent writes of invoices to ClickHouse, and reading them back.
//!
//! Closing a period twice must write no duplicate rows, even without `FINAL`. Before inserting,
//! the writer reads the current header of every invoice of the period (`invoices_current`) and
//! which (invoice, lines version) pairs already have lines; it inserts only what is missing.
//! Lines go first and the header last, so a header means "complete": a close interrupted between
//! the two inserts is finished by the next one without duplicating lines.
//!
//! - no header yet: lines under lines version 1, then a `draft` header (version 1);
//! - a `draft` whose content changed (late usage within the grace window): lines under the next
//!   lines version, then the next header version, still `draft` (a refresh);
//! - any other state: finalized content never changes; a different recomputation is reported as
//!   a conflict (late usage becomes adjustment lines on the next period's invoice instead).

use std::collections::{HashMap, HashSet};

use clickhouse::Row;
use serde::Deserialize;
use uuid::Uuid;

use meterline_schemas::clickhouse::ClickHouse;
use meterline_schemas::invoice::{InvoiceEventRow, InvoiceLineRow, InvoiceRow, InvoiceStatus};

use crate::build::Invoice;
use crate::error::Result;
use crate::lifecycle::event_row;

/// What a write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteSummary {
    /// Invoices created now (as drafts).
    pub inserted: usize,
    /// Lines inserted now.
    pub lines_inserted: usize,
    /// Drafts refreshed with new content.
    pub refreshed: usize,
    /// Invoices finalized now.
    pub finalized: usize,
    /// Invoices already stored with identical content.
    pub unchanged: usize,
    /// Finalized (or later) invoices whose recomputation differs (left untouched), by id.
    pub conflicts: Vec<String>,
}

#[derive(Row, Deserialize)]
struct LinesVersion {
    id: String,
    version: u64,
}

/// The current headers of a period's invoices, by id.
pub async fn current_headers(ch: &ClickHouse, period: &str) -> Result<HashMap<Uuid, InvoiceRow>> {
    Ok(ch
        .client()
        .query("SELECT ?fields FROM invoices_current WHERE period = ?")
        .bind(period)
        .fetch_all::<InvoiceRow>()
        .await?
        .into_iter()
        .map(|r| (r.invoice_id, r))
        .collect())
}

/// Writes the drafts of `invoices` of `period` (create or refresh), skipping what is already
/// stored. Returns the summary and every invoice's current header after the write.
pub async fn write_drafts(ch: &ClickHouse, period: &str, invoices: &[Invoice]) -> Result<(WriteSummary, Vec<InvoiceRow>)> {
    let c = ch.client();
    let stored = current_headers(ch, period).await?;
    let with_lines: HashSet<(String, u64)> = c
        .query("SELECT DISTINCT toString(invoice_id) AS id, version FROM invoice_lines WHERE period = ?")
        .bind(period)
        .fetch_all::<LinesVersion>()
        .await?
        .into_iter()
        .map(|l| (l.id, l.version))
        .collect();

    let mut summary = WriteSummary::default();
    let mut headers: Vec<InvoiceRow> = Vec::new();
    let mut events: Vec<InvoiceEventRow> = Vec::new();
    // Lines are inserted by reference; only a refreshed draft's lines (new lines version) are copied.
    let mut lines: Vec<&InvoiceLineRow> = Vec::new();
    let mut renumbered: Vec<InvoiceLineRow> = Vec::new();
    let mut current = Vec::new();
    for inv in invoices {
        let id = inv.row.invoice_id;
        let (row, from, reason) = match stored.get(&id) {
            Some(s) if s.content_hash == inv.row.content_hash => {
                summary.unchanged += 1;
                current.push(s.clone());
                continue;
            }
            Some(s) if s.status != InvoiceStatus::Draft as i8 => {
                summary.conflicts.push(id.to_string());
                current.push(s.clone());
                continue;
            }
            Some(s) => {
                summary.refreshed += 1;
                let mut r = inv.row.clone();
                r.lines_version = s.lines_version + 1;
                r.version = s.version + 1;
                (r, InvoiceStatus::Draft as i8, "refreshed")
            }
            None => {
                summary.inserted += 1;
                (inv.row.clone(), 0, "created")
            }
        };
        if !with_lines.contains(&(id.to_string(), row.lines_version)) {
            if inv.lines.iter().all(|l| l.version == row.lines_version) {
                lines.extend(inv.lines.iter());
            } else {
                renumbered.extend(inv.lines.iter().map(|l| InvoiceLineRow { version: row.lines_version, ..l.clone() }));
            }
        }
        events.push(event_row(&row, from, "close", reason));
        current.push(row.clone());
        headers.push(row);
    }
    lines.extend(renumbered.iter());
    // Lines before headers: a header is never visible (nor, after a crash, stored) without its lines.
    insert_parallel(c, "invoice_lines", &lines).await?;
    insert_all(c, "invoices", &headers.iter().collect::<Vec<_>>()).await?;
    insert_all(c, "invoice_events", &events.iter().collect::<Vec<_>>()).await?;
    summary.lines_inserted = lines.len();
    Ok((summary, current))
}

/// Inserts `rows` in concurrent batches of at least [`PARALLEL_CHUNK`] rows, one per core, so
/// that encoding and compressing (here) and parsing (in the server) use every core. Returns when
/// every batch is written; on an error some batches may be written, which the idempotent close
/// repairs (lines are looked up by (invoice, lines version) before a header is written).
pub(crate) async fn insert_parallel<T>(c: &clickhouse::Client, table: &str, rows: &[&T]) -> Result<()>
where
    T: clickhouse::RowOwned + clickhouse::RowWrite,
{
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    futures::future::try_join_all(rows.chunks(chunk_size(rows.len(), cores)).map(|part| insert_all(c, table, part))).await?;
    Ok(())
}

/// Rows per concurrent batch: an equal share per core, never below [`PARALLEL_CHUNK`].
fn chunk_size(rows: usize, cores: usize) -> usize {
    rows.div_ceil(cores.max(1)).max(PARALLEL_CHUNK)
}

/// Smallest batch [`insert_parallel`] sends on its own.
const PARALLEL_CHUNK: usize = 100_000;

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

/// Invoices of a period, current state, ordered by customer and subscription.
pub async fn list_invoices(ch: &ClickHouse, period: &str) -> Result<Vec<InvoiceRow>> {
    Ok(ch
        .client()
        .query("SELECT ?fields FROM invoices_current WHERE period = ? ORDER BY customer, subscription_id")
        .bind(period)
        .fetch_all::<InvoiceRow>()
        .await?)
}

/// Current lines of a period (each invoice's current lines version), ordered by invoice and
/// line number.
pub async fn list_lines(ch: &ClickHouse, period: &str) -> Result<Vec<InvoiceLineRow>> {
    Ok(ch
        .client()
        .query(
            "SELECT ?fields FROM invoice_lines FINAL WHERE period = ? \
             AND (invoice_id, version) IN (SELECT invoice_id, lines_version FROM invoices_current WHERE period = ?) \
             ORDER BY invoice_id, line_no",
        )
        .bind(period)
        .bind(period)
        .fetch_all::<InvoiceLineRow>()
        .await?)
}

/// Current lines of one invoice.
pub async fn invoice_lines(ch: &ClickHouse, invoice: &InvoiceRow) -> Result<Vec<InvoiceLineRow>> {
    Ok(ch
        .client()
        .query("SELECT ?fields FROM invoice_lines FINAL WHERE invoice_id = ? AND version = ? ORDER BY line_no")
        .bind(invoice.invoice_id.to_string())
        .bind(invoice.lines_version)
        .fetch_all::<InvoiceLineRow>()
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_a_share_per_core_but_never_small() {
        // 1.1M lines on 2 cores: two batches of 550,000.
        assert_eq!(chunk_size(1_100_000, 2), 550_000);
        assert_eq!(1_100_000_usize.div_ceil(chunk_size(1_100_000, 2)), 2);
        // 150,000 lines on 2 cores: 100,000 + 50,000, not 75,000 + 75,000.
        assert_eq!(chunk_size(150_000, 2), 100_000);
        // A small close is one batch.
        assert_eq!(chunk_size(6_000, 8), 100_000);
        assert_eq!(chunk_size(0, 0), 100_000);
    }
}
