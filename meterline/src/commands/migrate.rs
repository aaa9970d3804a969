//! `meterline migrate`.

use crate::config::Config;

pub async fn run(cfg: &Config) -> anyhow::Result<()> {
    let applied = meterline_schemas::clickhouse::migrate(&cfg.clickhouse).await?;
    if applied.is_empty() {
        println!("database {}: up to date", cfg.clickhouse.database);
    } else {
        println!("database {}: applied migrations {:?}", cfg.clickhouse.database, applied);
    }
    Ok(())
}
