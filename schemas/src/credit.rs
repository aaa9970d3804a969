//! Prepaid credits: grants of money to a customer, burned down by invoices.
//!
//! A grant (catalog `credit_grants:`) holds an amount in the customer's currency. It is usable
//! on the invoice of a period when `granted_at < period end ≤ expires_at` (no `expires_at`:
//! never expires), i.e. it existed before the period ended and had not expired by then. Grants
//! are burned in a fixed order: lower `priority` first, then earlier `expires_at` (never-expiring
//! last), then earlier `granted_at`, then id. The burn-down itself is in `meterline-invoicer`
//! (`credits.rs`); docs/PRICING.md has the full semantics.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::money::{Currency, exact};

/// A prepaid credit grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditGrant {
    /// Grant id, printed on every application.
    pub id: String,
    /// Customer key; the amount is in the customer's currency.
    pub customer: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Amount granted (> 0, at most the currency's minor-unit decimals).
    #[serde(with = "exact")]
    pub amount: Decimal,
    /// When the grant becomes usable.
    pub granted_at: DateTime<Utc>,
    /// The grant covers periods ending no later than this; never expires when absent.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Burn order: lower first (default 0).
    #[serde(default)]
    pub priority: u32,
}

impl CreditGrant {
    /// Whether the grant may pay the invoice of a period ending at `period_end`.
    pub fn usable_for(&self, period_end: DateTime<Utc>) -> bool {
        self.granted_at < period_end && self.expires_at.is_none_or(|e| period_end <= e)
    }

    /// The burn-down sort key: priority, expiry (none last), grant time, id.
    pub fn burn_order(&self) -> (u32, bool, Option<DateTime<Utc>>, DateTime<Utc>, &str) {
        (self.priority, self.expires_at.is_none(), self.expires_at, self.granted_at, &self.id)
    }

    /// Checks the entry on its own; `currency` is its customer's (when known).
    pub fn validate(&self, currency: Option<Currency>) -> Result<()> {
        let at = format!("credit_grants[{}]", self.id);
        crate::catalog::check_key(&format!("{at}.id"), &self.id)?;
        if self.amount <= Decimal::ZERO {
            return Err(Error::catalog(format!("{at}.amount"), format!("{} must be greater than 0", self.amount)));
        }
        if let Some(c) = currency
            && self.amount.normalize().scale() > c.minor_units()
        {
            return Err(Error::catalog(
                format!("{at}.amount"),
                format!("{} has more decimals than {c} allows ({})", self.amount, c.minor_units()),
            ));
        }
        if let Some(e) = self.expires_at
            && e <= self.granted_at
        {
            return Err(Error::catalog(format!("{at}.expires_at"), format!("{e} is not after granted_at {}", self.granted_at)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn grant() -> CreditGrant {
        CreditGrant {
            id: "g1".into(),
            customer: "a".into(),
            name: None,
            amount: Decimal::from(100),
            granted_at: t("2026-10-05T00:00:00Z"),
            expires_at: Some(t("2026-11-01T00:00:00Z")),
            priority: 0,
        }
    }

    #[test]
    fn usable_between_grant_and_expiry() {
        let g = grant();
        assert!(!g.usable_for(t("2026-10-01T00:00:00Z")), "granted after September ended");
        assert!(g.usable_for(t("2026-11-01T00:00:00Z")), "October ends exactly at expiry");
        assert!(!g.usable_for(t("2026-12-01T00:00:00Z")), "expired before November ended");
    }

    #[test]
    fn burn_order_is_priority_then_expiry_then_grant_time() {
        let g = |id: &str, prio: u32, exp: Option<&str>, at: &str| CreditGrant {
            id: id.into(),
            priority: prio,
            expires_at: exp.map(t),
            granted_at: t(at),
            ..grant()
        };
        let mut gs = [
            g("never", 1, None, "2026-01-01T00:00:00Z"),
            g("late-grant", 1, Some("2026-12-01T00:00:00Z"), "2026-10-10T00:00:00Z"),
            g("early-grant", 1, Some("2026-12-01T00:00:00Z"), "2026-10-01T00:00:00Z"),
            g("soon", 1, Some("2026-11-01T00:00:00Z"), "2026-10-20T00:00:00Z"),
            g("first", 0, None, "2026-10-25T00:00:00Z"),
        ];
        gs.sort_by(|a, b| a.burn_order().cmp(&b.burn_order()));
        let ids: Vec<&str> = gs.iter().map(|g| g.id.as_str()).collect();
        assert_eq!(ids, ["first", "soon", "early-grant", "late-grant", "never"]);
    }

    #[test]
    fn validation_names_entry_and_field() {
        let usd = Some(Currency::from_code("USD").unwrap());
        let mut g = grant();
        g.amount = Decimal::new(1005, 3);
        assert_eq!(g.validate(usd).unwrap_err().to_string(), "credit_grants[g1].amount: 1.005 has more decimals than USD allows (2)");
        assert!(g.validate(Some(Currency::from_code("KWD").unwrap())).is_ok());
        g.amount = Decimal::ZERO;
        assert_eq!(g.validate(usd).unwrap_err().to_string(), "credit_grants[g1].amount: 0 must be greater than 0");
        g.amount = Decimal::ONE;
        g.expires_at = Some(g.granted_at);
        assert!(g.validate(usd).unwrap_err().to_string().starts_with("credit_grants[g1].expires_at: 2026-10-05 00:00:00 UTC is not after"));
    }
}
