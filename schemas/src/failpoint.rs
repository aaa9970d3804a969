//! Crash injection for tests: `METERLINE_FAILPOINT=<name>:<n>` aborts the process the n-th time
//! the named point is reached (1-based). Aborting skips destructors and flushes, like SIGKILL.
//!
//! Points: `ingest.after_segment` (a segment is durable, its messages are not yet acked);
//! `close.after_reserve` (invoice numbers reserved in NATS KV, finalized headers not yet
//! written); `close.after_finalize_write` (finalized headers written, events not published,
//! reservations not released); `transition.after_write` (an operator's pay/void/… written to
//! ClickHouse, its billing event not published).

use std::sync::atomic::{AtomicU64, Ordering};

static HITS: AtomicU64 = AtomicU64::new(0);

/// Reaches failpoint `name`.
pub fn hit(name: &str) {
    let Ok(spec) = std::env::var("METERLINE_FAILPOINT") else { return };
    let Some((point, n)) = spec.split_once(':') else { return };
    if point != name {
        return;
    }
    let n: u64 = n.parse().unwrap_or(1);
    if HITS.fetch_add(1, Ordering::SeqCst) + 1 == n {
        eprintln!("failpoint {name} reached (hit {n}): aborting");
        std::process::abort();
    }
}
