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
    loop {
        let t = Instant::now();
        // The catalog is re-read each time, so new customers and subscriptions show up.
        let catalog = store.load().await?;
        let (rows, what) = match label {
            Some(label) => (
                meterline_invoicer::spend::refresh(&ch, &cfg.ledger.path, &catalog, label, cfg.billing.rounding).await?,
                format!("period {label}"),
            ),
            None => (
                meterline_invoicer::spend::refresh_open(&ch, &cfg.ledger.path, &catalog, cfg.billing.rounding).await?,
                "open cycles".to_owned(),
            ),
        };
        emit(format!("{what}: current spend of {} subscriptions refreshed in {:.2}s", rows.len(), t.elapsed().as_secs_f64()))?;
        let Some(every) = args.every else { break };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(Duration::from_secs(every.max(1)).saturating_sub(t.elapsed())) => {}
        }
    }
    client.flush().await?;
    Ok(())
}
