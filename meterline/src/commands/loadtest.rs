//! `meterline loadtest`: the open-loop load test of `meterline-loadtest`, with NATS and
//! ClickHouse endpoints from the configuration (flags override). It runs in its own namespace
//! (`lt_` stream, ledger and database), never on the configured ones.

use crate::config::Config;

pub async fn run(cfg: &Config, mut args: meterline_loadtest::cli::LoadtestArgs) -> anyhow::Result<()> {
    // The endpoints default to the configuration unless given on the command line or in the
    // environment (clap already applied those to `args`).
    if std::env::var_os("METERLINE__NATS__URL").is_none() && args.nats_url == "nats://127.0.0.1:14222" {
        args.nats_url = cfg.nats.url.clone();
    }
    if std::env::var_os("METERLINE__CLICKHOUSE__URL").is_none() && args.clickhouse_url == "http://127.0.0.1:18123" {
        args.clickhouse_url = cfg.clickhouse.url.clone();
    }
    meterline_loadtest::cli::run(&args, &cfg.clickhouse).await?;
    Ok(())
}
