//! The command line shared by the `loadtest` binary and `meterline loadtest`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use meterline_schemas::clickhouse::ClickHouseConfig;

use crate::error::{Error, Result};
use crate::mix::{MixShares, parse_share};
use crate::run::{Options, Transport, run_once};
use crate::sweep::{SweepOptions, find_max};

/// `loadtest`: open-loop load over NATS or HTTP with in-process ingest; latency from the
/// scheduled send.
#[derive(Debug, Clone, Args)]
#[command(after_help = EXAMPLES)]
pub struct LoadtestArgs {
    /// How events are sent: `nats` publishes to JetStream directly; `http` POSTs each event to
    /// Meterline's HTTP ingest started in-process on a loopback port, with a key made for the run.
    #[arg(long, value_enum, default_value_t = Transport::Nats)]
    pub transport: Transport,
    /// Offered load, events per second.
    #[arg(long, default_value_t = 5_000)]
    pub rate: u64,
    /// Events per JetStream message (`--transport nats` only): due events are carried as JSON
    /// arrays of N consecutive events of one partition, each message sent when its last event is
    /// due; latencies still count from each event's own scheduled time.
    #[arg(long, default_value_t = 1)]
    pub events_per_message: u64,
    /// Stop after this many events.
    #[arg(long)]
    pub events: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Customers (each with one subscription).
    #[arg(long, default_value_t = 1_000)]
    pub customers: u32,
    /// Seed of the event mix.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Share of exact duplicates (`2%` or `0.02`).
    #[arg(long, default_value = "2%", value_parser = parse_share)]
    pub duplicates: u32,
    /// Share of late events (dated earlier in the open period).
    #[arg(long, default_value = "0.5%", value_parser = parse_share)]
    pub late: u32,
    /// Share of invalid events (dead-lettered).
    #[arg(long, default_value = "0.1%", value_parser = parse_share)]
    pub invalid: u32,
    /// Sends awaiting their answer at most (JetStream acks of messages, or HTTP requests, each
    /// holding a connection); beyond, their events are counted as saturated.
    #[arg(long, default_value_t = 8_192)]
    pub in_flight: usize,
    /// NATS server.
    #[arg(long, env = "METERLINE__NATS__URL", default_value = "nats://127.0.0.1:14222")]
    pub nats_url: String,
    /// ClickHouse HTTP endpoint.
    #[arg(long, env = "METERLINE__CLICKHOUSE__URL", default_value = "http://127.0.0.1:18123")]
    pub clickhouse_url: String,
    /// The run's ClickHouse database (dropped and re-created; must start with `lt_`).
    #[arg(long, default_value = "lt_loadtest")]
    pub database: String,
    /// The run's stream and subject prefix (deleted and re-created; must start with `lt_`).
    #[arg(long, default_value = "lt_usage")]
    pub stream: String,
    /// The run's ledger directory (emptied at start).
    #[arg(long, default_value = ".local/loadtest/ledger")]
    pub ledger: PathBuf,
    /// Partitions of the stream.
    #[arg(long, default_value_t = 1)]
    pub partitions: u32,
    /// Ingest linger (ms): how long a batch waits to fill.
    #[arg(long, default_value_t = 500)]
    pub linger_ms: u64,
    /// Ingest segment size (ledger rows).
    #[arg(long, default_value_t = 100_000)]
    pub segment_max_events: usize,
    /// Do not measure publish → current spend.
    #[arg(long)]
    pub no_spend: bool,
    /// Pause between spend refreshes (ms).
    #[arg(long, default_value_t = 100)]
    pub spend_interval_ms: u64,
    /// Ack-floor poll interval (ms): the resolution of publish → durable.
    #[arg(long, default_value_t = 5)]
    pub poll_ms: u64,
    /// Seconds to wait after the last send for every event to be observed.
    #[arg(long, default_value_t = 30)]
    pub drain_timeout: u64,
    /// Step the rate up from `--rate` until p99 publish→durable exceeds `--bound-ms`.
    #[arg(long)]
    pub find_max: bool,
    /// The p99 publish→durable bound of `--find-max` (ms).
    #[arg(long, default_value_t = 1_000)]
    pub bound_ms: u64,
    /// Each `--find-max` step offers this percentage of the previous one.
    #[arg(long, default_value_t = 150)]
    pub step_percent: u64,
    /// Seconds per `--find-max` step.
    #[arg(long, default_value_t = 10)]
    pub step_secs: u64,
    /// Most `--find-max` steps.
    #[arg(long, default_value_t = 12)]
    pub max_steps: u32,
    /// Steps to run after the first failing one (they show the knee in the plot).
    #[arg(long, default_value_t = 1)]
    pub extra_steps: u32,
    /// Seconds of each raw JetStream measurement on the same server: the ceiling (most publish
    /// acks per second) before a run or at the start of a sweep, and publish → ack at the offered
    /// rate before a run or each step. 0 skips them.
    #[arg(long, default_value_t = 5)]
    pub raw_secs: u64,
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

/// The examples at the end of `--help`.
const EXAMPLES: &str = "\
Examples:
  loadtest --rate 20000 --duration 60                   one event per JetStream message
  loadtest --rate 100000 --events-per-message 100 --duration 60
                                                        producer-batched: 100 events per message
  loadtest --find-max --rate 2000 --step-secs 10        step the rate up until p99 durable > 1 s
  loadtest --transport http --rate 5000 --duration 30 --in-flight 1024";

impl LoadtestArgs {
    /// The run options; ClickHouse user and password come from `base`.
    pub fn options(&self, base: &ClickHouseConfig) -> Options {
        Options {
            transport: self.transport,
            nats_url: self.nats_url.clone(),
            clickhouse: ClickHouseConfig { url: self.clickhouse_url.clone(), database: self.database.clone(), ..base.clone() },
            ledger: self.ledger.clone(),
            stream: self.stream.clone(),
            rate: self.rate,
            events_per_message: self.events_per_message,
            events: self.events,
            duration: Duration::from_secs(self.duration),
            customers: self.customers,
            seed: self.seed,
            shares: MixShares { duplicates_ppm: self.duplicates, late_ppm: self.late, invalid_ppm: self.invalid },
            in_flight: self.in_flight,
            partitions: self.partitions,
            linger_ms: self.linger_ms,
            segment_max_events: self.segment_max_events,
            spend: !self.no_spend,
            spend_interval_ms: self.spend_interval_ms,
            poll_ms: self.poll_ms,
            drain_timeout: Duration::from_secs(self.drain_timeout),
            progress: !self.quiet,
            raw_secs: self.raw_secs,
            raw_ceiling: true,
        }
    }
}

/// Runs what the arguments ask and prints the markdown report; writes JSON when asked.
pub async fn run(args: &LoadtestArgs, base: &ClickHouseConfig) -> Result<()> {
    let opts = args.options(base);
    let json = if args.find_max {
        let s = SweepOptions {
            start_rate: args.rate,
            step_percent: args.step_percent,
            step_duration: Duration::from_secs(args.step_secs),
            bound_p99_us: args.bound_ms * 1000,
            max_steps: args.max_steps,
            extra_failed_steps: args.extra_steps,
        };
        let sweep = find_max(&opts, s, |r| {
            eprintln!(
                "step {} ev/s over {}: achieved {} ev/s ({} per message, {} msg/s), raw ack p99 {} ms, durable p99 {} ms, spend p99 {} ms, errors {}",
                r.offered_rate,
                r.target,
                r.achieved_rate,
                r.events_per_message,
                r.message_rate,
                r.raw_ack.map(|a| crate::report::ms(a.ack.p99_us)).unwrap_or_else(|| "-".into()),
                crate::report::ms(r.durable.p99_us),
                crate::report::ms(r.spend.p99_us),
                r.errors.total()
            );
        })
        .await?;
        println!("{}", sweep.markdown());
        serde_json::to_string_pretty(&sweep)
    } else {
        let r = run_once(&opts).await?;
        println!("{}", r.markdown());
        serde_json::to_string_pretty(&r)
    }
    .map_err(|e| Error::Io { path: "report".into(), message: e.to_string() })?;
    if let Some(path) = &args.json {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::Io { path: dir.display().to_string(), message: e.to_string() })?;
        }
        std::fs::write(path, json + "\n").map_err(|e| Error::Io { path: path.display().to_string(), message: e.to_string() })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: LoadtestArgs,
    }

    fn options(argv: &[&str]) -> Options {
        let cli = Cli::try_parse_from(std::iter::once("loadtest").chain(argv.iter().copied())).expect("arguments parse");
        let base = ClickHouseConfig {
            url: String::new(),
            database: String::new(),
            user: "default".into(),
            password: meterline_schemas::clickhouse::Secret::default(),
        };
        cli.args.options(&base)
    }

    #[test]
    fn events_per_message_defaults_to_one_and_batches_only_over_nats() {
        let o = options(&[]);
        assert_eq!(o.events_per_message, 1);
        assert!(o.validate().is_ok());
        let o = options(&["--events-per-message", "100", "--rate", "100000"]);
        assert_eq!((o.events_per_message, o.rate, o.transport), (100, 100_000, Transport::Nats));
        assert!(o.validate().is_ok());
        let e = options(&["--transport", "http", "--events-per-message", "10"]).validate().expect_err("http sends one per request");
        assert!(e.to_string().contains("--events-per-message 10") && e.to_string().contains("--transport nats"), "{e}");
        // One event per message over HTTP is what it always was.
        assert!(options(&["--transport", "http", "--events-per-message", "1"]).validate().is_ok());
        for bad in ["0", "1001"] {
            let e = options(&["--events-per-message", bad]).validate().expect_err("out of range");
            assert!(e.to_string().contains(&format!("--events-per-message {bad}: must be between 1 and 1000")), "{e}");
        }
    }
}
