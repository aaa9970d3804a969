//! `meterline price`: what a quantity of a meter costs under a plan, computed by the same two
//! functions invoices use: `meterline_rater::pricing::price_line` (free units, the model, the cap:
//! the exact amount and its tiers) and `meterline_schemas::money::round_line` (the one rounding
//! of a line).

use comfy_table::{CellAlignment, Table};

use meterline_schemas::catalog::{Catalog, CatalogFile, PlanVersion};
use meterline_schemas::money::{parse_decimal, round_line};

use crate::cli::{Format, PriceArgs};
use crate::config::Config;
use crate::connect;
use crate::output::emit;

pub async fn run(cfg: &Config, args: PriceArgs) -> anyhow::Result<()> {
    let catalog = match &args.catalog {
        Some(file) => CatalogFile::read(file)?.validate(&Catalog::default())?,
        None => {
            let (client, js) = connect::nats(cfg).await?;
            let c = connect::catalog(cfg, &js).await?.load().await?;
            client.flush().await?;
            c
        }
    };
    let plan = find_plan(&catalog, &args.plan)?;
    if let Some(event) = &args.event {
        return crate::commands::price_call::run(cfg, &catalog, plan, args.meter.as_deref(), event, args.format);
    }
    let (meter, quantity) = (args.meter.clone().unwrap_or_default(), args.quantity.clone().unwrap_or_default());
    let quantity = parse_decimal(&quantity).ok_or_else(|| anyhow::anyhow!("--quantity {quantity:?} is not a decimal number"))?;
    let price = plan.prices.iter().find(|p| p.meter == meter).ok_or_else(|| {
        let priced: Vec<&str> = plan.prices.iter().map(|p| p.meter.as_str()).collect();
        anyhow::anyhow!("plan {}@{} has no price for meter {meter:?}; it prices: {}", plan.plan, plan.version, priced.join(", "))
    })?;
    let mut dims = serde_json::Map::new();
    for g in &args.groups {
        let (k, v) = g.split_once('=').ok_or_else(|| anyhow::anyhow!("--group {g:?}: expected dimension=value"))?;
        dims.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
    }
    // The same canonical group key ingest stores (a JSON object ordered by dimension).
    let groups = if dims.is_empty() { Vec::new() } else { vec![(serde_json::Value::Object(dims).to_string(), quantity)] };
    if matches!(price.model, meterline_schemas::price::PriceModel::Matrix { .. }) && groups.is_empty() {
        anyhow::bail!(
            "meter {meter} has a matrix price on {}@{}: give its group-by values with --group dimension=value",
            plan.plan,
            plan.version
        );
    }
    if matches!(price.model, meterline_schemas::price::PriceModel::Telecom { .. }) {
        anyhow::bail!(
            "meter {meter} has a telecom price on {}@{}: rate one call record with --event '<CloudEvent JSON>'",
            plan.plan,
            plan.version
        );
    }
    let priced = meterline_rater::pricing::price_line(price, quantity, &groups)?;
    let rounding = cfg.billing.rounding;
    let amount = round_line(priced.amount, plan.currency, rounding);
    match args.format {
        Format::Json => emit(serde_json::to_string_pretty(&serde_json::json!({
            "plan": plan.plan, "plan_version": plan.version, "meter": meter, "model": price.model.name(),
            "quantity": quantity.to_string(), "currency": plan.currency.code(),
            "amount": plan.currency.format(amount), "amount_unrounded": priced.amount.to_string(),
            "rounding_mode": rounding.as_str(), "tiers": priced.tiers,
            "free_units": priced.free_units.to_string(), "capped_from": priced.capped_from.map(|c| c.to_string()),
        }))?)?,
        Format::Table => {
            let mut t = Table::new();
            t.set_header(["tier", "range", "units", "unit price", "flat fee", "amount"]);
            for c in &priced.tiers {
                let range = match (&c.group, c.packages, c.up_to) {
                    (Some(g), _, _) => format!("group {g}"),
                    (None, Some(n), _) => format!("{n} packages"),
                    (None, None, Some(u)) => format!("({}, {u}]", c.from),
                    (None, None, None) => format!("({}, ∞)", c.from),
                };
                t.add_row([
                    c.tier.to_string(),
                    range,
                    c.quantity.to_string(),
                    c.unit_price.to_string(),
                    c.flat_fee.to_string(),
                    c.amount.to_string(),
                ]);
            }
            for col in 2..=5 {
                if let Some(c) = t.column_mut(col) {
                    c.set_cell_alignment(CellAlignment::Right);
                }
            }
            emit(format!("{} units of {} on {}@{} ({}):", quantity, meter, plan.plan, plan.version, price.model.name()))?;
            emit(t)?;
            if !priced.free_units.is_zero() {
                emit(format!("free units: {} of the {quantity} were free", priced.free_units))?;
            }
            if let Some(c) = priced.capped_from {
                emit(format!("capped: {c} exceeds max_amount"))?;
            }
            emit(format!(
                "amount {} {} (exact {}, rounded {} to {} decimals)",
                plan.currency.format(amount),
                plan.currency,
                priced.amount,
                rounding.as_str(),
                plan.currency.minor_units()
            ))?;
        }
    }
    Ok(())
}

/// `key` picks the highest version, `key@n` version n.
pub(crate) fn find_plan<'a>(catalog: &'a Catalog, spec: &str) -> anyhow::Result<&'a PlanVersion> {
    let (key, version) = match spec.split_once('@') {
        Some((k, v)) => (k, Some(v.parse::<u32>().map_err(|_| anyhow::anyhow!("--plan {spec:?}: version {v:?} is not a number"))?)),
        None => (spec, None),
    };
    let mut versions = catalog.plans.values().filter(|p| p.plan == key);
    let found = match version {
        Some(v) => versions.find(|p| p.version == v),
        None => versions.max_by_key(|p| p.version),
    };
    found.ok_or_else(|| {
        let known: Vec<String> = catalog.plans.keys().map(|(k, v)| format!("{k}@{v}")).collect();
        anyhow::anyhow!("--plan {spec:?} is not in the catalog; known: {}", known.join(", "))
    })
}
