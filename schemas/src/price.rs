//! Price model definitions. Evaluation lives in `meterline-rater` (`tiers.rs`).
//!
//! Tier semantics (documented in docs/PRICING.md):
//! - A tier covers quantities in `(previous up_to, up_to]`; the first tier starts at 0; the
//!   last tier has `up_to: null` (unbounded). Bounds must strictly increase.
//! - **Graduated**: each part of the quantity is priced by the tier it falls in; a tier's
//!   `flat_fee` is charged once when the quantity enters the tier (quantity > its lower bound).
//! - **Volume**: the single tier containing the whole quantity prices every unit, plus its
//!   `flat_fee`. A quantity exactly on a bound belongs to the lower tier.
//! - **Package**: the quantity is sold in blocks of `size` units at `package_price` each; a
//!   partial block is rounded `up` (charged) or `down` (free).
//! - **Matrix**: the unit price depends on the meter's group-by values; each group's quantity is
//!   priced by the first entry whose `when` values all match, else by `default_unit_price`.
//! - **Percentage**: each event is charged `value × rate + fixed_fee`, raised to `min_fee` and
//!   lowered to `max_fee` when given; the line is the exact sum over the period's events.
//! - **Telecom**: each call record priced on its own against a rate table; one line per
//!   (prefix, band, price per minute), billed seconds summed before the one division by 60.
//! - Zero quantity costs nothing under every model.
//!
//! Modifiers on any price: `free_units` are subtracted from the quantity before the model sees
//! it (a free allowance; not with matrix prices), and `max_amount` caps the line's amount. A plan
//! version's `minimum_commitment` adds a true-up line when its usage lines sum to less.

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
    /// Blocks of `size` units at `package_price` each.
    Package {
        /// Units per block (> 0).
        #[serde(with = "exact")]
        size: Decimal,
        /// Price of one block.
        #[serde(with = "exact")]
        package_price: Decimal,
        /// Whether a partial block is charged (`up`) or free (`down`).
        round: PackageRounding,
    },
    /// A share of each event's value (payments, marketplace take rates).
    Percentage {
        /// Fraction of the value, `"0.029"` for 2.9%.
        #[serde(with = "exact")]
        rate: Decimal,
        /// Added per event.
        #[serde(default, with = "exact")]
        fixed_fee: Decimal,
        /// Lowest charge per event.
        #[serde(default, with = "exact::option")]
        min_fee: Option<Decimal>,
        /// Highest charge per event.
        #[serde(default, with = "exact::option")]
        max_fee: Option<Decimal>,
    },
    /// Each call record priced on its own against a rate table (`meterline_rater::telecom`):
    /// longest prefix, time band, increments, connect fee, minimum duration.
    Telecom {
        /// Key of the catalog's rate table.
        rate_table: String,
    },
    /// Unit price chosen by group-by values.
    Matrix {
        /// Entries, most specific first; the first match wins.
        entries: Vec<MatrixEntry>,
        /// Unit price for groups that match no entry.
        #[serde(with = "exact")]
        default_unit_price: Decimal,
    },
}

/// How a package price treats a partial block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackageRounding {
    /// A partial block is charged as a whole one.
    Up,
    /// A partial block is free.
    Down,
}

/// One cell of a matrix price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixEntry {
    /// Group-by values this entry applies to (every listed dimension must match).
    pub when: std::collections::BTreeMap<String, String>,
    /// Price per unit for matching groups.
    #[serde(with = "exact")]
    pub unit_price: Decimal,
}

impl PriceModel {
    /// The model's name as written in catalog files.
    pub fn name(&self) -> &'static str {
        match self {
            PriceModel::PerUnit { .. } => "per_unit",
            PriceModel::Graduated { .. } => "graduated",
            PriceModel::Volume { .. } => "volume",
            PriceModel::Package { .. } => "package",
            PriceModel::Matrix { .. } => "matrix",
            PriceModel::Percentage { .. } => "percentage",
            PriceModel::Telecom { .. } => "telecom",
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
    /// Units free of charge each period, subtracted before pricing.
    #[serde(default, with = "exact")]
    pub free_units: Decimal,
    /// Cap on the line's amount per period.
    #[serde(default, with = "exact::option")]
    pub max_amount: Option<Decimal>,
}
