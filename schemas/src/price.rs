//! Price model definitions. Evaluation lives in `meterline-rater` (`tiers.rs`).
//!
//! Tier semantics (documented in docs/PRICING.md):
//! - A tier covers quantities in `(previous up_to, up_to]`; the first tier starts at 0; the
//!   last tier has `up_to: null` (unbounded). Bounds must strictly increase.
//! - **Graduated**: each part of the quantity is priced by the tier it falls in; a tier's
//!   `flat_fee` is charged once when the quantity enters the tier (quantity > its lower bound).
//! - **Volume**: the single tier containing the whole quantity prices every unit, plus its
//!   `flat_fee`. A quantity exactly on a bound belongs to the lower tier.
//! - Zero quantity costs nothing under every model.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::money::exact;

/// One tier of a graduated or volume price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Inclusive upper bound of the tier; `None` for the last, unbounded tier.
    #[serde(default, with = "exact::option")]
    pub up_to: Option<Decimal>,
    /// Price per unit inside the tier.
    #[serde(with = "exact")]
    pub unit_price: Decimal,
    /// Fee charged once when the quantity reaches into the tier.
    #[serde(default, with = "exact")]
    pub flat_fee: Decimal,
}

/// A price model for one meter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum PriceModel {
    /// `quantity × unit_price`.
    PerUnit {
        /// Price per unit.
        #[serde(with = "exact")]
        unit_price: Decimal,
    },
    /// Each slice of the quantity priced by its own tier.
    Graduated {
        /// Tiers in increasing order.
        tiers: Vec<Tier>,
    },
    /// All units priced by the tier the total falls in.
    Volume {
        /// Tiers in increasing order.
        tiers: Vec<Tier>,
    },
}

impl PriceModel {
    /// The model's name as written in catalog files.
    pub fn name(&self) -> &'static str {
        match self {
            PriceModel::PerUnit { .. } => "per_unit",
            PriceModel::Graduated { .. } => "graduated",
            PriceModel::Volume { .. } => "volume",
        }
    }
}

/// The price of one meter inside a plan version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    /// Meter key.
    pub meter: String,
    /// How usage of the meter is priced.
    pub model: PriceModel,
}
