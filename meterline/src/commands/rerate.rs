//! `meterline rerate --period YYYY-MM [--customer KEY]`.

use comfy_table::{CellAlignment, Table};

use meterline_schemas::money::Currency;
use meterline_schemas::period::PeriodLabel;

use crate::cli::{Format, RerateArgs};
use crate::config::Config;
use crate::connect;
use crate::output::emit;

pub async fn run(cfg: &Config, args: RerateArgs) -> anyhow::Result<()> {
    let label: PeriodLabel = args.period.parse()?;
    let (client, js) = connect::nats(cfg).await?;
    let catalog = connect::catalog(cfg, &js).await?.load().await?;
    client.flush().await?;
    if let Some(c) = &args.customer {
        anyhow::ensure!(catalog.customers.contains_key(c), "--customer {c:?} is not in the catalog");
    }
    let ch = connect::clickhouse(cfg).await?;
    std::fs::create_dir_all(&cfg.ledger.path)?;
    let report =
        meterline_invoicer::rerate::rerate(&ch, &cfg.ledger.path, &catalog, label, cfg.billing.settings()?, args.customer.as_deref())
            .await?;
    match args.format {
        Format::Json => emit(serde_json::to_string_pretty(&report)?)?,
        Format::Table => {
            let mut t = Table::new();
            t.set_header(["subscription", "line", "invoiced qty", "rerated qty", "invoiced", "rerated", "delta", "currency"]);
            for d in &report.differences {
                let f = |x| Currency::from_code(&d.currency).map_or_else(|_| format!("{x}"), |c| c.format(x));
                let line = if d.meter.is_empty() { d.description.clone() } else { format!("{} [{}]", d.description, d.meter) };
                t.add_row(vec![
                    d.subscription_id.clone(),
                    line,
                    d.invoiced_quantity.normalize().to_string(),
                    d.rerated_quantity.normalize().to_string(),
                    f(d.invoiced_amount),
                    f(d.rerated_amount),
                    f(d.delta),
                    d.currency.clone(),
                ]);
            }
            for c in 2..=6 {
                if let Some(col) = t.column_mut(c) {
                    col.set_cell_alignment(CellAlignment::Right);
                }
            }
            if !report.differences.is_empty() {
                emit(t)?;
            }
            emit(format!(
                "period {label}: {} invoices unchanged, {} lines differ, {} subscriptions not invoiced{}",
                report.unchanged,
                report.differences.len(),
                report.not_invoiced.len(),
                if report.not_invoiced.is_empty() { String::new() } else { format!(" ({})", report.not_invoiced.join(", ")) }
            ))?;
        }
    }
    Ok(())
}
