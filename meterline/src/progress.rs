//! Progress bars for long stages, fed from atomic counters by a ticker task.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar following `counter` up to `total` until dropped.
pub struct Progress {
    bar: ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// Starts a bar labelled `label` (drawn on stderr; hidden when stderr is not a terminal).
    pub fn start(label: &str, total: u64, counter: Arc<AtomicU64>) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{prefix:>10} [{bar:40}] {human_pos}/{human_len} {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_owned());
        let b = bar.clone();
        let task = tokio::spawn(async move {
            loop {
                b.set_position(counter.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Progress { bar, task }
    }

    /// Stops the ticker and leaves the bar at `final_pos`.
    pub fn finish(self, final_pos: u64) {
        self.task.abort();
        self.bar.set_position(final_pos);
        self.bar.finish();
    }
}
