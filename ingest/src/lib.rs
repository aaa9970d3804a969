//! Ingest: JetStream → validation → exact dedup → durable Parquet ledger segments → ack.
//!
//! # Layout
//! - [`config`]: stream, consumer and batching settings; the ledger location; the mirror's pace.
//! - [`streams`]: creating the usage and dead-letter streams and the durable consumer.
//! - [`validate`]: decoding a message into events and checking them against the meters.
//! - [`reload`]: catalog hot reload; a new catalog applies from the next batch.
//! - [`partition`]: subject mapping of customers onto partitions; [`lease`]: one owner each.
//! - [`dedup`]: the exact (source, id) index over the horizon, rebuilt from the ledger at start.
//! - [`metrics`]: the Prometheus endpoint of `meterline ingest`.
//! - [`segment`]: Arrow batch building and atomic, fsynced Parquet segment writes.
//! - [`dlq`]: dead letters with their reason.
//! - [`pipeline`]: the consume loop; acks only after segments and dead letters are durable.
//! - [`pull`]: continuous pulling from a JetStream consumer, counted so it never stalls.
//! - [`mirror`]: the ClickHouse mirror of the ledger (`usage_events`, `usage_hourly`), off the ack path.
//! - [`publish`]: publishing CloudEvents files to the usage stream.
//! - [`http`]: the HTTP endpoint `POST /v1/events` (`meterline serve`): decode, publish, await acks.
//! - [`apikeys`]: API keys of the HTTP endpoint, stored hashed in a NATS key-value bucket.
//! - [`error`]: the crate's error type and the transient/permanent split.

pub mod apikeys;
pub mod config;
pub mod dedup;
pub mod dlq;
pub mod error;
pub mod http;
pub mod lease;
pub mod metrics;
pub mod mirror;
pub mod partition;
pub mod pipeline;
pub mod publish;
pub mod pull;
pub mod reload;
pub mod segment;
pub mod streams;
pub mod validate;

pub use config::{IngestConfig, LedgerConfig, MirrorConfig};
pub use error::{Error, Result};
pub use pipeline::{IngestCounters, IngestReport, RunOptions, run};
