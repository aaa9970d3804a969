//! The load-test catalog: one meter per event type of the mix (so one valid event is one ledger
//! row), one USD plan with per-unit prices, `n` customers each subscribed from the period start.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use meterline_schemas::catalog::{
    Alignment, Catalog, CatalogFile, Customer, Cycle, PlanSpec, PlanVersionSpec, PriceSpec, Subscription, TaxRate,
};
use meterline_schemas::meter::{Aggregation, Meter};

use crate::error::{Error, Result};
use crate::mix::customer_key;

fn meter(key: &str, event_type: &str, aggregation: Aggregation, value: Option<&str>, group: Option<(&str, &str)>) -> Meter {
    Meter {
        key: key.into(),
        name: None,
        event_type: event_type.into(),
        aggregation,
        value: value.map(Into::into),
        group_by: group.map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).into_iter().collect::<BTreeMap<_, _>>(),
    }
}

fn per_unit(meter: &str, price: Decimal) -> PriceSpec {
    PriceSpec { meter: meter.into(), model: "per_unit".into(), unit_price: Some(price), ..Default::default() }
}

/// The catalog for `customers` customers subscribed from `period_start`.
pub fn build(customers: u32, period_start: DateTime<Utc>) -> Result<Catalog> {
    let file = CatalogFile {
        meters: vec![
            meter("api_calls", "api.request", Aggregation::Count, None, Some(("endpoint", "endpoint"))),
            meter("llm_tokens", "llm.completion", Aggregation::Sum, Some("tokens"), Some(("model", "model"))),
            meter("storage_gb_hours", "storage.usage", Aggregation::Sum, Some("gb_hours"), Some(("region", "region"))),
            meter("call_seconds", "telecom.call", Aggregation::Sum, Some("duration_seconds"), Some(("country", "dest_country"))),
        ],
        tax_rates: vec![TaxRate {
            jurisdiction: "US-OR".into(),
            country: None,
            region: None,
            name: "no sales tax".into(),
            rate: Decimal::ZERO,
            from: None,
            to: None,
        }],
        plans: vec![PlanSpec {
            key: "lt-plan".into(),
            name: Some("Load test".into()),
            versions: vec![PlanVersionSpec {
                version: 1,
                currency: "USD".into(),
                recurring_fee: Some(Decimal::from(10)),
                prices: vec![
                    per_unit("api_calls", Decimal::new(4, 4)),
                    per_unit("llm_tokens", Decimal::new(2, 6)),
                    per_unit("storage_gb_hours", Decimal::new(12, 5)),
                    per_unit("call_seconds", Decimal::new(15, 4)),
                ],
                ..Default::default()
            }],
        }],
        customers: (0..customers)
            .map(|n| Customer {
                key: customer_key(n),
                name: format!("Load test customer {n}"),
                currency: "USD".into(),
                jurisdiction: "US-OR".into(),
                locale: "en-US".into(),
                country: None,
                region: None,
                vat_id: None,
                tax_exempt: false,
                tax_exempt_reason: None,
                payment_terms_days: None,
            })
            .collect(),
        subscriptions: (0..customers)
            .map(|n| Subscription {
                id: format!("lt-sub-{n:05}"),
                customer: customer_key(n),
                plan: "lt-plan".into(),
                plan_version: 1,
                start: period_start,
                end: None,
                cycle: Cycle::Monthly,
                alignment: Alignment::Calendar,
                anchor_day: Some(1),
                anchor_month: None,
                seats: None,
                seat_changes: Vec::new(),
                coupons: Vec::new(),
            })
            .collect(),
        coupons: Vec::new(),
        credit_grants: Vec::new(),
        ..Default::default()
    };
    file.validate(&Catalog::default()).map_err(|e| Error::Setup(format!("load-test catalog: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn every_event_type_has_exactly_one_meter() {
        let start = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().expect("valid time");
        let c = build(3, start).expect("valid catalog");
        let by_type = c.meters_by_event_type();
        assert_eq!(by_type.len(), 4);
        assert!(by_type.values().all(|m| m.len() == 1));
        assert_eq!(c.subscriptions.len(), 3);
    }
}
