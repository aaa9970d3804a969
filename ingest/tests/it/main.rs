//! Integration tests of the ingest crate against the real NATS JetStream.
//!
//! The endpoint comes from `METERLINE__NATS__URL` (default: the local server of
//! `deploy/local/services.sh`). Every test gets its own stream, so tests run in parallel.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod consumer;
mod pull;
