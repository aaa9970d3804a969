//! `meterline close --period YYYY-MM [--finalize] [--as-of TIME]`.

use meterline_invoicer::credit_notes::LateOutcome;
use meterline_invoicer::{CloseOptions, CloseReport};
use meterline_schemas::period::PeriodLabel;

use crate::cli::CloseArgs;
use crate::config::Config;
use crate::connect;

pub async fn run(cfg: &Config, args: CloseArgs) -> anyhow::Result<()> {
    let label: PeriodLabel = args.period.parse()?;
    let now = match &args.as_of {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|e| anyhow::anyhow!("--as-of {t:?}: expected an RFC 3339 time such as 2026-11-04T00:00:00Z ({e})"))?
            .to_utc(),
        None => chrono::Utc::now(),
    };
    let r = close(cfg, label, CloseOptions { now, finalize: args.finalize }).await?;
    crate::output::emit(format!(
        "period {label}: {} invoices ({} created, {} refreshed, {} finalized now, {} unchanged, {} conflicting, {} still draft), {} ledger rows rated in {:.2}s, written in {:.2}s",
        r.invoices.len(),
        r.write.inserted,
        r.write.refreshed,
        r.write.finalized,
        r.write.unchanged,
        r.write.conflicts.len(),
        r.drafts,
        r.rows_rated,
        r.rate_time.as_secs_f64(),
        r.write_time.as_secs_f64()
    ))?;
    if r.drafts > 0
        && let Some(d) = r.deadline
    {
        crate::output::emit(format!(
            "drafts are finalized by the first close after the grace deadline {}",
            d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ))?;
    }
    if let (Some(first), Some(last)) = (r.finalized.first(), r.finalized.last()) {
        crate::output::emit(format!("numbers {} to {}", first.number, last.number))?;
    }
    if r.calls.inserted > 0 || r.calls.already_stored > 0 {
        crate::output::emit(format!(
            "rated calls: {} written now, {} subscriptions already stored",
            r.calls.inserted, r.calls.already_stored
        ))?;
    }
    if let Some(file) = &r.ledger_calls.file {
        crate::output::emit(format!("rated calls in the ledger: {} written now to {file}", r.ledger_calls.rows))?;
    }
    if !r.write.conflicts.is_empty() {
        crate::output::emit(format!(
            "note: {} finalized invoices differ from a fresh computation and were left unchanged (late usage is billed as adjustments on the next period): {}",
            r.write.conflicts.len(),
            r.write.conflicts.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
        ))?;
    }
    for (c, outcome) in &r.late_credits {
        match outcome {
            LateOutcome::Issued(i) => crate::output::emit(format!(
                "late usage of {} nets {} {} for {}: credit note {} on invoice {}, {} {} (tax included)",
                c.period, c.net, c.currency, c.subscription_id, i.note.number, c.invoice_number, i.note.amount, c.currency
            ))?,
            LateOutcome::AlreadyIssued(_) => {}
            LateOutcome::Skipped(why) => crate::output::emit(format!(
                "warning: late usage of {} nets {} {} for {}, but no credit note was issued: {why}; credit it with `meterline invoices credit-note --id {} ...`",
                c.period, c.net, c.currency, c.subscription_id, c.invoice_number
            ))?,
        }
    }
    Ok(())
}

/// Closes a period with the stored catalog.
pub async fn close(cfg: &Config, label: PeriodLabel, opts: CloseOptions) -> anyhow::Result<CloseReport> {
    let (client, js) = connect::nats(cfg).await?;
    let catalog = connect::catalog(cfg, &js).await?.load().await?;
    client.flush().await?;
    let billing = connect::billing(cfg, &js).await?;
    std::fs::create_dir_all(&cfg.ledger.path)?;
    let r = meterline_invoicer::close_period(&billing, &cfg.ledger.path, &catalog, label, opts).await?;
    client.flush().await?;
    Ok(r)
}
