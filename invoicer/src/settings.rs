//! The invoicer's settings (`[billing]` in `meterline.toml`): one struct for the line rounding,
//! the tax step (helper/tax) and the invoice lifecycle (grace window, number series,
//! adjustments, payment terms). [`crate::lifecycle::Billing`] carries it next to the services the lifecycle
//! writes to; the pure invoice build takes it alone (`build_invoices(…, impl Into<Settings>, …)`).

use std::sync::Arc;

use meterline_schemas::money::{Currency, RoundingMode};
use meterline_schemas::tax::TaxRounding;

use crate::numbering::Series;
use crate::tax::TaxProvider;

/// Every billing setting. A bare [`RoundingMode`] converts into the defaults otherwise
/// ([`Settings::default`]): per-invoice tax rounding, no seller country (so no reverse charge), no
/// reporting currency, the built-in tax engine, 72 grace hours, `INV-{year}-{seq:06}` and
/// `CN-{year}-{seq:06}` numbers of issuer `meterline`, 3 adjustment periods, net-30 payment terms.
#[derive(Clone)]
pub struct Settings {
    /// Line rounding mode.
    pub rounding: RoundingMode,
    /// Tax rounding per tax line or per invoice line.
    pub tax_rounding: TaxRounding,
    /// The seller's country (ISO alpha-2); reverse charge needs it.
    pub seller_country: Option<String>,
    /// Currency of the invoices' `*_base` reporting columns.
    pub reporting_currency: Option<Currency>,
    /// An external tax provider instead of the built-in engine.
    pub provider: Option<Arc<dyn TaxProvider>>,
    /// Grace window after a period's end: late usage until then refreshes the draft.
    pub grace: chrono::Duration,
    /// Invoice numbers.
    pub invoice_series: Series,
    /// Credit note numbers.
    pub credit_note_series: Series,
    /// Earlier cycles of each subscription (months, quarters or years) re-rated for adjustments
    /// by every close.
    pub adjustment_periods: u32,
    /// Payment terms in days (net-N): an invoice falls due this many days after the day it is
    /// issued, unless its customer has `payment_terms_days` of its own (`crate::terms`).
    pub payment_terms_days: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            rounding: RoundingMode::default(),
            tax_rounding: TaxRounding::default(),
            seller_country: None,
            reporting_currency: None,
            provider: None,
            grace: chrono::Duration::hours(72),
            invoice_series: Series::new("meterline", "inv", "INV-{year}-{seq:06}").expect("the default invoice number format is valid"),
            credit_note_series: Series::new("meterline", "cn", "CN-{year}-{seq:06}")
                .expect("the default credit note number format is valid"),
            adjustment_periods: 3,
            payment_terms_days: 30,
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("rounding", &self.rounding)
            .field("tax_rounding", &self.tax_rounding)
            .field("seller_country", &self.seller_country)
            .field("reporting_currency", &self.reporting_currency)
            .field("provider", &self.provider.as_ref().map(|p| p.name().to_owned()))
            .field("grace", &self.grace)
            .field("invoice_series", &self.invoice_series)
            .field("credit_note_series", &self.credit_note_series)
            .field("adjustment_periods", &self.adjustment_periods)
            .field("payment_terms_days", &self.payment_terms_days)
            .finish()
    }
}

impl From<RoundingMode> for Settings {
    fn from(rounding: RoundingMode) -> Self {
        Settings { rounding, ..Default::default() }
    }
}

impl From<&Settings> for Settings {
    fn from(s: &Settings) -> Self {
        s.clone()
    }
}
