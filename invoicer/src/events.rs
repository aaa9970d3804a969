//! Billing events on NATS JetStream: `<prefix>.invoice.finalized`, `.invoice.paid`,
//! `.invoice.voided`, `.invoice.uncollectible` and `<prefix>.credit_note.issued`.
//!
//! Each event is published **after** its ClickHouse write, with `Nats-Msg-Id` = the event id, so
//! a retried publish (a second closer, a re-run after a crash within the stream's duplicate
//! window) is dropped by JetStream. The JSON schema is documented in docs/BILLING_EVENTS.md and
//! versioned by its `schema` field; fields are only ever added.

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use serde::Serialize;

use meterline_schemas::invoice::{CreditNoteRow, InvoiceRow, InvoiceStatus};

use crate::error::{Error, Result};

/// The `schema` field of every event.
pub const SCHEMA: &str = "meterline.billing.v1";

/// One billing event, as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BillingEvent {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// Deterministic event id, also the `Nats-Msg-Id`.
    pub event_id: String,
    /// `invoice.finalized`, `invoice.paid`, `invoice.voided`, `invoice.uncollectible`, `credit_note.issued`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When the transition happened, RFC 3339 UTC.
    pub occurred_at: String,
    /// The invoice.
    pub invoice_id: String,
    /// Its number.
    pub invoice_number: String,
    /// Customer key.
    pub customer: String,
    /// Subscription.
    pub subscription_id: String,
    /// Period label `YYYY-MM`.
    pub period: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Invoice total (amount due), exact decimal text with the currency's minor units.
    pub total: String,
    /// When payment is due, RFC 3339 UTC (`invoice.*` events of numbered invoices; the invoice's
    /// stored `due_at`); empty when the invoice has none.
    pub due_at: String,
    /// Invoice status after the event.
    pub status: String,
    /// Status before the event (`invoice.*` events; empty for credit notes).
    pub previous_status: String,
    /// `close` or `cli`.
    pub actor: String,
    /// Reason given, may be empty.
    pub reason: String,
    /// Credit note fields (`credit_note.issued` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credit_note: Option<CreditNoteEvent>,
}

/// The credit note of a `credit_note.issued` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreditNoteEvent {
    /// Credit note id.
    pub credit_note_id: String,
    /// Its number.
    pub number: String,
    /// Amount credited, exact decimal text.
    pub amount: String,
    /// Invoice total not yet credited after this note, exact decimal text.
    pub remaining: String,
}

fn rfc3339(secs: u32) -> String {
    chrono::DateTime::from_timestamp(i64::from(secs), 0).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_default()
}

fn money(currency: &str, d: rust_decimal::Decimal) -> String {
    meterline_schemas::money::Currency::from_code(currency).map_or_else(|_| d.normalize().to_string(), |c| c.format(d))
}

/// The event type of entering `to`.
pub fn invoice_event_type(to: InvoiceStatus) -> &'static str {
    match to {
        InvoiceStatus::Draft => "invoice.draft",
        InvoiceStatus::Finalized => "invoice.finalized",
        InvoiceStatus::Paid => "invoice.paid",
        InvoiceStatus::Void => "invoice.voided",
        InvoiceStatus::Uncollectible => "invoice.uncollectible",
    }
}

/// The event of `row` having entered its status from `from`.
pub fn invoice_event(event_id: uuid::Uuid, row: &InvoiceRow, from: InvoiceStatus, actor: &str, reason: &str) -> BillingEvent {
    let to = InvoiceStatus::from_i8(row.status).unwrap_or(InvoiceStatus::Draft);
    BillingEvent {
        schema: SCHEMA,
        event_id: event_id.to_string(),
        kind: invoice_event_type(to).to_owned(),
        occurred_at: rfc3339(row.status_at),
        invoice_id: row.invoice_id.to_string(),
        invoice_number: row.number.clone(),
        customer: row.customer.clone(),
        subscription_id: row.subscription_id.clone(),
        period: row.period.clone(),
        currency: row.currency.clone(),
        total: money(&row.currency, row.total),
        due_at: if row.due_at == 0 { String::new() } else { rfc3339(row.due_at) },
        status: to.name().to_owned(),
        previous_status: from.name().to_owned(),
        actor: actor.to_owned(),
        reason: reason.to_owned(),
        credit_note: None,
    }
}

/// The `credit_note.issued` event of `cn` on `invoice`; `actor` is `cli` (an operator's
/// credit note) or `close` (late usage credited by the close).
pub fn credit_note_event(cn: &CreditNoteRow, invoice: &InvoiceRow, remaining: rust_decimal::Decimal, actor: &str) -> BillingEvent {
    BillingEvent {
        schema: SCHEMA,
        event_id: cn.credit_note_id.to_string(),
        kind: "credit_note.issued".to_owned(),
        occurred_at: rfc3339(cn.issued_at),
        invoice_id: invoice.invoice_id.to_string(),
        invoice_number: invoice.number.clone(),
        customer: invoice.customer.clone(),
        subscription_id: invoice.subscription_id.clone(),
        period: invoice.period.clone(),
        currency: invoice.currency.clone(),
        total: money(&invoice.currency, invoice.total),
        due_at: if invoice.due_at == 0 { String::new() } else { rfc3339(invoice.due_at) },
        status: InvoiceStatus::from_i8(invoice.status).map_or("unknown", |s| s.name()).to_owned(),
        previous_status: String::new(),
        actor: actor.to_owned(),
        reason: cn.reason.clone(),
        credit_note: Some(CreditNoteEvent {
            credit_note_id: cn.credit_note_id.to_string(),
            number: cn.number.clone(),
            amount: money(&cn.currency, cn.amount),
            remaining: money(&cn.currency, remaining),
        }),
    }
}

/// Publishes billing events to `<prefix>.<type>` on the stream `stream`.
#[derive(Debug, Clone)]
pub struct Publisher {
    js: jetstream::Context,
    prefix: String,
}

impl Publisher {
    /// Ensures the stream capturing `<prefix>.>` exists and returns a publisher.
    pub async fn open(js: &jetstream::Context, stream_name: &str, prefix: &str) -> Result<Publisher> {
        if js.get_stream(stream_name).await.is_err() {
            js.create_stream(stream::Config {
                name: stream_name.to_owned(),
                subjects: vec![format!("{prefix}.>")],
                storage: stream::StorageType::File,
                duplicate_window: std::time::Duration::from_secs(24 * 3600),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Nats(format!("create stream {stream_name}: {e}")))?;
        }
        Ok(Publisher { js: js.clone(), prefix: prefix.to_owned() })
    }

    /// The subject of an event type.
    pub fn subject(&self, kind: &str) -> String {
        format!("{}.{kind}", self.prefix)
    }

    /// Publishes `events` and waits for every JetStream ack.
    pub async fn publish(&self, events: &[BillingEvent]) -> Result<()> {
        let mut acks = Vec::with_capacity(events.len());
        for ev in events.iter().filter(|e| e.kind != "invoice.draft") {
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", ev.event_id.as_str());
            let body = serde_json::to_vec(ev)?;
            let ack = self
                .js
                .publish_with_headers(self.subject(&ev.kind), headers, body.into())
                .await
                .map_err(|e| Error::Nats(format!("publish {}: {e}", ev.kind)))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await.map_err(|e| Error::Nats(format!("billing event ack: {e}")))?;
        }
        Ok(())
    }
}
