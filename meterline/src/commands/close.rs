//! `meterline close --period YYYY-MM`.

use meterline_invoicer::CloseReport;
use meterline_schemas::period::PeriodLabel;

use crate::cli::CloseArgs;
use crate::config::Config;
use crate::connect;

pub async fn run(cfg: &Config, args: CloseArgs) -> anyhow::Result<()> {
    let label: PeriodLabel = args.period.parse()?;
    let r = close(cfg, label).await?;
    crate::output::emit(format!(
        "period {label}: {} invoices ({} written now, {} already stored, {} conflicting), {} ledger rows rated in {:.2}s, written in {:.2}s",
        r.invoices.len(),
        r.write.inserted,
        r.write.unchanged,
        r.write.conflicts.len(),
        r.rows_rated,
        r.rate_time.as_secs_f64(),
        r.write_time.as_secs_f64()
    ))?;
    if !r.write.conflicts.is_empty() {
        crate::output::emit(format!(
            "warning: {} stored invoices differ from a fresh computation and were left unchanged (finalized invoices are immutable): {}",
            r.write.conflicts.len(),
            r.write.conflicts.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
        ))?;
    }
    Ok(())
}

/// Closes a period with the stored catalog.
pub async fn close(cfg: &Config, label: PeriodLabel) -> anyhow::Result<CloseReport> {
    let (client, js) = connect::nats(cfg).await?;
    let catalog = connect::catalog(cfg, &js).await?.load().await?;
    client.flush().await?;
    let ch = connect::clickhouse(cfg).await?;
    std::fs::create_dir_all(&cfg.ledger.path)?;
    Ok(meterline_invoicer::close_period(&ch, &cfg.ledger.path, &catalog, label, cfg.billing.settings()?).await?)
}
