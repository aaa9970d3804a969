//! Prepaid credits: burning a customer's grants down against the amount due, across periods.
//!
//! Credits are applied **after tax**, to the amount due (`subtotal + tax`), like a payment from
//! a balance the customer already holds: tax is due on the full value of what was supplied, so
//! the tax line is computed before any credit and does not shrink with it. (Free promotional
//! value that should lower the taxable amount is a coupon: discounts come before tax.)
//!
//! Burn-down, for each invoice in subscription-id order (a customer's invoices of one close
//! share its grants):
//! 1. the grants of the invoice's customer usable for its period (`granted_at < period end ≤
//!    expires_at`), in burn order: lower `priority`, earlier `expires_at` (never-expiring last),
//!    earlier `granted_at`, id;
//! 2. each grant pays `min(its balance, what is still due)`; one line per grant that paid
//!    something, with the amount applied (negative line) and the balance left. Amounts are on
//!    the currency's grid (grants are validated to its minor units), so nothing is rounded.
//!
//! A grant's balance is its amount minus everything applied on invoices of **earlier periods**
//! ([`CreditUsage`]) and on the invoices before it in the same close. The earlier applications
//! are read back from the stored credit lines of earlier periods' invoices (`invoice_lines`,
//! kind `credit`, with a header), so balances carry across periods while the close itself
//! stays a function of (ledger, catalog, period, stored earlier invoices): closing a period
//! again reads the same earlier lines and produces the same lines. Periods must be closed in
//! order: an earlier period closed later does not change an invoice already stored.

use std::collections::BTreeMap;

use clickhouse::Row;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::json;

use meterline_rater::RatedSubscription;
use meterline_schemas::catalog::Catalog;
use meterline_schemas::clickhouse::ClickHouse;
use meterline_schemas::credit::CreditGrant;
use meterline_schemas::invoice::{InvoiceLineRow, LineKind};
use meterline_schemas::money::Currency;
use meterline_schemas::period::PeriodLabel;

use crate::build::Charge;
use crate::error::{Error, Result};

/// How much of each grant earlier invoices used, by grant id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreditUsage {
    used: BTreeMap<String, Decimal>,
}

#[derive(Row, Deserialize)]
struct StoredCredit {
    breakdown: String,
}

impl CreditUsage {
    /// Nothing used yet.
    pub fn none() -> Self {
        Self::default()
    }

    /// The amount of `grant` used so far.
    pub fn used(&self, grant: &str) -> Decimal {
        self.used.get(grant).copied().unwrap_or_default()
    }

    /// Records `amount` of `grant` as used.
    pub fn record(&mut self, grant: &str, amount: Decimal) {
        *self.used.entry(grant.to_owned()).or_default() += amount;
    }

    /// Adds the applications recorded in credit lines (other lines are ignored).
    pub fn add_lines<'a>(&mut self, lines: impl IntoIterator<Item = &'a InvoiceLineRow>) -> Result<()> {
        for l in lines.into_iter().filter(|l| l.kind == LineKind::Credit as i8) {
            self.add_breakdown(&l.breakdown)?;
        }
        Ok(())
    }

    fn add_breakdown(&mut self, breakdown: &str) -> Result<()> {
        let b: serde_json::Value = serde_json::from_str(breakdown)?;
        let grant = b["grant"].as_str().ok_or_else(|| Error::Catalog(format!("credit line without a grant: {breakdown}")))?;
        let applied = b["applied"]
            .as_str()
            .and_then(|a| Decimal::from_str_exact(a).ok())
            .ok_or_else(|| Error::Catalog(format!("credit line without an exact applied amount: {breakdown}")))?;
        self.record(grant, applied);
        Ok(())
    }

    /// What invoices of periods before `label` applied, from ClickHouse (complete invoices only:
    /// lines whose header is written, and only each invoice's current lines version, since a
    /// refreshed draft leaves its earlier lines behind). Skips the query when the catalog has no grants.
    pub async fn load_before(ch: &ClickHouse, catalog: &Catalog, label: PeriodLabel) -> Result<CreditUsage> {
        let mut usage = CreditUsage::none();
        if catalog.credit_grants.is_empty() {
            return Ok(usage);
        }
        let rows: Vec<StoredCredit> = ch
            .client()
            .query(
                "SELECT breakdown FROM invoice_lines FINAL WHERE kind = 'credit' AND period < ? \
                 AND (invoice_id, version) IN (SELECT invoice_id, lines_version FROM invoices_current WHERE period < ?)",
            )
            .bind(label.to_string())
            .bind(label.to_string())
            .fetch_all()
            .await?;
        for r in rows {
            usage.add_breakdown(&r.breakdown)?;
        }
        Ok(usage)
    }
}

/// Credit lines paying `due` on `r`'s invoice, recording what they use in `usage`.
pub(crate) fn apply_credits(
    r: &RatedSubscription,
    catalog: &Catalog,
    due: Decimal,
    currency: Currency,
    usage: &mut CreditUsage,
) -> Vec<Charge> {
    let period_end = r.window.period_end;
    let mut grants: Vec<&CreditGrant> =
        catalog.credit_grants.values().filter(|g| g.customer == r.customer.key && g.usable_for(period_end)).collect();
    grants.sort_by(|a, b| a.burn_order().cmp(&b.burn_order()));
    let mut out = Vec::new();
    let mut left = due;
    for g in grants {
        if left <= Decimal::ZERO {
            break;
        }
        let balance = g.amount - usage.used(&g.id);
        if balance <= Decimal::ZERO {
            continue;
        }
        let applied = balance.min(left);
        left -= applied;
        usage.record(&g.id, applied);
        let remaining = balance - applied;
        let breakdown = json!({
            "grant": g.id,
            "granted_at": g.granted_at.to_rfc3339(),
            "expires_at": g.expires_at.map(|e| e.to_rfc3339()),
            "priority": g.priority,
            "amount_due": currency.format(applied + left),
            "balance_before": currency.format(balance),
            "applied": currency.format(applied),
            "remaining": currency.format(remaining),
        });
        let name = g.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
        let desc = format!("Prepaid credit {}{name}: {} applied, {} remaining", g.id, currency.format(applied), currency.format(remaining));
        out.push(Charge::new(LineKind::Credit, desc, balance, "credit", -applied, breakdown));
    }
    out
}
