//! Benchmarks: criterion micro-benchmarks (`benches/`) and the macro-benchmarks `bench-rate` and
//! `bench-close` (`src/bin/`).
//!
//! # Layout
//! - [`synth`]: the synthetic ledger and catalog the macro-benchmarks share.

pub mod synth;
