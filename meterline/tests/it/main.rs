//! Integration tests against the real NATS JetStream and ClickHouse.
//!
//! Endpoints come from `METERLINE__NATS__URL` and `METERLINE__CLICKHOUSE__URL` (defaults: the
//! local services of `deploy/local/services.sh`). Every test gets its own streams, consumer,
//! catalog buckets, ClickHouse database and ledger directory, so tests run in parallel.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod batching;
mod catalog_reload;
mod catalog_store;
mod close;
mod common;
mod crash;
mod credits;
mod dead_letters;
mod http;
mod lifecycle;
mod mirror;
mod outage;
mod partitions;
mod price;
mod render;
mod rerate;
mod scenario;
mod telecom;
