//! Rated call records of telecom prices → ClickHouse `rated_calls` (migration 0008).
//!
//! Idempotent like the invoice writer: before inserting, the writer reads which subscriptions
//! of the period already have rows and inserts only the others, all rows of one subscription in
//! one `INSERT` (one block, written entirely or not at all). The rows are computed from the
//! ledger and the catalog alone, so a second close computes the same rows and skips them. The
//! close writes them before the invoices, so a stored invoice header implies its calls are
//! stored too.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};

use meterline_rater::RatedSubscription;
use meterline_schemas::clickhouse::ClickHouse;
use meterline_schemas::invoice::RatedCallRow;
use meterline_schemas::period::PeriodLabel;

use crate::error::Result;
use crate::writer::insert_all;

fn secs(t: DateTime<Utc>) -> u32 {
    u32::try_from(t.timestamp()).unwrap_or(u32::MAX)
}

/// The `rated_calls` rows of a period, grouped by subscription, in time order.
pub fn rated_call_rows(rated: &[RatedSubscription], label: PeriodLabel) -> BTreeMap<String, Vec<RatedCallRow>> {
    let period = label.to_string();
    let mut out: BTreeMap<String, Vec<RatedCallRow>> = BTreeMap::new();
    for r in rated {
        for t in r.usage.iter().filter_map(|u| u.telecom.as_ref()) {
            for c in &t.calls {
                out.entry(r.subscription.id.clone()).or_default().push(RatedCallRow {
                    period: period.clone(),
                    period_start: secs(r.window.period_start),
                    subscription_id: c.subscription.clone(),
                    customer: c.customer.clone(),
                    meter: c.meter.clone(),
                    rate_table: c.rate_table.clone(),
                    event_id: c.event_id.clone(),
                    source: c.source.clone(),
                    event_time: secs(c.event_time),
                    answered_at: secs(c.answered_at),
                    destination: c.destination.clone(),
                    matched_prefix: c.call.matched_prefix.clone(),
                    description: c.call.description.clone(),
                    band: c.call.band.clone(),
                    duration_secs: c.call.duration_secs,
                    billed_secs: c.call.billed_secs,
                    price_per_minute: c.call.price_per_minute,
                    connect_fee: c.call.connect_fee,
                    amount: c.call.amount.normalize().to_string(),
                    currency: c.call.currency.code().to_owned(),
                    segment: c.segment.clone(),
                    version: 1,
                });
            }
        }
    }
    out
}

/// What [`write_rated_calls`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RatedCallsWritten {
    /// Rows inserted now.
    pub inserted: usize,
    /// Subscriptions whose rows were already stored (skipped).
    pub already_stored: usize,
}

/// Inserts the rows of every subscription that has none stored for `period` yet.
pub async fn write_rated_calls(ch: &ClickHouse, period: &str, rows: &BTreeMap<String, Vec<RatedCallRow>>) -> Result<RatedCallsWritten> {
    let mut done = RatedCallsWritten::default();
    if rows.values().all(Vec::is_empty) {
        return Ok(done);
    }
    let c = ch.client();
    let stored: HashSet<String> = c
        .query("SELECT DISTINCT subscription_id FROM rated_calls WHERE period = ?")
        .bind(period)
        .fetch_all::<String>()
        .await?
        .into_iter()
        .collect();
    for (subscription, calls) in rows {
        if stored.contains(subscription) {
            done.already_stored += 1;
            continue;
        }
        let refs: Vec<&RatedCallRow> = calls.iter().collect();
        insert_all(c, "rated_calls", &refs).await?;
        done.inserted += refs.len();
    }
    Ok(done)
}
