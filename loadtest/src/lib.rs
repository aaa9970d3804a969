//! Open-loop load generation and end-to-end latency measurement (hdrhistogram).
//!
//! Events are sent on a fixed schedule (event `i` at `start + i / rate`) without waiting for
//! answers, one per JetStream message or producer-batched several per message, and every
//! latency is measured from the event's own scheduled time, so a stalled system cannot
//! hide its stalls (coordinated omission). A run sends a realistic mix over NATS or HTTP, runs ingest
//! in-process on its own stream and ledger, and measures publish → durable (ingest's ack floor)
//! and publish → visible in `current_spend` (the spend refresh run in-process).
//!
//! # Layout
//! - [`schedule`]: the open-loop schedule and latency from the scheduled time.
//! - [`batch`]: `--events-per-message`: which events share a JetStream message, and when it
//!   is sent.
//! - [`mix`]: the event mix (API, LLM, storage, telecom; duplicates, late, invalid).
//! - [`catalog`]: the catalog the run's ingest and spend use.
//! - [`run`]: one run: sender (NATS or HTTP), ack collector, durable and spend observers, drain.
//! - [`http`]: `--transport http`: Meterline's HTTP ingest in-process and its client.
//! - [`raw`]: the raw ceiling (plain JetStream publish) measured in the same run.
//! - [`sweep`]: `--find-max`, stepping the rate until the p99 bound is missed.
//! - [`report`]: percentiles, JSON and markdown.
//! - [`plot`]: PNG line charts (latency percentiles against offered load), drawn here.
//! - [`perfdoc`]: regenerating docs/PERFORMANCE.md from the benchmarks' JSON.
//! - [`cli`]: the arguments shared by the `loadtest` binary and `meterline loadtest`.
//! - [`error`]: the crate's error type.

pub mod batch;
pub mod catalog;
pub mod cli;
pub mod error;
pub mod http;
pub mod mix;
pub mod perfdoc;
pub mod plot;
pub mod raw;
pub mod report;
pub mod run;
pub mod schedule;
pub mod sweep;

pub use error::{Error, Result};
