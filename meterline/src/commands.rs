//! One module per subcommand; [`run`] dispatches.

mod apikeys;
mod catalog;
mod close;
mod events;
mod ingest;
mod invoices;
mod loadtest;
mod migrate;
mod mirror;
mod price;
mod price_call;
mod rerate;
mod serve;
mod spend;

use crate::cli::{Cli, Command};
use crate::config::Config;

pub use close::close;
pub use ingest::ingest;
pub use invoices::render_samples;

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Migrate => migrate::run(&cfg).await,
        Command::Catalog(c) => catalog::run(&cfg, c).await,
        Command::Events(c) => events::run(&cfg, c).await,
        Command::Ingest(a) => ingest::run(&cfg, a).await,
        Command::Mirror(a) => mirror::run(&cfg, a).await,
        Command::Serve(a) => serve::run(cfg, a).await,
        Command::ApiKeys(c) => apikeys::run(&cfg, c).await,
        Command::Close(a) => close::run(&cfg, a).await,
        Command::Spend(a) => spend::run(&cfg, a).await,
        Command::Rerate(a) => rerate::run(&cfg, a).await,
        Command::Invoices(c) => invoices::run(&cfg, c).await,
        Command::Price(a) => price::run(&cfg, a).await,
        Command::Demo(a) => crate::demo::run(cfg, a).await,
        Command::Loadtest(a) => loadtest::run(&cfg, a).await,
    }
}
