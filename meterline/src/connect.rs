//! Connections to NATS and ClickHouse from configuration.

use anyhow::Context as _;
use async_nats::jetstream;

use crate::config::Config;

/// Connects to NATS and returns the client and a JetStream context.
pub async fn nats(cfg: &Config) -> anyhow::Result<(async_nats::Client, jetstream::Context)> {
    let mut opts = async_nats::ConnectOptions::new().name("meterline");
    if let Some(creds) = &cfg.nats.credentials_file {
        opts = opts.credentials_file(creds).await.with_context(|| format!("nats.credentials_file {}", creds.display()))?;
    }
    let client = opts
        .connect(cfg.nats.url.as_str())
        .await
        .with_context(|| format!("cannot connect to NATS at {} (is it running? `deploy/local/services.sh up`)", cfg.nats.url))?;
    let js = jetstream::new(client.clone());
    Ok((client, js))
}

/// Connects to ClickHouse (the database must exist: `meterline migrate`).
pub async fn clickhouse(cfg: &Config) -> anyhow::Result<meterline_schemas::clickhouse::ClickHouse> {
    meterline_schemas::clickhouse::ClickHouse::connect(&cfg.clickhouse)
        .await
        .with_context(|| format!("cannot connect to ClickHouse at {} (is it running? `deploy/local/services.sh up`)", cfg.clickhouse.url))
}

/// Opens the catalog store.
pub async fn catalog(cfg: &Config, js: &jetstream::Context) -> anyhow::Result<meterline_schemas::catalog_store::CatalogStore> {
    Ok(meterline_schemas::catalog_store::CatalogStore::open(js, &cfg.catalog.bucket_prefix).await?)
}

/// The invoice lifecycle's pieces: ClickHouse, the numbering bucket, the billing events stream.
pub async fn billing(cfg: &Config, js: &jetstream::Context) -> anyhow::Result<meterline_invoicer::Billing> {
    let ch = clickhouse(cfg).await?;
    let b = &cfg.billing;
    Ok(meterline_invoicer::Billing::open(
        ch,
        js,
        &format!("{}numbering", cfg.catalog.bucket_prefix),
        &b.events_stream,
        &b.events_subject_prefix,
        b.settings()?,
    )
    .await?)
}
