//! Rated call records of telecom prices → ClickHouse `rated_calls` (migration 0008).
//!
//! Idempotent like the invoice writer: before inserting, the writer reads which calls
//! (subscription, source, event id) of the period are stored and inserts only the others, the
//! new rows of one subscription in one `INSERT` (one block, written entirely or not at all). The
//! rows are computed from the ledger and the catalog alone, so a second close computes the same
//! rows and skips them; a close within the grace window that refreshes a draft with late calls
//! adds just those calls. The close writes them before the invoices, so a stored invoice header
//! (of any lines version) implies its calls are stored too. Late calls of an already finalized
//! period are billed as adjustments on a later invoice and are not added to that period's rows.

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
    /// Subscriptions whose rows were all stored already (nothing inserted for them).
    pub already_stored: usize,
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct StoredCall {
    subscription_id: String,
    source: String,
    event_id: String,
}

/// Inserts the rows of `period` not stored yet, keyed by (subscription, source, event id): all
/// of a subscription's rows the first time, and on later closes only the calls that arrived
/// since (late calls within the grace window, which also refresh the draft invoice). One insert
/// per subscription; a repeated close inserts nothing, so no duplicates even without FINAL.
pub async fn write_rated_calls(ch: &ClickHouse, period: &str, rows: &BTreeMap<String, Vec<RatedCallRow>>) -> Result<RatedCallsWritten> {
    let mut done = RatedCallsWritten::default();
    if rows.values().all(Vec::is_empty) {
        return Ok(done);
    }
    let c = ch.client();
    let stored: HashSet<(String, String, String)> = c
        .query("SELECT DISTINCT subscription_id, source, event_id FROM rated_calls WHERE period = ?")
        .bind(period)
        .fetch_all::<StoredCall>()
        .await?
        .into_iter()
        .map(|r| (r.subscription_id, r.source, r.event_id))
        .collect();
    for (subscription, calls) in rows {
        let missing: Vec<&RatedCallRow> =
            calls.iter().filter(|r| !stored.contains(&(r.subscription_id.clone(), r.source.clone(), r.event_id.clone()))).collect();
        if missing.is_empty() {
            if !calls.is_empty() {
                done.already_stored += 1;
            }
            continue;
        }
        tracing::debug!(subscription = %subscription, rows = missing.len(), "rated calls inserted");
        insert_all(c, "rated_calls", &missing).await?;
        done.inserted += missing.len();
    }
    Ok(done)
}
