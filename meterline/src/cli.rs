//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Usage metering, rating and invoicing.
#[derive(Debug, Parser)]
#[command(name = "meterline", version, about)]
pub struct Cli {
    /// Configuration file (default: ./meterline.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// More logging (-v info, -vv debug). METERLINE_LOG overrides (tracing filter syntax).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The default log filter for the verbosity.
    pub fn log_filter(&self) -> &'static str {
        match self.verbose {
            0 => "warn",
            1 => "info",
            _ => "debug",
        }
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the ClickHouse database and apply pending migrations (idempotent).
    Migrate,
    /// Manage the catalog (meters, plans, customers, subscriptions, tax rates).
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Work with usage events.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Consume usage events into the ledger.
    Ingest(IngestArgs),
    /// Copy ledger segments into ClickHouse for dashboards, continuously or once (`--once`).
    Mirror(MirrorArgs),
    /// Run the HTTP ingest endpoint (POST /v1/events) until interrupted.
    Serve(ServeArgs),
    /// Manage the API keys of the HTTP endpoint.
    #[command(subcommand, name = "apikeys")]
    ApiKeys(ApiKeysCommand),
    /// Close a billing period into invoices.
    Close(CloseArgs),
    /// Refresh the open cycles' current spend in ClickHouse, once or every few seconds.
    Spend(SpendArgs),
    /// Recompute a closed period from the ledger and report differences (writes nothing).
    Rerate(RerateArgs),
    /// Read invoices.
    #[command(subcommand)]
    Invoices(InvoicesCommand),
    /// Price a quantity of a meter under a plan, with the tier-by-tier breakdown.
    Price(PriceArgs),
    /// Run the whole pipeline on local services with synthetic data.
    Demo(DemoArgs),
    /// Open-loop load test over NATS: latency from the scheduled send to durable and to current spend.
    Loadtest(meterline_loadtest::cli::LoadtestArgs),
}

/// `catalog …`.
#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Validate a catalog file (YAML, TOML or JSON) and store it.
    Apply {
        /// The catalog file.
        file: PathBuf,
        /// Only validate against the stored catalog; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the stored catalog.
    Show {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

/// `events …`.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Publish CloudEvents from an NDJSON file (one event or one batch array per line).
    Publish {
        /// The file.
        file: PathBuf,
        /// Publishes awaiting their JetStream ack at once.
        #[arg(long, default_value_t = 1024)]
        in_flight: usize,
    },
}

/// `ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Exit once the stream is drained and every message is acked.
    #[arg(long)]
    pub until_idle: bool,
    /// Partitions this worker owns, e.g. `0-3` or `1,5` (default: all of ingest.partitions).
    /// Several workers run side by side on disjoint sets; each partition has one owner (lease).
    #[arg(long, value_name = "SET")]
    pub partitions: Option<meterline_ingest::partition::PartitionSet>,
}

/// `mirror`.
#[derive(Debug, Args)]
pub struct MirrorArgs {
    /// Mirror every pending segment once and exit (non-zero when ClickHouse fails).
    #[arg(long)]
    pub once: bool,
}

/// `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, `host:port` (overrides `http.listen`).
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
}

/// `apikeys …`.
#[derive(Debug, Subcommand)]
pub enum ApiKeysCommand {
    /// Create a key; it is printed once and stored only as a hash.
    Create {
        /// Who or what the key is for, e.g. `api-gateway`.
        #[arg(long)]
        name: String,
    },
    /// List key ids and names (never secrets).
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Revoke a key by id; requests using it are refused from then on.
    Revoke {
        /// The key id (the part after `ml_`, shown by `apikeys list`).
        id: String,
    },
}

/// `close`.
#[derive(Debug, Args)]
pub struct CloseArgs {
    /// Period to close, `YYYY-MM`.
    #[arg(long)]
    pub period: String,
    /// Insist on finalizing: fail (writing nothing) when the grace deadline has not passed.
    #[arg(long)]
    pub finalize: bool,
    /// Close as if the clock read this RFC 3339 time (replays and tests); default: now.
    #[arg(long, value_name = "TIME")]
    pub as_of: Option<String>,
}

/// `spend`.
#[derive(Debug, Args)]
pub struct SpendArgs {
    /// Period, `YYYY-MM`: the cycles this label closes (default: each subscription's open cycle,
    /// the one containing now).
    #[arg(long)]
    pub period: Option<String>,
    /// Refresh every this many seconds until interrupted (default: once).
    #[arg(long, value_name = "SECONDS")]
    pub every: Option<u64>,
}

/// `rerate`.
#[derive(Debug, Args)]
pub struct RerateArgs {
    /// Period, `YYYY-MM`.
    #[arg(long)]
    pub period: String,
    /// Only this customer.
    #[arg(long)]
    pub customer: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// `invoices …`.
#[derive(Debug, Subcommand)]
pub enum InvoicesCommand {
    /// List the invoices of a period.
    List {
        /// Period, `YYYY-MM`.
        #[arg(long)]
        period: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Include each invoice's lines (json only).
        #[arg(long)]
        lines: bool,
    },
    /// Record an invoice as paid (from finalized or uncollectible).
    Pay(TransitionArgs),
    /// Void an invoice (from finalized or uncollectible); it keeps its number.
    Void(TransitionArgs),
    /// Write an invoice off as uncollectible (from finalized).
    MarkUncollectible(TransitionArgs),
    /// Issue a credit note on a finalized invoice: an amount, whole lines, or the full remainder.
    CreditNote(CreditNoteArgs),
    /// Show an invoice's lifecycle transitions and credit notes.
    History {
        /// Invoice id or number.
        #[arg(long)]
        id: String,
    },
    /// Publish again the billing events of transitions and credit notes recorded since a time,
    /// from ClickHouse (after a crash between a write and its publish). Same event ids: JetStream
    /// drops the ones it has within its 24-hour duplicate window.
    ReplayEvents {
        /// RFC 3339 time, e.g. `2026-11-25T00:00:00Z`.
        #[arg(long)]
        since: String,
    },
    /// Render one invoice as an HTML or PDF document (PDF needs Chromium).
    Render {
        /// The invoice id (UUID), as `invoices list` shows it.
        #[arg(long)]
        id: String,
        /// Document format.
        #[arg(long, value_enum, default_value_t = DocFormat::Html)]
        format: DocFormat,
        /// Output file (default: HTML to stdout, PDF to ./invoice-<id>.pdf).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Locale instead of the customer's, e.g. `fr-FR` (supported: en, de, fr, es, ja).
        #[arg(long)]
        locale: Option<String>,
    },
    /// Export the invoices (or their lines) of a period.
    Export {
        /// Period, `YYYY-MM`.
        #[arg(long)]
        period: String,
        /// Export format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
        format: ExportFormat,
        /// Export the invoice lines instead of the invoices.
        #[arg(long)]
        lines: bool,
        /// Output file (default: stdout).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// `invoices pay|void|mark-uncollectible`.
#[derive(Debug, Args)]
pub struct TransitionArgs {
    /// Invoice id (UUID) or number (`INV-2026-000123`).
    #[arg(long)]
    pub id: String,
    /// Why, recorded in invoice_events and the billing event.
    #[arg(long, default_value = "")]
    pub reason: String,
}

/// `invoices credit-note`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(false).args(["amount", "line", "full"])))]
pub struct CreditNoteArgs {
    /// Invoice id (UUID) or number.
    #[arg(long)]
    pub id: String,
    /// Amount to credit (exact decimal, tax included).
    #[arg(long)]
    pub amount: Option<String>,
    /// Invoice line number to credit in full; repeat for several lines.
    #[arg(long)]
    pub line: Vec<u32>,
    /// Credit everything not yet credited.
    #[arg(long)]
    pub full: bool,
    /// Why (required).
    #[arg(long)]
    pub reason: String,
}

/// Document formats of `invoices render`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DocFormat {
    /// A self-contained HTML page.
    Html,
    /// A PDF printed by headless Chromium from the same HTML.
    Pdf,
}

/// Formats of `invoices export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// RFC 4180 CSV with exact decimals.
    Csv,
}

/// `price`.
#[derive(Debug, Args)]
pub struct PriceArgs {
    /// Catalog file to take the plan from (default: the stored catalog).
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// Plan key, optionally with a version: `starter` (latest) or `starter@2`.
    #[arg(long)]
    pub plan: String,
    /// Meter key (with `--event`: defaults to the plan's telecom meter of the event's type).
    #[arg(long, required_unless_present = "event")]
    pub meter: Option<String>,
    /// Quantity, an exact decimal.
    #[arg(long, allow_hyphen_values = true, required_unless_present = "event", conflicts_with = "event")]
    pub quantity: Option<String>,
    /// One call-record CloudEvent (JSON text, or `@file`) to rate against the plan's telecom
    /// price: the matched prefix, band, increments, billed seconds, connect fee and amount.
    #[arg(long, value_name = "JSON")]
    pub event: Option<String>,
    /// Group-by value for matrix prices, `dimension=value`; repeat for several dimensions.
    #[arg(long = "group", value_name = "DIM=VALUE")]
    pub groups: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Customers to generate.
    #[arg(long, default_value_t = 1000)]
    pub customers: usize,
    /// Usage events to generate (before duplicates, invalid and late events are mixed in).
    #[arg(long, default_value_t = 1_000_000)]
    pub events: usize,
    /// The period to generate and close.
    #[arg(long, default_value = "2026-10")]
    pub period: String,
    /// Random seed: the same seed gives the same data and the same invoices.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Output folder (catalog, events, ledger).
    #[arg(long, default_value = "out/demo")]
    pub out: PathBuf,
    /// Do not start local services (they must already run).
    #[arg(long)]
    pub no_services: bool,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table for people.
    Table,
    /// JSON for programs.
    Json,
}
