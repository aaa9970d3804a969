//! `meterline catalog apply|show`.

use comfy_table::Table;

use meterline_schemas::catalog::{Catalog, CatalogFile};

use crate::cli::{CatalogCommand, Format};
use crate::config::Config;
use crate::connect;

pub async fn run(cfg: &Config, cmd: CatalogCommand) -> anyhow::Result<()> {
    let (client, js) = connect::nats(cfg).await?;
    let store = connect::catalog(cfg, &js).await?;
    match cmd {
        CatalogCommand::Apply { file, dry_run } => {
            let parsed = CatalogFile::read(&file)?;
            if dry_run {
                let stored = store.load().await?;
                let c = parsed.validate(&stored)?;
                crate::output::emit(format!("{}: valid ({})", file.display(), counts(&c)))?;
            } else {
                let summary = store.apply(&parsed).await?;
                let fmt = |m: &std::collections::BTreeMap<&str, usize>| {
                    m.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>().join(", ")
                };
                crate::output::emit(format!(
                    "{}: applied; written: [{}], unchanged: [{}]",
                    file.display(),
                    fmt(&summary.written),
                    fmt(&summary.unchanged)
                ))?;
            }
        }
        CatalogCommand::Show { format } => {
            let c = store.load().await?;
            match format {
                Format::Json => crate::output::emit(serde_json::to_string_pretty(&catalog_json(&c))?)?,
                Format::Table => print_tables(&c)?,
            }
        }
    }
    client.flush().await?;
    Ok(())
}

fn counts(c: &Catalog) -> String {
    format!(
        "{} meters, {} plan versions, {} customers, {} subscriptions, {} tax rates, {} coupons, {} credit grants, {} rate tables, {} fx rates",
        c.meters.len(),
        c.plans.len(),
        c.customers.len(),
        c.subscriptions.len(),
        c.tax_rates.len(),
        c.coupons.len(),
        c.credit_grants.len(),
        c.rate_tables.len(),
        c.fx_rates.len()
    )
}

fn catalog_json(c: &Catalog) -> serde_json::Value {
    serde_json::json!({
        "meters": c.meters.values().collect::<Vec<_>>(),
        "tax_rates": c.tax_rates.values().collect::<Vec<_>>(),
        "plans": c.plans.values().collect::<Vec<_>>(),
        "customers": c.customers.values().collect::<Vec<_>>(),
        "subscriptions": c.subscriptions.values().collect::<Vec<_>>(),
        "coupons": c.coupons.values().collect::<Vec<_>>(),
        "credit_grants": c.credit_grants.values().collect::<Vec<_>>(),
        "rate_tables": c.rate_tables.values().collect::<Vec<_>>(),
        "fx_rates": c.fx_rates.values().collect::<Vec<_>>(),
    })
}

fn print_tables(c: &Catalog) -> anyhow::Result<()> {
    let mut t = Table::new();
    t.set_header(["meter", "event type", "aggregation", "value", "group by"]);
    for m in c.meters.values() {
        t.add_row([
            m.key.clone(),
            m.event_type.clone(),
            m.aggregation.to_string(),
            m.value.clone().unwrap_or_default(),
            m.group_by.keys().cloned().collect::<Vec<_>>().join(","),
        ]);
    }
    crate::output::emit(format!("{t}"))?;
    let mut t = Table::new();
    t.set_header(["plan", "version", "currency", "recurring fee", "seat price", "billing", "prices"]);
    for p in c.plans.values() {
        let prices = p.prices.iter().map(|x| format!("{}:{}", x.meter, x.model.name())).collect::<Vec<_>>().join(", ");
        t.add_row([
            p.plan.clone(),
            p.version.to_string(),
            p.currency.to_string(),
            p.recurring_fee.map(|f| f.to_string()).unwrap_or_default(),
            p.seat_price.map(|f| f.to_string()).unwrap_or_default(),
            p.billing.as_str().to_owned(),
            prices,
        ]);
    }
    crate::output::emit(format!("{t}"))?;
    let mut t = Table::new();
    t.set_header(["jurisdiction", "name", "rate", "from", "to"]);
    for r in c.tax_rates.values() {
        let day = |d: Option<chrono::NaiveDate>| d.map_or_else(|| "-".to_owned(), |d| d.to_string());
        t.add_row([r.jurisdiction.clone(), r.name.clone(), r.rate.to_string(), day(r.from), day(r.to)]);
    }
    crate::output::emit(format!("{t}"))?;
    crate::output::emit(counts(c))?;
    Ok(())
}
