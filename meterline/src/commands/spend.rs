//! `meterline spend [--period YYYY-MM] [--every SECONDS]`.

use std::time::{Duration, Instant};

use meterline_schemas::period::PeriodLabel;

use crate::cli::SpendArgs;
use crate::config::Config;
use crate::connect;
use crate::output::emit;

pub async fn run(cfg: &Config, args: SpendArgs) -> anyhow::Result<()> {
    let label: PeriodLabel = match &args.period {
        Some(p) => p.parse()?,
        None => PeriodLabel::containing(chrono::Utc::now()),
    };
    let (client, js) = connect::nats(cfg).await?;
    let store = connect::catalog(cfg, &js).await?;
    let ch = connect::clickhouse(cfg).await?;
    std::fs::create_dir_all(&cfg.ledger.path)?;
    loop {
        let t = Instant::now();
        // The catalog is re-read each time, so new customers and subscriptions show up.
        let catalog = store.load().await?;
        let rows = meterline_invoicer::spend::refresh(&ch, &cfg.ledger.path, &catalog, label, cfg.billing.rounding).await?;
        emit(format!("period {label}: current spend of {} subscriptions refreshed in {:.2}s", rows.len(), t.elapsed().as_secs_f64()))?;
        let Some(every) = args.every else { break };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(Duration::from_secs(every.max(1)).saturating_sub(t.elapsed())) => {}
        }
    }
    client.flush().await?;
    Ok(())
}
