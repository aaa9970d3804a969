//! The period close: catalog + ledger + period → invoices in ClickHouse, through their lifecycle.
//!
//! 1. Rate the period from the ledger, compute adjustments for late usage of earlier finalized
//!    periods (`adjustments.rs`), build the invoices.
//! 2. Write drafts: create missing ones, refresh drafts whose content changed (`writer.rs`).
//! 3. Finalize the drafts whose grace deadline (`period end + grace`) has passed: reserve gapless
//!    numbers (`numbering.rs`), date them due (`terms.rs`: the finalization day + the customer's
//!    payment terms), write the finalized headers and their `invoice_events`, publish
//!    the `invoice.finalized` events, then release the reservations. The reservations are the
//!    outbox of those events: a closer that dies after the write and before the release leaves
//!    them pending, and the next closer (of any period) publishes the events of every pending
//!    reservation whose invoice it finds finalized before dropping it. JetStream's 24-hour
//!    duplicate window (`Nats-Msg-Id` = event id) drops the copies when the first closer had
//!    published, so no event is lost and none is stored twice.
//!
//! 4. Issue credit notes for late usage of earlier finalized periods that nets negative
//!    (`adjustments.rs`, `credit_notes::issue_late`): on those periods' invoices, once.
//!
//! `close --finalize` insists on finalizing: it fails, before writing anything, when any
//! invoice's deadline has not passed yet.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use meterline_schemas::catalog::Catalog;
use meterline_schemas::invoice::{InvoiceRow, InvoiceStatus};
use meterline_schemas::period::PeriodLabel;

use crate::adjustments::{self, LateCredit};
use crate::build::{Invoice, build_invoices_with};
use crate::credit_notes::{LateOutcome, issue_late};
use crate::credits::CreditUsage;
use crate::error::{Error, Result};
use crate::events;
use crate::ledger_calls::{self, LedgerCallsWritten};
use crate::lifecycle::{Billing, event_row, next_version};
use crate::numbering::{Counter, Reservation};
use crate::rated_calls::{RatedCallsWritten, rated_call_rows, write_rated_calls};
use crate::tax::usage_by_tax_period;
use crate::terms;
use crate::writer::{WriteSummary, current_headers, insert_all, write_drafts};

/// What a close did and how long it took.
#[derive(Debug, Clone)]
pub struct CloseReport {
    /// The invoices computed (whether or not newly written), as drafts.
    pub invoices: Vec<Invoice>,
    /// Ledger rows (one per event and meter) aggregated into usage lines.
    pub rows_rated: u64,
    /// Time spent aggregating and pricing.
    pub rate_time: Duration,
    /// Time spent writing to ClickHouse.
    pub write_time: Duration,
    /// What the write did.
    pub write: WriteSummary,
    /// Invoices finalized by this close, with their numbers.
    pub finalized: Vec<InvoiceRow>,
    /// Invoices still draft after this close (their deadline has not passed).
    pub drafts: usize,
    /// The latest grace deadline among the period's invoices.
    pub deadline: Option<DateTime<Utc>>,
    /// Late usage of earlier finalized periods whose net is negative: credit notes on their
    /// invoices (docs/INVOICES.md), with what became of each.
    pub late_credits: Vec<(LateCredit, LateOutcome)>,
    /// What the write of rated call records (telecom prices) did.
    pub calls: RatedCallsWritten,
    /// What the write of rated call records to the ledger did.
    pub ledger_calls: LedgerCallsWritten,
}

/// How to close.
#[derive(Debug, Clone, Copy)]
pub struct CloseOptions {
    /// The clock: deadlines are compared with it, and finalization is dated by it.
    pub now: DateTime<Utc>,
    /// Refuse (before writing) unless every invoice's grace deadline has passed.
    pub finalize: bool,
}

fn secs(t: DateTime<Utc>) -> u32 {
    u32::try_from(t.timestamp()).unwrap_or(u32::MAX)
}

/// Closes `label`: rates every active subscription from the ledger at `ledger_root`, builds the
/// invoices, writes drafts and finalizes those past their grace deadline.
pub async fn close_period(
    billing: &Billing,
    ledger_root: &Path,
    catalog: &Catalog,
    label: PeriodLabel,
    opts: CloseOptions,
) -> Result<CloseReport> {
    let ch = &billing.ch;
    let s = &billing.settings;
    let t0 = Instant::now();
    let rated = meterline_rater::rate_period(ledger_root, catalog, label).await?;
    let rows_rated = rated.iter().flat_map(|r| r.usage.iter()).map(|u| u.event_count).sum();
    let credits = CreditUsage::load_before(ch, catalog, label).await?;
    let parts = usage_by_tax_period(ledger_root, &rated, s, s.provider(catalog).as_ref()).await?;
    let adj = adjustments::compute(ch, ledger_root, catalog, label, s).await?;
    let invoices = build_invoices_with(&rated, catalog, label, s, &credits, &parts, &adj.lines)?;
    let rate_time = t0.elapsed();

    let deadline_of = |row: &InvoiceRow| DateTime::from_timestamp(i64::from(row.period_end), 0).unwrap_or_default() + s.grace;
    let deadline = invoices.iter().map(|i| deadline_of(&i.row)).max();
    if opts.finalize
        && let Some(d) = deadline
        && opts.now < d
    {
        return Err(Error::DeadlineNotPassed(format!(
            "period {label} cannot be finalized before its grace deadline {} (period end + billing.grace_hours = {}); it is {} now",
            d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            s.grace.num_hours(),
            opts.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )));
    }

    let t1 = Instant::now();
    let period = label.to_string();
    let call_rows = rated_call_rows(&rated, label);
    // Calls first (the ledger, then ClickHouse), invoices last: a stored invoice header means its
    // calls are stored in both.
    let ledger_calls = ledger_calls::write(ledger_root, &period, &call_rows).await?;
    let calls = write_rated_calls(ch, &period, &call_rows).await?;
    let (mut write, current) = write_drafts(ch, &period, &invoices).await?;
    let due: Vec<InvoiceRow> =
        current.into_iter().filter(|r| r.status == InvoiceStatus::Draft as i8 && deadline_of(r) <= opts.now).collect();
    let finalized = finalize(billing, catalog, &period, due, opts.now).await?;
    write.finalized = finalized.len();
    let write_time = t1.elapsed();
    let drafts = current_headers(ch, &period).await?.values().filter(|r| r.status == InvoiceStatus::Draft as i8).count();
    let mut late_credits = Vec::with_capacity(adj.credits.len());
    for c in adj.credits {
        let outcome = issue_late(billing, &c, &period, opts.now).await?;
        match &outcome {
            LateOutcome::Issued(i) => tracing::info!(subscription = %c.subscription_id, period = %c.period, invoice = %c.invoice_number,
                credit_note = %i.note.number, amount = %i.note.amount, "late usage nets negative: credit note issued"),
            LateOutcome::AlreadyIssued(n) => tracing::info!(credit_note = %n.number, "late-usage credit note already issued"),
            LateOutcome::Skipped(why) => tracing::warn!(subscription = %c.subscription_id, period = %c.period, net = %c.net,
                reason = %why, "late usage nets negative but no credit note was issued"),
        }
        late_credits.push((c, outcome));
    }
    tracing::info!(period = %label, invoices = invoices.len(), inserted = write.inserted, refreshed = write.refreshed,
        finalized = write.finalized, unchanged = write.unchanged, conflicts = write.conflicts.len(), rated_calls_inserted = calls.inserted, rated_calls_to_ledger = ledger_calls.rows,
        "period closed");
    Ok(CloseReport { invoices, rows_rated, rate_time, write_time, write, finalized, drafts, deadline, late_credits, calls, ledger_calls })
}

/// Finalizes `due` drafts: gapless numbers, due dates, finalized headers, transitions, billing
/// events. Safe against a second closer doing the same at the same time (see `numbering.rs`):
/// both take the number and the time from the same reservation, so they write identical rows.
async fn finalize(billing: &Billing, catalog: &Catalog, period: &str, due: Vec<InvoiceRow>, now: DateTime<Utc>) -> Result<Vec<InvoiceRow>> {
    let series = &billing.settings.invoice_series;
    let mut due = due;
    due.sort_by(|a, b| (&a.customer, &a.subscription_id).cmp(&(&b.customer, &b.subscription_id)));
    let (todo, reservations) = loop {
        let mut snap = billing.numbering.read(series).await?;
        if due.is_empty() && snap.counter.pending.is_empty() {
            return Ok(Vec::new());
        }
        // Read ClickHouse after the counter: a writer that finished (and released) after our read
        // changes the revision, so the compare-and-set below fails and we look again.
        let stored = current_headers(&billing.ch, period).await?;
        let before = snap.counter.clone();
        // Reservations whose invoices are already finalized (by a closer that crashed before
        // releasing, or one running beside us, of any period) are finished: drop them.
        let pending: Vec<Uuid> = snap.counter.pending.keys().copied().collect();
        let written = finalized_among(billing, &pending).await?;
        publish_finalized(billing, &written).await?;
        let (todo, reserved) = plan_finalization(&due, &stored, &written, &mut snap.counter, secs(now));
        if snap.counter == before || billing.numbering.compare_and_set(series, &snap.counter, snap.revision).await? {
            break (todo, reserved);
        }
    };
    if todo.is_empty() {
        return Ok(Vec::new());
    }
    meterline_schemas::failpoint::hit("close.after_reserve");
    let mut rows = Vec::with_capacity(todo.len());
    let mut evs = Vec::with_capacity(todo.len());
    for draft in &todo {
        let r = reservations[&draft.invoice_id];
        let mut row = next_version(draft, InvoiceStatus::Finalized, r.at);
        row.number = series.number(r);
        // The draft's due date was provisional (cycle end + terms): due counts from the day the
        // invoice is finalized, under the terms in force now.
        row.due_at = terms::due_at(row.status_at, terms::terms_days_of(&billing.settings, catalog, &row.customer));
        evs.push(event_row(&row, InvoiceStatus::Draft as i8, "close", FINALIZE_REASON));
        rows.push(row);
    }
    insert_all(billing.ch.client(), "invoices", &rows.iter().collect::<Vec<_>>()).await?;
    insert_all(billing.ch.client(), "invoice_events", &evs.iter().collect::<Vec<_>>()).await?;
    meterline_schemas::failpoint::hit("close.after_finalize_write");
    let published: Vec<_> =
        rows.iter().zip(&evs).map(|(row, ev)| events::invoice_event(ev.event_id, row, InvoiceStatus::Draft, "close", &ev.reason)).collect();
    billing.events.publish(&published).await?;
    billing.numbering.release(series, &rows.iter().map(|r| r.invoice_id).collect::<Vec<_>>()).await?;
    Ok(rows)
}

/// Which of `due` to finalize now and their numbers: the drafts among `stored` (current headers,
/// read after the counter) that are not in `written` (finalized headers of the counter's pending
/// reservations, read after `stored`). `written` reservations are finished and dropped from
/// `counter`; the others are reserved (reused when pending). `written` is the fresher read: an
/// invoice another closer finalized between the two reads shows as a draft in `stored`, and its
/// reservation is dropped here, so it must not be numbered a second time.
fn plan_finalization(
    due: &[InvoiceRow],
    stored: &HashMap<Uuid, InvoiceRow>,
    written: &HashMap<Uuid, InvoiceRow>,
    counter: &mut Counter,
    at: u32,
) -> (Vec<InvoiceRow>, HashMap<Uuid, Reservation>) {
    counter.pending.retain(|id, _| !written.contains_key(id));
    let todo: Vec<InvoiceRow> = due
        .iter()
        .filter(|r| !written.contains_key(&r.invoice_id))
        .filter_map(|r| stored.get(&r.invoice_id).filter(|s| s.status == InvoiceStatus::Draft as i8).cloned())
        .collect();
    let ids: Vec<Uuid> = todo.iter().map(|r| r.invoice_id).collect();
    let reserved = counter.reserve(&ids, at).into_iter().collect();
    (todo, reserved)
}

/// The reason recorded with every finalization by the close.
const FINALIZE_REASON: &str = "grace deadline passed";

/// The `invoice.finalized` events of `rows` (finalized headers read back), published again: see
/// the module doc (the reservations are their outbox).
async fn publish_finalized(billing: &Billing, rows: &HashMap<Uuid, InvoiceRow>) -> Result<()> {
    let evs: Vec<_> = rows
        .values()
        .map(|row| {
            let ev = event_row(row, InvoiceStatus::Draft as i8, "close", FINALIZE_REASON);
            events::invoice_event(ev.event_id, row, InvoiceStatus::Draft, "close", FINALIZE_REASON)
        })
        .collect();
    billing.events.publish(&evs).await
}

/// The finalized headers of those of `ids` that were finalized (any period, whatever their
/// status now).
async fn finalized_among(billing: &Billing, ids: &[Uuid]) -> Result<HashMap<Uuid, InvoiceRow>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let list = ids.iter().map(|id| format!("'{id}'")).collect::<Vec<_>>().join(", ");
    let found: Vec<InvoiceRow> = billing
        .ch
        .client()
        .query(&format!("SELECT ?fields FROM invoices WHERE invoice_id IN ({list}) AND status = 'finalized' LIMIT 1 BY invoice_id"))
        .fetch_all()
        .await?;
    Ok(found.into_iter().map(|r| (r.invoice_id, r)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::tests::row;
    use InvoiceStatus::{Draft, Finalized};

    fn with_id(n: u128, status: InvoiceStatus, number: &str) -> InvoiceRow {
        InvoiceRow { invoice_id: Uuid::from_u128(n), ..row(status, number) }
    }

    /// The race seen in CI: closer A reserved 1 and 2 and wrote them finalized between closer B's
    /// read of the current headers (still drafts) and its read of A's pending reservations
    /// (finalized). B must neither number them again nor keep A's reservations.
    #[test]
    fn invoices_finalized_between_the_two_reads_are_not_numbered_again() {
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let due = vec![with_id(1, Draft, ""), with_id(2, Draft, ""), with_id(3, Draft, "")];
        let stored: HashMap<Uuid, InvoiceRow> = due.iter().map(|r| (r.invoice_id, r.clone())).collect();
        let mut counter = Counter::default();
        counter.reserve(&[a, b], 100);
        let written: HashMap<Uuid, InvoiceRow> =
            [with_id(1, Finalized, "INV-1"), with_id(2, Finalized, "INV-2")].into_iter().map(|r| (r.invoice_id, r)).collect();

        let (todo, reserved) = plan_finalization(&due, &stored, &written, &mut counter, 200);
        assert_eq!(todo.iter().map(|r| r.invoice_id).collect::<Vec<_>>(), vec![c]);
        assert_eq!(reserved, HashMap::from([(c, Reservation { seq: 3, at: 200, content: None })]));
        assert_eq!(counter.next, 4);
        assert_eq!(counter.pending.keys().copied().collect::<Vec<_>>(), vec![c]);
    }

    /// A closer beside us reserved (pending, not yet written): we take the same numbers and time.
    #[test]
    fn pending_drafts_reuse_their_reservation_and_finalized_ones_are_skipped() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let due = vec![with_id(1, Draft, ""), with_id(2, Draft, "")];
        let stored: HashMap<Uuid, InvoiceRow> =
            [with_id(1, Draft, ""), with_id(2, Finalized, "INV-7")].into_iter().map(|r| (r.invoice_id, r)).collect();
        let mut counter = Counter::default();
        counter.reserve(&[a], 100);
        let (todo, reserved) = plan_finalization(&due, &stored, &HashMap::new(), &mut counter, 200);
        assert_eq!(todo.iter().map(|r| r.invoice_id).collect::<Vec<_>>(), vec![a]);
        assert_eq!(reserved, HashMap::from([(a, Reservation { seq: 1, at: 100, content: None })]));
        assert_eq!(counter.next, 2);
        assert!(!counter.pending.contains_key(&b));
    }
}
