//! `--find-max`: step the offered rate up until a step misses the bound; the highest passing
//! step is the sustainable rate. Every step runs in a fresh namespace (stream, ledger, database).
//! The raw ceiling is measured once at the start, on the same server, with the same events.

use std::time::Duration;

use crate::error::Result;
use crate::report::{SweepReport, passes};
use crate::run::{Options, run_once};

/// How to step.
#[derive(Debug, Clone, Copy)]
pub struct SweepOptions {
    /// First offered rate, events/s.
    pub start_rate: u64,
    /// Each step offers this percentage of the previous one (e.g. 150).
    pub step_percent: u64,
    /// Length of each step.
    pub step_duration: Duration,
    /// p99 publish→durable bound, µs.
    pub bound_p99_us: u64,
    /// Most steps.
    pub max_steps: u32,
    /// Keep stepping after the first failing step, up to this many failures (for the plot).
    pub extra_failed_steps: u32,
}

/// The offered rates of a sweep, in order.
pub fn rates(start: u64, step_percent: u64, steps: u32) -> Vec<u64> {
    let mut out = Vec::with_capacity(steps as usize);
    let mut r = start.max(1);
    for _ in 0..steps {
        out.push(r);
        r = (r * step_percent.max(101) / 100).max(r + 1);
    }
    out
}

/// Runs the sweep; `on_step` sees each step's report as it finishes.
pub async fn find_max(base: &Options, s: SweepOptions, mut on_step: impl FnMut(&crate::report::RunReport)) -> Result<SweepReport> {
    let mut report = SweepReport { bound_p99_us: s.bound_p99_us, ..Default::default() };
    if base.raw_secs > 0 {
        report.raw_ceiling = Some(crate::raw::measure_ceiling(base).await?);
    }
    let mut failed = 0;
    for rate in rates(s.start_rate, s.step_percent, s.max_steps) {
        // Each step measures raw publish → ack at its own rate; the ceiling was measured once.
        let opts = Options { rate, duration: s.step_duration, events: None, raw_ceiling: false, ..base.clone() };
        let r = run_once(&opts).await?;
        on_step(&r);
        let ok = passes(&r, s.bound_p99_us);
        report.steps.push(r);
        if ok {
            if failed == 0 {
                report.max_sustainable_rate = rate;
            }
        } else {
            failed += 1;
            if failed > s.extra_failed_steps {
                break;
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_grow_geometrically() {
        assert_eq!(rates(1000, 150, 4), vec![1000, 1500, 2250, 3375]);
        assert_eq!(rates(1, 150, 3), vec![1, 2, 3]);
    }
}
