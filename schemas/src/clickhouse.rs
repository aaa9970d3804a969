//! ClickHouse: client construction, server-version detection and ordered migrations.
//!
//! Dev and CI run Debian's ClickHouse 18.16; production runs 23.8 or newer. The schema uses
//! only their common subset (see docs/CLICKHOUSE.md). The server version is read once at
//! connect time and decides two things: whether `LowCardinality` needs
//! `allow_experimental_low_cardinality_type=1` (before 19.0) and whether the client may validate
//! rows against the table schema (needs `RowBinaryWithNamesAndTypes`, absent on old servers).

use clickhouse::Client;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Connection settings (`[clickhouse]` in `meterline.toml`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// HTTP endpoint, e.g. `http://127.0.0.1:18123`.
    pub url: String,
    /// Database holding Meterline's tables.
    pub database: String,
    /// User name.
    pub user: String,
    /// Password; never logged.
    #[serde(default)]
    pub password: Secret,
}

/// A secret string: serialized as itself (config files), but never shown by `Debug`/`Display`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for handing to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

/// A server version, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    /// Major version (18, 23, …).
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl ServerVersion {
    /// Parses `SELECT version()` output such as `18.16.1` or `23.8.2.7`.
    pub fn parse(s: &str) -> Option<ServerVersion> {
        let mut it = s.trim().split('.');
        Some(ServerVersion { major: it.next()?.parse().ok()?, minor: it.next()?.parse().ok()? })
    }

    /// Whether the server understands `RowBinaryWithNamesAndTypes`, needed for row validation.
    pub fn supports_validation(&self) -> bool {
        // The format exists from 19.x on; schema validation is only relied on for the production
        // line (23.8+) that it was written against.
        *self >= ServerVersion { major: 23, minor: 8 }
    }
}

/// A connected ClickHouse with its detected version.
#[derive(Clone)]
pub struct ClickHouse {
    client: Client,
    version: ServerVersion,
    database: String,
}

impl std::fmt::Debug for ClickHouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouse").field("version", &self.version).field("database", &self.database).finish_non_exhaustive()
    }
}

fn base_client(cfg: &ClickHouseConfig) -> Client {
    Client::default().with_url(&cfg.url).with_user(&cfg.user).with_password(cfg.password.expose())
}

impl ClickHouse {
    /// Connects, detects the version, and configures the client for it. Does not create the
    /// database: see [`migrate`].
    pub async fn connect(cfg: &ClickHouseConfig) -> Result<ClickHouse> {
        let probe = base_client(cfg).with_validation(false);
        let text: String = probe.query("SELECT version()").fetch_one().await?;
        let version = ServerVersion::parse(&text)
            .ok_or_else(|| Error::ClickHouse(clickhouse::error::Error::Custom(format!("unparsable server version {text:?}"))))?;
        let mut client = base_client(cfg).with_database(&cfg.database).with_validation(version.supports_validation());
        if version.major < 19 {
            client = client.with_setting("allow_experimental_low_cardinality_type", "1");
        }
        tracing::debug!(server_version = %text, database = %cfg.database, "connected to clickhouse");
        Ok(ClickHouse { client, version, database: cfg.database.clone() })
    }

    /// The client, bound to the configured database.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The detected server version.
    pub fn version(&self) -> ServerVersion {
        self.version
    }

    /// The configured database.
    pub fn database(&self) -> &str {
        &self.database
    }
}

/// One ordered migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Strictly increasing number.
    pub version: u32,
    /// Short name.
    pub name: &'static str,
    /// SQL statements separated by `;` at line ends.
    pub sql: &'static str,
}

/// All migrations, in order. Applied ones are never edited: add a new one instead. Versions
/// strictly increase but need not be contiguous: `migrate` applies every listed version not yet
/// recorded in `schema_migrations`, so a version merged later with a lower number is still
/// applied (after the higher ones already there).
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "invoices", sql: include_str!("../migrations/0001_invoices.sql") },
    Migration { version: 2, name: "commitment_lines", sql: include_str!("../migrations/0002_commitment_lines.sql") },
    Migration { version: 3, name: "current_spend", sql: include_str!("../migrations/0003_current_spend.sql") },
    Migration { version: 4, name: "usage_mirror", sql: include_str!("../migrations/0004_usage_mirror.sql") },
    Migration { version: 5, name: "price_feature_lines", sql: include_str!("../migrations/0005_price_feature_lines.sql") },
    Migration { version: 6, name: "invoice_lifecycle", sql: include_str!("../migrations/0006_invoice_lifecycle.sql") },
    Migration { version: 7, name: "tax_fx_reporting", sql: include_str!("../migrations/0007_tax_fx_reporting.sql") },
    Migration { version: 8, name: "rated_calls", sql: include_str!("../migrations/0008_rated_calls.sql") },
    Migration { version: 9, name: "lifecycle_tax_views", sql: include_str!("../migrations/0009_lifecycle_tax_views.sql") },
    Migration { version: 10, name: "due_dates", sql: include_str!("../migrations/0010_due_dates.sql") },
    Migration { version: 11, name: "credit_note_line_breakdown", sql: include_str!("../migrations/0011_credit_note_line_breakdown.sql") },
];

/// Splits a migration into statements (`;` at the end of a line), dropping comment-only parts.
pub fn statements(sql: &str) -> Vec<String> {
    sql.split(";\n")
        .map(|s| s.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n"))
        .map(|s| s.trim().trim_end_matches(';').trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Creates the database if needed and applies the migrations not yet recorded in
/// `schema_migrations`. Idempotent: every statement is `IF NOT EXISTS` (or an `ADD COLUMN` whose
/// "column already exists" error is taken as done, since 18.16 lacks `ADD COLUMN IF NOT EXISTS`), and
/// applied versions are skipped. Returns the versions applied by this call.
pub async fn migrate(cfg: &ClickHouseConfig) -> Result<Vec<u32>> {
    let probe = base_client(cfg).with_validation(false);
    let db = quote_ident(&cfg.database);
    probe.query(&format!("CREATE DATABASE IF NOT EXISTS {db}")).execute().await?;
    let ch = ClickHouse::connect(cfg).await?;
    let c = ch.client();
    c.query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, applied_at DateTime) \
         ENGINE = ReplacingMergeTree ORDER BY version",
    )
    .execute()
    .await?;
    let applied: Vec<u32> = c.query("SELECT version FROM schema_migrations FINAL ORDER BY version").fetch_all().await?;
    let mut done = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        for stmt in statements(m.sql) {
            match c.query(&stmt).execute().await {
                Ok(()) => {}
                // 18.16 has no `ADD COLUMN IF NOT EXISTS`: a column already there means an earlier
                // run applied this statement and stopped before recording the migration. The code
                // differs (18.16: 44, current: 15 DUPLICATE_COLUMN), the message does not.
                Err(e) if is_add_column(&stmt) && e.to_string().contains("column with this name already exists") => {
                    tracing::debug!(version = m.version, statement = %stmt, "column exists already; statement skipped");
                }
                Err(source) => return Err(Error::Migration { version: m.version, name: m.name.to_owned(), source }),
            }
        }
        c.query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, now())")
            .bind(m.version)
            .bind(m.name)
            .execute()
            .await?;
        tracing::info!(version = m.version, name = m.name, "applied clickhouse migration");
        done.push(m.version);
    }
    Ok(done)
}

/// Whether a statement adds exactly one column (re-running it fails with "column with this name
/// already exists" once applied).
fn is_add_column(stmt: &str) -> bool {
    let s = stmt.trim_start().to_ascii_uppercase();
    s.starts_with("ALTER TABLE") && s.matches(" ADD COLUMN ").count() == 1
}

/// Drops the configured database (tests and `meterline demo` use their own databases).
pub async fn drop_database(cfg: &ClickHouseConfig) -> Result<()> {
    let probe = base_client(cfg).with_validation(false);
    probe.query(&format!("DROP DATABASE IF EXISTS {}", quote_ident(&cfg.database))).execute().await?;
    Ok(())
}

/// Quotes an identifier with backticks.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_leak_through_debug() {
        let cfg = ClickHouseConfig { url: "http://x".into(), database: "d".into(), user: "u".into(), password: Secret::new("hunter2") };
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }

    #[test]
    fn versions() {
        let old = ServerVersion::parse("18.16.1").unwrap();
        assert_eq!((old.major, old.minor), (18, 16));
        assert!(!old.supports_validation());
        assert!(ServerVersion::parse("23.8.2.7").unwrap().supports_validation());
        assert!(ServerVersion::parse("garbage").is_none());
    }

    #[test]
    fn migration_versions_strictly_increase() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        // The kind Enum8 that applying every migration in order leaves (the last statement that
        // sets it, in whichever migration) lists every Rust kind; likewise the status Enum8.
        let stmts: Vec<String> = MIGRATIONS.iter().flat_map(|m| statements(m.sql)).collect();
        let kinds = stmts.iter().rfind(|s| s.starts_with("ALTER TABLE invoice_lines MODIFY COLUMN kind")).unwrap();
        for k in crate::invoice::LineKind::ALL {
            assert!(kinds.contains(&format!("'{}' = {}", k.name(), k as i8)), "{k:?}");
        }
        assert_eq!(kinds.matches(" = ").count(), crate::invoice::LineKind::ALL.len(), "no kind the Rust code lacks");
        let status = stmts.iter().rfind(|s| s.starts_with("ALTER TABLE invoices MODIFY COLUMN status")).unwrap();
        for st in crate::invoice::InvoiceStatus::ALL {
            assert!(status.contains(&format!("'{}' = {}", st.name(), st as i8)), "{st:?}");
        }
    }

    #[test]
    fn add_column_statements_are_recognised() {
        let v7 = statements(MIGRATIONS.iter().find(|m| m.version == 7).unwrap().sql);
        assert_eq!(v7.iter().filter(|s| is_add_column(s)).count(), 6);
        assert!(!is_add_column("CREATE VIEW IF NOT EXISTS revenue_daily AS SELECT 1"));
        let v10 = statements(MIGRATIONS.iter().find(|m| m.version == 10).unwrap().sql);
        assert_eq!(v10.iter().filter(|s| is_add_column(s)).count(), 1);
        assert_eq!(v10.len(), 5, "add due_at; drop the ageing view and invoices_current; create both again");
    }

    #[test]
    fn splits_statements_and_drops_comments() {
        let s = statements(MIGRATIONS[0].sql);
        assert_eq!(s.len(), 2);
        assert!(s[0].starts_with("CREATE TABLE IF NOT EXISTS invoices"));
        assert!(s[1].starts_with("CREATE TABLE IF NOT EXISTS invoice_lines"));
        assert!(!s[1].contains("--"));
    }
}
