//! Load generation and end-to-end latency measurement (hdrhistogram).
//!
//! Not built yet: the open-loop load generator, its latency reports and `meterline loadtest`
//! are the load-test issue's work. The crate exists so the workspace has the layout of the
//! design brief; it exports nothing, and nothing claims it works.
