//! Shutdown on Ctrl-C: one cancellation token shared by a command's tasks.

use tokio_util::sync::CancellationToken;

/// A token cancelled at the first interrupt; `what` says in the log what happens next.
pub fn on_interrupt(what: &'static str) -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("interrupt: {what}");
            t.cancel();
        }
    });
    token
}
