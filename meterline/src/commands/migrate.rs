//! `meterline migrate`.

use crate::config::Config;

pub async fn run(cfg: &Config) -> anyhow::Result<()> {
    let applied = meterline_schemas::clickhouse::migrate(&cfg.clickhouse).await?;
    if applied.is_empty() {
        crate::output::emit(format!("database {}: up to date", cfg.clickhouse.database))?;
    } else {
        crate::output::emit(format!("database {}: applied migrations {:?}", cfg.clickhouse.database, applied))?;
    }
    Ok(())
}
