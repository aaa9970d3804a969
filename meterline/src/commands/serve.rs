//! `meterline serve`: the HTTP ingest endpoint until Ctrl-C.

use std::time::Duration;

use anyhow::Context as _;

use meterline_ingest::apikeys::ApiKeyStore;
use meterline_ingest::http::{self, HttpIngest};

use crate::cli::ServeArgs;
use crate::config::Config;
use crate::connect;

pub async fn run(mut cfg: Config, args: ServeArgs) -> anyhow::Result<()> {
    if let Some(listen) = args.listen {
        cfg.http.listen = listen;
        cfg.http.validate().map_err(|e| anyhow::anyhow!("--listen: {e}"))?;
    }
    let (client, js) = connect::nats(&cfg).await?;
    meterline_ingest::streams::ensure_streams(&js, &cfg.ingest).await?;
    let keys = ApiKeyStore::open(&js, &cfg.catalog.bucket_prefix).await?;
    if keys.list().await?.is_empty() {
        tracing::warn!(
            "no API keys in bucket {}: every request will be refused; create one with `meterline apikeys create --name NAME`",
            ApiKeyStore::bucket_name(&cfg.catalog.bucket_prefix)
        );
    }
    let listener = tokio::net::TcpListener::bind(cfg.http.listen.as_str())
        .await
        .with_context(|| format!("cannot listen on http.listen = {}", cfg.http.listen))?;
    let addr = listener.local_addr()?;
    let app = http::router(HttpIngest::new(client.clone(), js, cfg.ingest.subject_prefix.clone(), keys), &cfg.http);

    let shutdown = crate::shutdown::on_interrupt("finishing requests in flight and stopping");
    crate::output::emit(format!(
        "listening on http://{addr}: POST /v1/events → {}.events.<customer token> (stream {}); Ctrl-C stops",
        cfg.ingest.subject_prefix, cfg.ingest.stream
    ))?;
    // Requests in flight end within the request timeout; the margin covers writing the answers.
    let drain = cfg.http.request_timeout() + Duration::from_secs(2);
    http::serve(listener, app, shutdown, drain).await.context("http server")?;
    client.flush().await?;
    crate::output::emit("stopped")?;
    Ok(())
}
