//! `loadtest`: see [`meterline_loadtest::cli::LoadtestArgs`].

use clap::Parser;

use meterline_schemas::clickhouse::ClickHouseConfig;

/// Open-loop load test of Meterline over NATS.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version, about)]
struct Cli {
    #[command(flatten)]
    args: meterline_loadtest::cli::LoadtestArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = std::env::var("METERLINE_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    let base = ClickHouseConfig {
        url: cli.args.clickhouse_url.clone(),
        database: cli.args.database.clone(),
        user: std::env::var("METERLINE__CLICKHOUSE__USER").unwrap_or_else(|_| "default".into()),
        password: meterline_schemas::clickhouse::Secret::new(std::env::var("METERLINE__CLICKHOUSE__PASSWORD").unwrap_or_default()),
    };
    meterline_loadtest::cli::run(&cli.args, &base).await?;
    Ok(())
}
