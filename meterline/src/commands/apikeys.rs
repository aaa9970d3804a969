//! `meterline apikeys create|list|revoke`.

use comfy_table::Table;

use meterline_ingest::apikeys::ApiKeyStore;

use crate::cli::{ApiKeysCommand, Format};
use crate::config::Config;
use crate::connect;

pub async fn run(cfg: &Config, cmd: ApiKeysCommand) -> anyhow::Result<()> {
    let (client, js) = connect::nats(cfg).await?;
    let store = ApiKeyStore::open(&js, &cfg.catalog.bucket_prefix).await?;
    match cmd {
        ApiKeysCommand::Create { name } => {
            let key = store.create(&name).await?;
            // The explanation goes to stderr so that `KEY=$(meterline apikeys create …)` captures the key alone.
            eprintln!(
                "created API key {} ({:?}); it is shown only this once and stored only as a hash: keep it now",
                key.record.id, key.record.name
            );
            crate::output::emit(key.expose())?;
        }
        ApiKeysCommand::List { format } => {
            let keys = store.list().await?;
            match format {
                Format::Json => {
                    let rows: Vec<_> =
                        keys.iter().map(|k| serde_json::json!({ "id": k.id, "name": k.name, "created": k.created.to_rfc3339() })).collect();
                    crate::output::emit(serde_json::to_string_pretty(&rows)?)?;
                }
                Format::Table => {
                    let mut t = Table::new();
                    t.set_header(["id", "name", "created"]);
                    for k in &keys {
                        t.add_row([k.id.clone(), k.name.clone(), k.created.format("%Y-%m-%d %H:%M:%S UTC").to_string()]);
                    }
                    crate::output::emit(format!("{t}"))?;
                    crate::output::emit(format!("{} API keys", keys.len()))?;
                }
            }
        }
        ApiKeysCommand::Revoke { id } => {
            anyhow::ensure!(store.revoke(&id).await?, "no API key with id {id:?} (see `meterline apikeys list`)");
            crate::output::emit(format!("revoked API key {id}"))?;
        }
    }
    client.flush().await?;
    Ok(())
}
