//! Credit notes: full or partial credits of a finalized invoice, with their own gapless number
//! series (`CN-2026-000001`), stored in `credit_notes` and `credit_note_lines`.
//!
//! A credit note never exceeds the invoice's uncredited remainder: its total minus every credit
//! note already issued on it. Amounts are gross (the invoice total includes tax; a credit of a
//! line credits that line's amount as invoiced). The invoice itself never changes.
//!
//! Two kinds: issued by an operator ([`issue`], `meterline invoices credit-note`), and issued by
//! the close for late usage that lowers a finalized period's amount ([`issue_late`]; the lines and
//! their tax come from `adjustments.rs`). Both publish `credit_note.issued` before releasing their
//! number reservation.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use meterline_schemas::clickhouse::ClickHouse;
use meterline_schemas::invoice::{CreditNoteLineRow, CreditNoteRow, InvoiceRow, InvoiceStatus};
use meterline_schemas::money::Currency;

use crate::adjustments::LateCredit;
use crate::error::{Error, Result};
use crate::events;
use crate::ids::{credit_note_id, late_credit_note_id};
use crate::lifecycle::{Billing, describe, find};
use crate::numbering::{Claim, Reservation};
use crate::writer::{insert_all, invoice_lines};

/// What to credit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credit {
    /// An amount of the invoice total.
    Amount(Decimal),
    /// Whole invoice lines, by line number.
    Lines(Vec<u32>),
    /// Everything not yet credited.
    Full,
}

/// An issued credit note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// Header.
    pub note: CreditNoteRow,
    /// Lines.
    pub lines: Vec<CreditNoteLineRow>,
    /// What is left to credit on the invoice afterwards.
    pub remaining: Decimal,
}

/// Credit notes of an invoice.
pub async fn of_invoice(ch: &ClickHouse, invoice: Uuid) -> Result<Vec<CreditNoteRow>> {
    Ok(ch
        .client()
        .query("SELECT ?fields FROM credit_notes FINAL WHERE invoice_id = ? ORDER BY number")
        .bind(invoice.to_string())
        .fetch_all()
        .await?)
}

/// Issues a credit note on the invoice `id_or_number`.
pub async fn issue(billing: &Billing, id_or_number: &str, what: Credit, reason: &str, now: DateTime<Utc>) -> Result<Issued> {
    let ch = &billing.ch;
    let inv = find(ch, id_or_number).await?;
    let status = InvoiceStatus::from_i8(inv.status);
    if !matches!(status, Some(InvoiceStatus::Finalized | InvoiceStatus::Paid | InvoiceStatus::Uncollectible)) {
        return Err(Error::CreditNote(format!(
            "invoice {} is {}: only finalized, paid or uncollectible invoices can be credited",
            describe(&inv),
            status.map_or("unknown", |s| s.name())
        )));
    }
    if reason.trim().is_empty() {
        return Err(Error::CreditNote("--reason is required for a credit note".into()));
    }
    let currency = Currency::from_code(&inv.currency)?;
    loop {
        if let Some(issued) = attempt(billing, &inv, &what, reason, now, currency).await? {
            return Ok(issued);
        }
        tracing::info!(invoice = %describe(&inv), "another credit note on this invoice was written meanwhile; issuing again after it");
    }
}

/// One attempt of [`issue`] from a fresh read of the invoice's credit notes; `None` when another
/// credit note took the id this attempt computed (written since that read): try again.
async fn attempt(
    billing: &Billing,
    inv: &InvoiceRow,
    what: &Credit,
    reason: &str,
    now: DateTime<Utc>,
    currency: Currency,
) -> Result<Option<Issued>> {
    let ch = &billing.ch;
    let existing = of_invoice(ch, inv.invoice_id).await?;
    let credited: Decimal = existing.iter().map(|c| c.amount).sum();
    let remaining = inv.total - credited;
    let mut lines = Vec::new();
    match what {
        Credit::Amount(a) => {
            if *a <= Decimal::ZERO || a.normalize().scale() > currency.minor_units() {
                return Err(Error::CreditNote(format!(
                    "--amount {a}: must be positive with at most {} decimals for {}",
                    currency.minor_units(),
                    inv.currency
                )));
            }
            lines.push((0, format!("Credit: {reason}"), *a));
        }
        Credit::Full => lines.push((0, format!("Full credit: {reason}"), remaining)),
        Credit::Lines(ns) => {
            let stored = invoice_lines(ch, inv).await?;
            for n in ns {
                let l = stored
                    .iter()
                    .find(|l| l.line_no == *n)
                    .ok_or_else(|| Error::CreditNote(format!("--line {n}: invoice {} has lines 1 to {}", describe(inv), stored.len())))?;
                if l.amount <= Decimal::ZERO {
                    return Err(Error::CreditNote(format!(
                        "--line {n}: line {:?} has amount {}, nothing to credit",
                        l.description, l.amount
                    )));
                }
                lines.push((*n, format!("Credit of line {n} ({}): {reason}", l.description), l.amount));
            }
        }
    }
    let amount: Decimal = lines.iter().map(|l| l.2).sum();
    if amount <= Decimal::ZERO {
        return Err(Error::CreditNote(format!("invoice {} has nothing left to credit", describe(inv))));
    }
    if amount > remaining {
        return Err(Error::CreditNote(format!(
            "credit note of {} {cur} exceeds what is left to credit on invoice {}: total {} {cur}, already credited {} {cur}, remaining {} {cur}",
            currency.format(amount),
            describe(inv),
            currency.format(inv.total),
            currency.format(credited),
            currency.format(remaining),
            cur = inv.currency,
        )));
    }

    // The invoice's n-th credit note: a retry after a crash finds the same id and its number.
    // Two different requests on one invoice at once address the same id too: the number is
    // claimed for this request's content, and a different request holding it is refused as busy
    // (numbering.rs), so neither credit overwrites the other and both pass the remainder check
    // against the notes written before them.
    let id = credit_note_id(inv.invoice_id, u32::try_from(existing.len()).unwrap_or(u32::MAX));
    let content = {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for (n, description, amount) in &lines {
            h.update(format!("{n}\u{1f}{description}\u{1f}{}\u{1e}", amount.normalize()).as_bytes());
        }
        h.digest()
    };
    let series = &billing.settings.credit_note_series;
    let reservation = loop {
        let mut snap = billing.numbering.read(series).await?;
        let before = snap.counter.clone();
        // Reservations of this invoice's credit notes already written are finished.
        snap.counter.pending.retain(|p, _| !existing.iter().any(|c| c.credit_note_id == *p));
        let r = match snap.counter.claim(id, content, secs(now)) {
            // Unless this request held it already (a retry), a note with this id may have been
            // written and its claim released since `existing` was read: a stale id would
            // overwrite that note. A note written before this counter read is visible now (notes
            // are stored before their claim is released); one written after changes the counter,
            // and the compare-and-set below fails.
            Claim::Held(_)
                if before.pending.get(&id).is_none_or(|p| p.content != Some(content))
                    && of_invoice(ch, inv.invoice_id).await?.iter().any(|c| c.credit_note_id == id) =>
            {
                return Ok(None);
            }
            Claim::Held(r) => r,
            Claim::Busy(r) => {
                return Err(Error::CreditNote(format!(
                    "another credit note on invoice {} is being issued right now (number {} reserved at {}); nothing was issued: \
                     check `invoices history` and try again in a minute if still needed",
                    describe(inv),
                    series.number(r),
                    DateTime::from_timestamp(i64::from(r.at), 0).map_or_else(|| r.at.to_string(), |t| t.to_rfc3339()),
                )));
            }
        };
        if snap.counter == before || billing.numbering.compare_and_set(series, &snap.counter, snap.revision).await? {
            break r;
        }
    };
    let lines = lines.into_iter().map(|(n, description, amount)| (n, description, amount, "{}".to_owned())).collect();
    let (note, lines) = rows(billing, inv, id, reservation, amount, reason, lines);
    let remaining = remaining - amount;
    write(billing, inv, &note, &lines, remaining, "cli").await?;
    Ok(Some(Issued { note, lines, remaining }))
}

fn secs(t: DateTime<Utc>) -> u32 {
    u32::try_from(t.timestamp()).unwrap_or(u32::MAX)
}

/// The header and lines of a credit note; `lines` are (invoice line, description, amount,
/// breakdown).
fn rows(
    billing: &Billing,
    inv: &InvoiceRow,
    id: Uuid,
    reservation: Reservation,
    amount: Decimal,
    reason: &str,
    lines: Vec<(u32, String, Decimal, String)>,
) -> (CreditNoteRow, Vec<CreditNoteLineRow>) {
    let note = CreditNoteRow {
        credit_note_id: id,
        number: billing.settings.credit_note_series.number(reservation),
        invoice_id: inv.invoice_id,
        invoice_number: inv.number.clone(),
        customer: inv.customer.clone(),
        subscription_id: inv.subscription_id.clone(),
        period: inv.period.clone(),
        currency: inv.currency.clone(),
        amount,
        reason: reason.to_owned(),
        issued_at: reservation.at,
        version: 1,
    };
    let lines = lines
        .into_iter()
        .enumerate()
        .map(|(i, (n, description, amount, breakdown))| CreditNoteLineRow {
            credit_note_id: id,
            line_no: u32::try_from(i + 1).unwrap_or(u32::MAX),
            invoice_line_no: n,
            description,
            amount,
            breakdown,
            version: 1,
        })
        .collect();
    (note, lines)
}

/// Writes a credit note (lines first: a stored header means its lines are stored), publishes its
/// `credit_note.issued` event, then releases its number reservation.
async fn write(
    billing: &Billing,
    inv: &InvoiceRow,
    note: &CreditNoteRow,
    lines: &[CreditNoteLineRow],
    remaining: Decimal,
    actor: &str,
) -> Result<()> {
    let ch = &billing.ch;
    insert_all(ch.client(), "credit_note_lines", &lines.iter().collect::<Vec<_>>()).await?;
    insert_all(ch.client(), "credit_notes", &[note]).await?;
    billing.events.publish(&[events::credit_note_event(note, inv, remaining, actor)]).await?;
    billing.numbering.release(&billing.settings.credit_note_series, &[note.credit_note_id]).await
}

/// What became of a credit for late usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LateOutcome {
    /// Issued now.
    Issued(Issued),
    /// Issued before, by this close run earlier or by a closer beside it.
    AlreadyIssued(CreditNoteRow),
    /// Not issued; why (e.g. it exceeds what is left to credit on the invoice).
    Skipped(String),
}

/// The reason recorded on a credit note for late usage of `period` found by the close of `label`.
pub fn late_reason(period: &str, label: &str) -> String {
    format!("late usage of {period} re-rated by the close of {label}")
}

/// Issues the credit note of `credit` (computed by the close of `label`; see `adjustments.rs`).
/// Idempotent: its id is a hash of its content, and the number counter is read before ClickHouse,
/// so a closer that finds it stored (written after its read) does not issue it again.
pub async fn issue_late(billing: &Billing, credit: &LateCredit, label: &str, now: DateTime<Utc>) -> Result<LateOutcome> {
    let ch = &billing.ch;
    let inv = find(ch, &credit.invoice_id.to_string()).await?;
    let status = InvoiceStatus::from_i8(inv.status);
    if !matches!(status, Some(InvoiceStatus::Finalized | InvoiceStatus::Paid | InvoiceStatus::Uncollectible)) {
        return Ok(LateOutcome::Skipped(format!("invoice {} is {}", describe(&inv), status.map_or("unknown", |s| s.name()))));
    }
    let id = late_credit_note_id(inv.invoice_id, &credit.content());
    let amount = credit.amount();
    let series = &billing.settings.credit_note_series;
    let (reservation, remaining) = loop {
        let mut snap = billing.numbering.read(series).await?;
        let existing = of_invoice(ch, inv.invoice_id).await?;
        if let Some(c) = existing.iter().find(|c| c.credit_note_id == id) {
            // Stored earlier; if its reservation is still pending, the closer that wrote it died
            // before publishing: publish again (the event id dedups), then release.
            if snap.counter.pending.contains_key(&id) {
                let credited: Decimal =
                    existing.iter().filter(|e| (e.issued_at, &e.number) <= (c.issued_at, &c.number)).map(|e| e.amount).sum();
                billing.events.publish(&[events::credit_note_event(c, &inv, inv.total - credited, "close")]).await?;
                billing.numbering.release(series, &[id]).await?;
            }
            return Ok(LateOutcome::AlreadyIssued(c.clone()));
        }
        let credited: Decimal = existing.iter().map(|c| c.amount).sum();
        let remaining = inv.total - credited;
        let cur = &inv.currency;
        if amount > remaining {
            return Ok(LateOutcome::Skipped(format!(
                "the credit of {amount} {cur} exceeds what is left to credit on invoice {}: total {} {cur}, already credited {credited} {cur}",
                describe(&inv),
                inv.total
            )));
        }
        let before = snap.counter.clone();
        let r = snap.counter.reserve(&[id], secs(now))[0].1;
        if snap.counter == before || billing.numbering.compare_and_set(series, &snap.counter, snap.revision).await? {
            break (r, remaining);
        }
    };
    let lines = credit.lines.iter().map(|l| (l.invoice_line_no, l.description.clone(), l.amount, l.breakdown.clone())).collect();
    let (note, lines) = rows(billing, &inv, id, reservation, amount, &late_reason(&credit.period, label), lines);
    let remaining = remaining - amount;
    meterline_schemas::failpoint::hit("late_credit.before_write");
    write(billing, &inv, &note, &lines, remaining, "close").await?;
    Ok(LateOutcome::Issued(Issued { note, lines, remaining }))
}
