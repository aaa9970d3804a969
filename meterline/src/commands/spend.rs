//! `meterline spend [--period YYYY-MM] [--every SECONDS]`: without `--period`, each
//! subscription's open cycle (the one containing now).

use std::time::{Duration, Instant};

use meterline_schemas::period::PeriodLabel;

use crate::cli::SpendArgs;
use crate::config::Config;
use crate::connect;
use crate::output::emit;

pub async fn run(cfg: &Config, args: SpendArgs) -> anyhow::Result<()> {
    // A given label rates the cycles it closes; without one, each subscription's open cycle
    // (the one containing now: this month, this quarter or this year) under its own label.
    let label: Option<PeriodLabel> = args.period.as_deref().map(str::parse).transpose()?;
    let (client, js) = connect::nats(cfg).await?;
    let store = connect::catalog(cfg, &js).await?;
    let ch = connect::clickhouse(cfg).await?;
    std::fs::create_dir_all(&cfg.ledger.path)?;
    // Kept across refreshes: each reads only the ledger segments written since the last one.
    let mut refresher = meterline_invoicer::spend::Refresher::default();
    loop {
        let t = Instant::now();
        // The catalog is re-read each time, so new customers and subscriptions show up (the
        // usage of a period whose subscriptions changed is read again from the whole ledger).
        // Only the rows of subscriptions with new usage are written.
        let catalog = store.load().await?;
        let rows = refresher.refresh(&ch, &cfg.ledger.path, &catalog, label, cfg.billing.rounding).await?;
        let what = label.map_or_else(|| "open cycles".to_owned(), |l| format!("period {l}"));
        emit(format!(
            "{what}: current spend of {} subscriptions written in {:.2}s ({} new ledger segments read; subscriptions without new usage keep their rows)",
            rows.len(),
            t.elapsed().as_secs_f64(),
            refresher.last_read
        ))?;
        let Some(every) = args.every else { break };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(Duration::from_secs(every.max(1)).saturating_sub(t.elapsed())) => {}
        }
    }
    client.flush().await?;
    Ok(())
}
