//! The invoice lifecycle: `draft → finalized → paid | void | uncollectible`, and
//! `uncollectible → paid | void`.
//!
//! The current state of an invoice is its `invoices` row with the highest `version`
//! (ReplacingMergeTree(version); read through the `invoices_current` view, which needs no
//! `FINAL`). A transition inserts the next version of the header and one `invoice_events` row,
//! then publishes the billing event (after the ClickHouse writes). Lines never change after
//! finalization; drafts are refreshed by `close` under a new lines version. A process that dies
//! between its writes and its publish leaves the event in ClickHouse only: [`replay_events`]
//! (`meterline invoices replay-events --since …`) publishes it from there.

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use meterline_schemas::clickhouse::ClickHouse;
use meterline_schemas::invoice::{InvoiceEventRow, InvoiceRow, InvoiceStatus};

use crate::error::{Error, Result};
use crate::events::{self, Publisher};
use crate::ids::event_id;
use crate::numbering::Numbering;
use crate::settings::Settings;
use crate::writer::insert_all;

/// Everything the lifecycle writes to: ClickHouse, the numbering counters, the billing events.
#[derive(Debug, Clone)]
pub struct Billing {
    /// ClickHouse.
    pub ch: ClickHouse,
    /// Number counters in NATS KV.
    pub numbering: Numbering,
    /// Billing events on NATS.
    pub events: Publisher,
    /// Rules.
    pub settings: Settings,
}

impl Billing {
    /// Opens the numbering bucket `numbering_bucket` and the events stream.
    pub async fn open(
        ch: ClickHouse,
        js: &jetstream::Context,
        numbering_bucket: &str,
        events_stream: &str,
        events_prefix: &str,
        settings: Settings,
    ) -> Result<Billing> {
        Ok(Billing {
            ch,
            numbering: Numbering::open(js, numbering_bucket).await?,
            events: Publisher::open(js, events_stream, events_prefix).await?,
            settings,
        })
    }
}

/// Whether `from → to` is a legal transition.
pub fn allowed(from: InvoiceStatus, to: InvoiceStatus) -> bool {
    use InvoiceStatus::*;
    matches!((from, to), (Draft, Finalized) | (Finalized, Paid | Void | Uncollectible) | (Uncollectible, Paid | Void))
}

fn action(to: InvoiceStatus) -> &'static str {
    match to {
        InvoiceStatus::Draft => "reopen it",
        InvoiceStatus::Finalized => "finalize it",
        InvoiceStatus::Paid => "pay it",
        InvoiceStatus::Void => "void it",
        InvoiceStatus::Uncollectible => "mark it uncollectible",
    }
}

/// How an invoice is named in messages: its number and id, or its id while it has no number.
pub fn describe(row: &InvoiceRow) -> String {
    if row.number.is_empty() { row.invoice_id.to_string() } else { format!("{} ({})", row.number, row.invoice_id) }
}

/// Checks `row`'s current status allows entering `to`.
pub fn check(row: &InvoiceRow, to: InvoiceStatus) -> Result<InvoiceStatus> {
    let from = InvoiceStatus::from_i8(row.status)
        .ok_or_else(|| Error::NotFound(format!("invoice {} has unknown status {}", describe(row), row.status)))?;
    if !allowed(from, to) {
        return Err(Error::IllegalTransition {
            invoice: describe(row),
            from: from.name().to_owned(),
            to: to.name().to_owned(),
            action: action(to).to_owned(),
        });
    }
    Ok(from)
}

/// The next version of `row` in status `to`, entered at `at`. Everything else, `due_at`
/// included, is kept (finalization sets the due date itself, `close.rs`).
pub fn next_version(row: &InvoiceRow, to: InvoiceStatus, at: u32) -> InvoiceRow {
    let mut r = row.clone();
    r.status = to as i8;
    r.status_at = at;
    r.version = row.version + 1;
    r
}

/// The `invoice_events` row of `row` having entered its status from `from` (0 = none).
pub fn event_row(row: &InvoiceRow, from: i8, actor: &str, reason: &str) -> InvoiceEventRow {
    InvoiceEventRow {
        event_id: event_id(row.invoice_id, row.version, row.status),
        invoice_id: row.invoice_id,
        number: row.number.clone(),
        from_status: from,
        to_status: row.status,
        at: row.status_at,
        actor: actor.to_owned(),
        reason: reason.to_owned(),
        version: row.version,
    }
}

/// The current header of one invoice, by id or by number.
pub async fn find(ch: &ClickHouse, id_or_number: &str) -> Result<InvoiceRow> {
    let q = match Uuid::parse_str(id_or_number) {
        Ok(id) => ch.client().query("SELECT ?fields FROM invoices_current WHERE invoice_id = ?").bind(id.to_string()),
        Err(_) => ch.client().query("SELECT ?fields FROM invoices_current WHERE number = ?").bind(id_or_number),
    };
    q.fetch_optional::<InvoiceRow>().await?.ok_or_else(|| Error::NotFound(format!("no invoice with id or number {id_or_number:?}")))
}

/// Moves an invoice to `to` (`paid`, `void`, `uncollectible`) by operator request.
pub async fn transition(billing: &Billing, id_or_number: &str, to: InvoiceStatus, reason: &str, now: DateTime<Utc>) -> Result<InvoiceRow> {
    if to == InvoiceStatus::Finalized || to == InvoiceStatus::Draft {
        return Err(Error::Config(format!("invoices enter {to} through `meterline close`, not by hand")));
    }
    let cur = find(&billing.ch, id_or_number).await?;
    let from = check(&cur, to)?;
    let at = u32::try_from(now.timestamp()).unwrap_or(u32::MAX);
    let next = next_version(&cur, to, at);
    let ev = event_row(&next, from as i8, "cli", reason);
    insert_all(billing.ch.client(), "invoices", &[&next]).await?;
    insert_all(billing.ch.client(), "invoice_events", &[&ev]).await?;
    meterline_schemas::failpoint::hit("transition.after_write");
    billing.events.publish(&[events::invoice_event(ev.event_id, &next, from, "cli", reason)]).await?;
    tracing::info!(invoice = %describe(&next), from = %from, to = %to, "invoice transition");
    Ok(next)
}

/// The transitions of one invoice, oldest first (duplicates from concurrent closers collapsed).
pub async fn history(ch: &ClickHouse, invoice: Uuid) -> Result<Vec<InvoiceEventRow>> {
    Ok(ch
        .client()
        .query("SELECT ?fields FROM invoice_events FINAL WHERE invoice_id = ? ORDER BY version, at")
        .bind(invoice.to_string())
        .fetch_all()
        .await?)
}

/// What [`replay_events`] published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    /// `invoice.*` events.
    pub invoice_events: usize,
    /// `credit_note.issued` events.
    pub credit_notes: usize,
}

/// Publishes again every billing event of a transition recorded at or after `since`, rebuilt from
/// ClickHouse (the source of truth): `invoice_events` with the header version each one wrote, and
/// `credit_notes` with what was left to credit after each. Ids are the same as the first time, so
/// JetStream's duplicate window (24 hours) drops what it already has; older events reach
/// consumers again, who deduplicate by `event_id` (docs/BILLING_EVENTS.md). For the gap of a
/// process that died between its ClickHouse write and its publish (`invoices pay|void|…`,
/// `credit-note`); the close recovers its own `invoice.finalized` events by itself.
pub async fn replay_events(billing: &Billing, since: DateTime<Utc>) -> Result<Replayed> {
    let at = u32::try_from(since.timestamp().max(0)).unwrap_or(u32::MAX);
    let client = billing.ch.client();
    let evs: Vec<InvoiceEventRow> = client
        .query("SELECT ?fields FROM invoice_events FINAL WHERE at >= ? AND to_status != 'draft' ORDER BY at, invoice_id, version")
        .bind(at)
        .fetch_all()
        .await?;
    let headers: Vec<InvoiceRow> = client
        .query(
            "SELECT ?fields FROM invoices WHERE (invoice_id, version) IN \
             (SELECT invoice_id, version FROM invoice_events WHERE at >= ? AND to_status != 'draft') LIMIT 1 BY invoice_id, version",
        )
        .bind(at)
        .fetch_all()
        .await?;
    let headers: std::collections::HashMap<(Uuid, u64), InvoiceRow> = headers.into_iter().map(|h| ((h.invoice_id, h.version), h)).collect();
    let mut out = Vec::with_capacity(evs.len());
    for ev in &evs {
        let row = headers.get(&(ev.invoice_id, ev.version)).ok_or_else(|| {
            Error::NotFound(format!("invoice {} version {} of event {} is not in `invoices`", ev.invoice_id, ev.version, ev.event_id))
        })?;
        let from = InvoiceStatus::from_i8(ev.from_status).unwrap_or(InvoiceStatus::Draft);
        out.push(events::invoice_event(ev.event_id, row, from, &ev.actor, &ev.reason));
    }
    let invoice_events = out.len();

    let notes: Vec<meterline_schemas::invoice::CreditNoteRow> =
        client.query("SELECT ?fields FROM credit_notes FINAL WHERE issued_at >= ? ORDER BY issued_at, number").bind(at).fetch_all().await?;
    for note in &notes {
        // The invoice as it stood when the note was issued, and what was left to credit after it.
        let versions: Vec<InvoiceRow> = client
            .query("SELECT ?fields FROM invoices WHERE invoice_id = ? ORDER BY version")
            .bind(note.invoice_id.to_string())
            .fetch_all()
            .await?;
        let inv =
            versions.iter().rev().find(|h| h.status_at <= note.issued_at).or(versions.last()).ok_or_else(|| {
                Error::NotFound(format!("invoice {} of credit note {} is not in `invoices`", note.invoice_id, note.number))
            })?;
        let all = crate::credit_notes::of_invoice(&billing.ch, note.invoice_id).await?;
        let credited: rust_decimal::Decimal =
            all.iter().filter(|c| (c.issued_at, &c.number) <= (note.issued_at, &note.number)).map(|c| c.amount).sum();
        // Credit notes of the close (late usage) have described lines; an operator's have none.
        let by_close: u64 = client
            .query("SELECT count() FROM credit_note_lines WHERE credit_note_id = ? AND breakdown != '{}'")
            .bind(note.credit_note_id.to_string())
            .fetch_one()
            .await?;
        let actor = if by_close > 0 { "close" } else { "cli" };
        out.push(events::credit_note_event(note, inv, inv.total - credited, actor));
    }
    billing.events.publish(&out).await?;
    Ok(Replayed { invoice_events, credit_notes: notes.len() })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use InvoiceStatus::*;

    pub(crate) fn row(status: InvoiceStatus, number: &str) -> InvoiceRow {
        InvoiceRow {
            invoice_id: Uuid::from_u128(0xabc),
            subscription_id: "sub-1".into(),
            customer: "alice".into(),
            period: "2026-10".into(),
            period_start: 0,
            period_end: 0,
            currency: "USD".into(),
            plan: "basic".into(),
            plan_version: 1,
            subtotal: Default::default(),
            tax: Default::default(),
            total: Default::default(),
            line_count: 0,
            status: status as i8,
            number: number.into(),
            status_at: 0,
            lines_version: 1,
            revision: 0,
            content_hash: 0,
            issued_at: 0,
            due_at: 0,
            version: 3,
            reporting_currency: String::new(),
            subtotal_base: Default::default(),
            tax_base: Default::default(),
            total_base: Default::default(),
            fx_rate: Default::default(),
            fx_date: 0,
        }
    }

    #[test]
    fn transition_table() {
        let legal: Vec<_> = InvoiceStatus::ALL
            .iter()
            .flat_map(|f| InvoiceStatus::ALL.iter().map(move |t| (*f, *t)))
            .filter(|(f, t)| allowed(*f, *t))
            .collect();
        assert_eq!(
            legal,
            vec![
                (Draft, Finalized),
                (Finalized, Paid),
                (Finalized, Void),
                (Finalized, Uncollectible),
                (Uncollectible, Paid),
                (Uncollectible, Void)
            ]
        );
    }

    #[test]
    fn illegal_transitions_name_invoice_state_and_attempt() {
        let id = "00000000-0000-0000-0000-000000000abc";
        let err = |r: &InvoiceRow, to| check(r, to).unwrap_err().to_string();
        assert_eq!(
            err(&row(Void, "INV-2026-000001"), Finalized),
            format!("invoice INV-2026-000001 ({id}) is void: cannot finalize it (void → finalized is not allowed)")
        );
        assert_eq!(err(&row(Draft, ""), Paid), format!("invoice {id} is draft: cannot pay it (draft → paid is not allowed)"));
        assert_eq!(
            err(&row(Void, "INV-2026-000001"), Void),
            format!("invoice INV-2026-000001 ({id}) is void: cannot void it (void → void is not allowed)")
        );
        assert_eq!(
            err(&row(Paid, "INV-2026-000001"), Uncollectible),
            format!("invoice INV-2026-000001 ({id}) is paid: cannot mark it uncollectible (paid → uncollectible is not allowed)")
        );
        assert_eq!(check(&row(Finalized, "INV-2026-000001"), Paid).unwrap(), Finalized);
        let next = next_version(&row(Finalized, "INV-2026-000001"), Paid, 77);
        assert_eq!((next.status, next.status_at, next.version), (Paid as i8, 77, 4));
    }

    #[test]
    fn due_dates_survive_transitions_and_stay_out_of_the_content_hash() {
        let finalized = InvoiceRow { due_at: 1_799_020_800, ..row(Finalized, "INV-2026-000001") }; // 2027-01-04
        let paid = next_version(&finalized, Paid, 1_800_000_000);
        assert_eq!(paid.due_at, 1_799_020_800, "paying keeps the due date");
        // A draft's provisional due date and the finalized one hash alike: new terms never make a
        // stored invoice a conflict. What the customer owes does change the hash.
        let hash = |r: &InvoiceRow| crate::build::content_hash(r, &mut []).unwrap();
        let draft = InvoiceRow { due_at: 1_798_675_200, ..row(Draft, "") }; // 2026-12-31
        assert_eq!(hash(&draft), hash(&finalized));
        assert_ne!(hash(&draft), hash(&InvoiceRow { total: rust_decimal::Decimal::ONE, ..draft.clone() }));
    }
}
