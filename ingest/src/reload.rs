//! Catalog hot reload: a running ingest validates against the stored catalog as it changes.
//!
//! [`spawn`] watches the catalog buckets ([`CatalogStore::changes`]); after a change (and a
//! short pause, so the entries of one `catalog apply` arrive together) it loads the whole catalog
//! and, when it differs from the one in use, publishes it on a `watch` channel. The pipeline
//! builds a new validator from it (meters, call-record checks, deadlines) and uses it from the
//! next batch on, so a new meter or a rate-table edit needs no restart. A catalog that does not
//! load (an apply half written: a subscription whose plan is not stored yet) is skipped and the
//! one in use kept; the apply's next entry triggers another attempt. Each time the watch starts
//! (at start, and again after it breaks) the catalog is loaded once, so nothing changed before
//! the watch began is missed.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt as _, StreamExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use meterline_schemas::catalog::Catalog;
use meterline_schemas::catalog_store::CatalogStore;

/// Pause after a change before loading: the rest of an apply's entries arrive meanwhile.
const SETTLE: Duration = Duration::from_millis(250);
/// Wait before watching again after the watch could not be set up.
const RETRY: Duration = Duration::from_secs(2);

/// Starts the reloader; the receiver holds `initial` until the stored catalog changes. It stops
/// with `stop`.
pub fn spawn(store: CatalogStore, initial: Arc<Catalog>, stop: CancellationToken) -> watch::Receiver<Arc<Catalog>> {
    let (tx, rx) = watch::channel(initial);
    tokio::spawn(async move {
        while !stop.is_cancelled() {
            let mut changes = match store.changes().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch the catalog; retrying (ingest keeps the catalog it has)");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(RETRY) => continue,
                    }
                }
            };
            // Changes made before the watch started (since `initial` was loaded, or while a
            // broken watch was down) are not in it: load once now.
            reload(&store, &tx).await;
            loop {
                let next = tokio::select! {
                    _ = stop.cancelled() => return,
                    next = changes.next() => next,
                };
                match next {
                    Some(Ok(())) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "catalog watch broke; watching again");
                        break;
                    }
                    None => break,
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(SETTLE) => {}
                }
                // Whatever else arrived meanwhile is covered by the one load below.
                while let Some(Some(Ok(()))) = changes.next().now_or_never() {}
                reload(&store, &tx).await;
            }
        }
    });
    rx
}

async fn reload(store: &CatalogStore, tx: &watch::Sender<Arc<Catalog>>) {
    match store.load().await {
        Ok(c) if c != **tx.borrow() => {
            tracing::info!(
                meters = c.meters.len(),
                plans = c.plans.len(),
                subscriptions = c.subscriptions.len(),
                rate_tables = c.rate_tables.len(),
                "catalog reloaded: ingest validates against it from the next batch"
            );
            tx.send_replace(Arc::new(c));
        }
        Ok(_) => tracing::debug!("catalog entries written again with the same values: nothing to reload"),
        Err(e) => tracing::warn!(error = %e, "the stored catalog does not load (an apply in progress?); keeping the one in use"),
    }
}
