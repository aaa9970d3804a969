//! Layered configuration.
//!
//! Layers, lowest priority first:
//! 1. embedded defaults ([`Config::default`], the same values as `deploy/examples/meterline.toml`);
//! 2. the file: `--config <path>`, else `meterline.toml` in the working directory if present;
//! 3. environment variables `METERLINE__<SECTION>__<KEY>`, e.g. `METERLINE__NATS__URL`;
//! 4. command-line flags of the subcommand.
//!
//! Unknown keys are errors, and [`Config::validate`] checks values before anything starts.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use meterline_ingest::http::HttpConfig;
use meterline_ingest::{IngestConfig, LedgerConfig, MirrorConfig};
use meterline_invoicer::render::{Branding, RenderConfig};
use meterline_schemas::clickhouse::{ClickHouseConfig, Secret};
use meterline_schemas::money::{Currency, RoundingMode};
use meterline_schemas::tax::TaxRounding;

/// All settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// NATS connection.
    pub nats: NatsConfig,
    /// ClickHouse connection.
    pub clickhouse: ClickHouseConfig,
    /// Ledger location.
    pub ledger: LedgerConfig,
    /// Ingest streams and batching.
    pub ingest: IngestConfig,
    /// Catalog buckets.
    pub catalog: CatalogConfig,
    /// Billing rules.
    pub billing: BillingConfig,
    /// HTTP ingest endpoint (`meterline serve`).
    pub http: HttpConfig,
    /// ClickHouse mirror of the ledger (`meterline mirror`, and inside `meterline ingest`).
    pub mirror: MirrorConfig,
    /// Issuer, logo, colours and footer of invoice documents.
    pub branding: Branding,
    /// Invoice documents: template, the Chromium used for PDF.
    pub render: RenderConfig,
}

/// `[nats]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL(s), comma-separated.
    pub url: String,
    /// Optional `.creds` file (JWT + NKey) for authentication.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
}

/// `[catalog]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// Prefix of the key-value bucket names.
    pub bucket_prefix: String,
}

/// `[billing]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillingConfig {
    /// Line rounding mode: `half_even`, `half_up`, `up` or `down`.
    pub rounding: RoundingMode,
    /// Hours after a period's end during which its invoices stay drafts (late usage refreshes them).
    pub grace_hours: u32,
    /// Issuer of invoice and credit-note numbers: one gapless series per issuer.
    pub issuer: String,
    /// Invoice number format: `{year}` (year of finalization) and `{seq}` or `{seq:0N}`.
    pub number_format: String,
    /// Credit note number format, same placeholders.
    pub credit_note_format: String,
    /// Earlier cycles of each subscription (months, quarters or years) re-rated by each close for
    /// late-usage adjustments.
    pub adjustment_periods: u32,
    /// JetStream stream of billing events.
    pub events_stream: String,
    /// Subject prefix of billing events: `<prefix>.invoice.finalized`, ….
    pub events_subject_prefix: String,
    /// Tax rounding: `per_invoice` (one rounding per tax line) or `per_line` (each line's tax
    /// rounded, then summed). docs/TAX.md.
    pub tax_rounding: TaxRounding,
    /// The seller's country (ISO 3166 alpha-2, e.g. `DE`); empty: unknown, and EU reverse charge
    /// never applies.
    pub seller_country: String,
    /// Currency of the invoices' `*_base` reporting columns (ISO 4217); empty: none.
    pub reporting_currency: String,
    /// Payment terms in days (net-N): invoices fall due this many days after the day they are
    /// finalized; a catalog customer's `payment_terms_days` overrides it. 0: due on issue.
    pub payment_terms_days: u32,
}

impl BillingConfig {
    /// The invoicer's settings.
    pub fn settings(&self) -> anyhow::Result<meterline_invoicer::Settings> {
        use meterline_invoicer::numbering::Series;
        let reporting_currency = match self.reporting_currency.as_str() {
            "" => None,
            code => Some(Currency::from_code(code).map_err(|e| anyhow::anyhow!("billing.reporting_currency = {code:?}: {e}"))?),
        };
        let seller_country = (!self.seller_country.is_empty()).then(|| self.seller_country.clone());
        let max = meterline_schemas::catalog::MAX_PAYMENT_TERMS_DAYS;
        anyhow::ensure!(self.payment_terms_days <= max, "billing.payment_terms_days = {}: at most {max} days", self.payment_terms_days);
        Ok(meterline_invoicer::Settings {
            rounding: self.rounding,
            grace: chrono::Duration::hours(i64::from(self.grace_hours)),
            invoice_series: Series::new(&self.issuer, "inv", &self.number_format)
                .map_err(|e| anyhow::anyhow!("billing.number_format / billing.issuer: {e}"))?,
            credit_note_series: Series::new(&self.issuer, "cn", &self.credit_note_format)
                .map_err(|e| anyhow::anyhow!("billing.credit_note_format / billing.issuer: {e}"))?,
            adjustment_periods: self.adjustment_periods,
            tax_rounding: self.tax_rounding,
            seller_country,
            reporting_currency,
            provider: None,
            payment_terms_days: self.payment_terms_days,
        })
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nats: NatsConfig { url: "nats://127.0.0.1:14222".into(), credentials_file: None },
            clickhouse: ClickHouseConfig {
                url: "http://127.0.0.1:18123".into(),
                database: "meterline".into(),
                user: "default".into(),
                password: Secret::default(),
            },
            ledger: LedgerConfig::default(),
            ingest: IngestConfig::default(),
            catalog: CatalogConfig { bucket_prefix: "meterline_catalog_".into() },
            billing: BillingConfig {
                rounding: RoundingMode::HalfEven,
                grace_hours: 72,
                issuer: "meterline".into(),
                number_format: "INV-{year}-{seq:06}".into(),
                credit_note_format: "CN-{year}-{seq:06}".into(),
                adjustment_periods: 3,
                events_stream: "BILLING".into(),
                events_subject_prefix: "billing".into(),
                tax_rounding: TaxRounding::PerInvoice,
                seller_country: String::new(),
                reporting_currency: "USD".into(),
                payment_terms_days: 30,
            },
            http: HttpConfig::default(),
            mirror: MirrorConfig::default(),
            branding: Branding::default(),
            render: RenderConfig::default(),
        }
    }
}

impl Config {
    /// Loads defaults, then the file, then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(f) => {
                anyhow::ensure!(f.exists(), "config file {} does not exist", f.display());
                fig = fig.merge(Toml::file_exact(f));
            }
            None if Path::new("meterline.toml").exists() => fig = fig.merge(Toml::file_exact("meterline.toml")),
            None => {}
        }
        let cfg: Config =
            fig.merge(Env::prefixed("METERLINE__").split("__")).extract().map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.nats.url.starts_with("nats://") || self.nats.url.starts_with("tls://"),
            "nats.url = {:?}: expected nats://host:port",
            self.nats.url
        );
        anyhow::ensure!(
            self.clickhouse.url.starts_with("http://") || self.clickhouse.url.starts_with("https://"),
            "clickhouse.url = {:?}: expected http(s)://host:port",
            self.clickhouse.url
        );
        anyhow::ensure!(
            !self.clickhouse.database.is_empty() && self.clickhouse.database.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "clickhouse.database = {:?}: use letters, digits and '_'",
            self.clickhouse.database
        );
        anyhow::ensure!(
            !self.catalog.bucket_prefix.is_empty()
                && self.catalog.bucket_prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "catalog.bucket_prefix = {:?}: use letters, digits, '_' or '-'",
            self.catalog.bucket_prefix
        );
        self.billing.settings()?;
        anyhow::ensure!(
            !self.billing.events_subject_prefix.is_empty()
                && !self.billing.events_subject_prefix.contains(['*', '>', ' '])
                && !self.billing.events_subject_prefix.starts_with(&self.ingest.subject_prefix),
            "billing.events_subject_prefix = {:?}: a NATS subject without wildcards, outside ingest.subject_prefix",
            self.billing.events_subject_prefix
        );
        self.ingest.validate().map_err(|e| anyhow::anyhow!(e))?;
        self.http.validate().map_err(|e| anyhow::anyhow!(e))?;
        self.mirror.validate().map_err(|e| anyhow::anyhow!(e))?;
        self.branding.validate().map_err(|e| anyhow::anyhow!(e))?;
        self.render.validate().map_err(|e| anyhow::anyhow!(e))?;
        let sc = &self.billing.seller_country;
        anyhow::ensure!(
            sc.is_empty() || (sc.len() == 2 && sc.bytes().all(|b| b.is_ascii_uppercase())),
            "billing.seller_country = {sc:?}: expected an ISO 3166 alpha-2 code like \"DE\", or empty"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_matches_defaults_and_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/meterline.toml");
        let from_file: Config = Figment::from(Toml::file_exact(&path)).extract().unwrap();
        assert_eq!(serde_json::to_value(&from_file).unwrap(), serde_json::to_value(Config::default()).unwrap());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let bad: Result<Config, _> =
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string("[nats]\nurll = \"x\"")).extract();
        assert!(bad.unwrap_err().to_string().contains("urll"));
        let mut c = Config::default();
        c.clickhouse.database = "bad-name".into();
        assert!(c.validate().unwrap_err().to_string().contains("clickhouse.database = \"bad-name\""));
        let mut c = Config::default();
        c.ingest.dlq_subject_prefix = "usage.dlq".into();
        assert!(c.validate().unwrap_err().to_string().contains("must not overlap"));
        let mut c = Config::default();
        c.billing.number_format = "INV-{year}".into();
        assert!(c.validate().unwrap_err().to_string().contains("number format \"INV-{year}\": needs exactly one {seq}"));
        let mut c = Config::default();
        c.billing.reporting_currency = "EURO".into();
        assert!(c.validate().unwrap_err().to_string().contains("billing.reporting_currency = \"EURO\""));
        let mut c = Config::default();
        c.billing.seller_country = "de".into();
        assert!(c.validate().unwrap_err().to_string().contains("billing.seller_country = \"de\""));
        let mut c = Config::default();
        c.ingest.batch_max_messages = 0;
        assert!(c.validate().unwrap_err().to_string().contains("ingest.batch_max_messages = 0: must be at least 1"));
        let mut c = Config::default();
        c.mirror.interval_ms = 0;
        assert!(c.validate().unwrap_err().to_string().contains("mirror.interval_ms = 0"));
        let mut c = Config::default();
        c.branding.accent_color = "url(x)".into();
        assert!(c.validate().unwrap_err().to_string().contains("branding.accent_color = \"url(x)\""));
        let mut c = Config::default();
        c.billing.payment_terms_days = 3651;
        assert!(c.validate().unwrap_err().to_string().contains("billing.payment_terms_days = 3651: at most 3650 days"));
        c.billing.payment_terms_days = 0;
        assert_eq!(c.billing.settings().unwrap().payment_terms_days, 0, "net 0: due on issue");
        // The key that moved: named with its new home, not silently replaced by the default.
        let old: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string("[render]\npayment_terms_days = 14"))
            .extract()
            .unwrap();
        let e = old.validate().unwrap_err().to_string();
        assert!(e.contains("render.payment_terms_days = 14: moved to billing.payment_terms_days"), "{e}");
        assert_eq!(Config::default().billing.settings().unwrap().payment_terms_days, 30);
    }
}
