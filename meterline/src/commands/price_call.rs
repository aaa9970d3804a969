//! `meterline price --event <json>`: one call record rated against a plan's telecom price by the
//! code the close uses: ingest's validator (CloudEvent, meter value), `telecom::parse_call`
//! (destination, duration, answer time), `telecom::rate_call` (prefix, band, increments),
//! `calls::sum_calls` (the line of one call) and `money::round_line` (the one rounding).

use anyhow::Context as _;
use comfy_table::Table;

use meterline_ingest::validate::Validator;
use meterline_rater::calls::sum_calls;
use meterline_rater::telecom::{parse_call, rate_call};
use meterline_schemas::catalog::{Catalog, PlanVersion};
use meterline_schemas::money::round_line;
use meterline_schemas::price::PriceModel;

use crate::cli::Format;
use crate::config::Config;
use crate::output::emit;

pub fn run(cfg: &Config, catalog: &Catalog, plan: &PlanVersion, meter: Option<&str>, event: &str, format: Format) -> anyhow::Result<()> {
    let text = match event.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("--event @{path}"))?,
        None => event.to_owned(),
    };
    let (mut accepted, mut refused) = (Vec::new(), Vec::new());
    Validator::new(catalog.meters_by_event_type()).check(text.as_bytes(), &mut accepted, &mut refused);
    if let Some(r) = refused.first() {
        anyhow::bail!("--event is not a valid usage event: {}", r.error);
    }
    let [a] = accepted.as_slice() else { anyhow::bail!("--event must hold exactly one CloudEvent, it holds {}", accepted.len()) };
    let telecom = |key: &str| {
        plan.prices.iter().find_map(|p| match &p.model {
            PriceModel::Telecom { rate_table } if p.meter == key => Some(rate_table.clone()),
            _ => None,
        })
    };
    let candidates: Vec<(&String, String)> = a
        .values
        .iter()
        .filter(|(m, _)| meter.is_none_or(|want| want == m.as_str()))
        .filter_map(|(m, _)| telecom(m).map(|t| (m, t)))
        .collect();
    let Some((meter, table_key)) = candidates.first() else {
        anyhow::bail!(
            "plan {}@{} has no telecom price for {} of event type {:?}",
            plan.plan,
            plan.version,
            meter.map_or_else(|| "a meter".to_owned(), |m| format!("meter {m:?}")),
            a.event.event_type
        );
    };
    let value = a.values.iter().find(|(m, _)| m == *meter).and_then(|(_, v)| v.value).unwrap_or_default();
    let table = catalog.rate_tables.get(table_key).with_context(|| format!("rate table {table_key} is not in the catalog"))?;
    let record = parse_call(&a.event.id, a.event.time, value, a.event.data.get()).map_err(|e| {
        let path = catalog.meters.get(meter.as_str()).and_then(|m| m.value.as_deref()).unwrap_or_default();
        anyhow::anyhow!("{}: {} {}", e.event_field(path), e.value, e.reason)
    })?;
    let call = rate_call(table, &record)?;
    let rate = table.rates.iter().find(|r| r.prefix == call.matched_prefix).context("the matched rate is in the table")?;
    let line = sum_calls(std::slice::from_ref(&call))?.into_iter().next().context("one call makes one line")?;
    let rounding = cfg.billing.rounding;
    let amount = round_line(line.amount, plan.currency, rounding);
    let cur = plan.currency;
    match format {
        Format::Json => emit(serde_json::to_string_pretty(&serde_json::json!({
            "plan": plan.plan, "plan_version": plan.version, "meter": meter, "rate_table": table.key,
            "event_id": record.id, "destination": record.destination,
            "answered_at": record.start.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            "matched_prefix": call.matched_prefix, "description": call.description, "band": call.band,
            "price_per_minute": call.price_per_minute.to_string(),
            "duration_secs": call.duration_secs, "min_duration_secs": rate.min_duration_secs,
            "increments": { "first": rate.increments.first, "next": rate.increments.next },
            "billed_secs": call.billed_secs, "connect_fee": call.connect_fee.to_string(),
            "usage_amount": line.usage_amount.to_string(), "amount_unrounded": line.amount.to_string(),
            "amount": cur.format(amount), "currency": cur.code(), "rounding_mode": rounding.as_str(),
        }))?)?,
        Format::Table => {
            let prefix = if call.matched_prefix.is_empty() { "\"\" (catch-all)".to_owned() } else { call.matched_prefix.clone() };
            let mut t = Table::new();
            t.set_header(["field", "value"]);
            t.add_row(["destination".to_owned(), record.destination.clone()]);
            t.add_row(["matched prefix".to_owned(), format!("{prefix} ({})", call.description)]);
            t.add_row(["band".to_owned(), format!("{} at {}/min", call.band, call.price_per_minute)]);
            t.add_row(["answered at".to_owned(), record.start.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)]);
            t.add_row([
                "increments".to_owned(),
                format!("{}/{}, minimum {} s", rate.increments.first, rate.increments.next, rate.min_duration_secs),
            ]);
            t.add_row(["duration".to_owned(), format!("{} s", call.duration_secs)]);
            t.add_row(["billed".to_owned(), format!("{} s", call.billed_secs)]);
            t.add_row(["usage".to_owned(), format!("{} x {} / 60 = {}", call.billed_secs, call.price_per_minute, line.usage_amount)]);
            t.add_row(["connect fee".to_owned(), call.connect_fee.to_string()]);
            emit(format!("call {} on {}@{} ({meter}, rate table {}):", record.id, plan.plan, plan.version, table.key))?;
            emit(t)?;
            emit(format!(
                "amount {} {} (exact {}, rounded {} to {} decimals)",
                cur.format(amount),
                cur,
                line.amount,
                rounding.as_str(),
                cur.minor_units()
            ))?;
        }
    }
    Ok(())
}
