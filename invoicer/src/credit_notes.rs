//! Credit notes: full or partial credits of a finalized invoice, with their own gapless number
//! series (`CN-2026-000001`), stored in `credit_notes` and `credit_note_lines`.
//!
//! A credit note never exceeds the invoice's uncredited remainder: its total minus every credit
//! note already issued on it. Amounts are gross (the invoice total includes tax; a credit of a
//! line credits that line's amount as invoiced). The invoice itself never changes.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use meterline_schemas::clickhouse::ClickHouse;
use meterline_schemas::invoice::{CreditNoteLineRow, CreditNoteRow, InvoiceStatus};
use meterline_schemas::money::Currency;

use crate::error::{Error, Result};
use crate::events;
use crate::ids::credit_note_id;
use crate::lifecycle::{Billing, describe, find};
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
pub async fn of_invoice(ch: &ClickHouse, invoice: uuid::Uuid) -> Result<Vec<CreditNoteRow>> {
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
    let existing = of_invoice(ch, inv.invoice_id).await?;
    let credited: Decimal = existing.iter().map(|c| c.amount).sum();
    let remaining = inv.total - credited;
    let mut lines = Vec::new();
    match &what {
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
            let stored = invoice_lines(ch, &inv).await?;
            for n in ns {
                let l = stored
                    .iter()
                    .find(|l| l.line_no == *n)
                    .ok_or_else(|| Error::CreditNote(format!("--line {n}: invoice {} has lines 1 to {}", describe(&inv), stored.len())))?;
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
        return Err(Error::CreditNote(format!("invoice {} has nothing left to credit", describe(&inv))));
    }
    if amount > remaining {
        return Err(Error::CreditNote(format!(
            "credit note of {} {cur} exceeds what is left to credit on invoice {}: total {} {cur}, already credited {} {cur}, remaining {} {cur}",
            currency.format(amount),
            describe(&inv),
            currency.format(inv.total),
            currency.format(credited),
            currency.format(remaining),
            cur = inv.currency,
        )));
    }

    let id = credit_note_id(inv.invoice_id, u32::try_from(existing.len()).unwrap_or(u32::MAX));
    let series = &billing.settings.credit_note_series;
    let at = u32::try_from(now.timestamp()).unwrap_or(u32::MAX);
    let reservation = loop {
        let mut snap = billing.numbering.read(series).await?;
        let before = snap.counter.clone();
        // Reservations of this invoice's credit notes already written are finished.
        snap.counter.pending.retain(|p, _| !existing.iter().any(|c| c.credit_note_id == *p));
        let r = snap.counter.reserve(&[id], at)[0].1;
        if snap.counter == before || billing.numbering.compare_and_set(series, &snap.counter, snap.revision).await? {
            break r;
        }
    };
    let note = CreditNoteRow {
        credit_note_id: id,
        number: series.number(reservation),
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
    let rows: Vec<CreditNoteLineRow> = lines
        .into_iter()
        .enumerate()
        .map(|(i, (n, description, amount))| CreditNoteLineRow {
            credit_note_id: id,
            line_no: u32::try_from(i + 1).unwrap_or(u32::MAX),
            invoice_line_no: n,
            description,
            amount,
            version: 1,
        })
        .collect();
    insert_all(ch.client(), "credit_note_lines", &rows.iter().collect::<Vec<_>>()).await?;
    insert_all(ch.client(), "credit_notes", &[&note]).await?;
    billing.numbering.release(series, &[id]).await?;
    let remaining = remaining - amount;
    billing.events.publish(&[events::credit_note_event(&note, &inv, remaining)]).await?;
    Ok(Issued { note, lines: rows, remaining })
}
