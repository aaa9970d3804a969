//! Partition leases: at most one ingest worker works on a partition at a time.
//!
//! A lease is a key `p<n>` in the NATS key-value bucket `<consumer>_leases`, whose entries expire
//! `lease_secs` after their last write (the bucket's `max_age`). The owner renews it every third
//! of that time with a compare-and-set on the revision it last wrote; when a renewal fails the
//! lease was lost (expired, or taken after a long pause) and the partition's worker stops before
//! acking anything else. A worker restarting on the same host takes over a lease whose owner
//! process is gone at once, without waiting for expiry (a crashed ingest restarts in
//! milliseconds); anyone else waits for the lease to expire.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// Who holds a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Host name.
    pub host: String,
    /// Process id on that host.
    pub pid: u32,
}

impl Holder {
    /// This process.
    pub fn me() -> Holder {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "localhost".into());
        Holder { host, pid: std::process::id() }
    }

    /// Whether the holder is a process of this host that no longer runs.
    fn is_dead_local(&self, me: &Holder) -> bool {
        self.host == me.host && self.pid != me.pid && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

/// The lease bucket of a consumer.
pub async fn bucket(js: &jetstream::Context, consumer: &str, lease_secs: u64) -> Result<kv::Store> {
    let name = format!("{consumer}_leases");
    if let Ok(store) = js.get_key_value(&name).await {
        return Ok(store);
    }
    js.create_key_value(kv::Config {
        bucket: name.clone(),
        description: "Meterline ingest partition leases".into(),
        history: 1,
        max_age: Duration::from_secs(lease_secs),
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| Error::Nats(format!("lease bucket {name}: {e}")))
}

/// A held lease; renewing runs in the background until [`Lease::release`] or loss.
#[derive(Debug)]
pub struct Lease {
    /// Cancelled when the lease is lost: the partition's worker must stop without acking.
    pub lost: CancellationToken,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    store: kv::Store,
    key: String,
}

/// Acquires partition `partition`'s lease, waiting while another live worker holds it.
pub async fn acquire(store: &kv::Store, partition: u32, lease_secs: u64, shutdown: &CancellationToken) -> Result<Option<Lease>> {
    let key = format!("p{partition}");
    let me = Holder::me();
    let value: bytes::Bytes = serde_json::to_vec(&me).map_err(|e| Error::Encoding(e.to_string()))?.into();
    let mut logged = false;
    let revision = loop {
        match store.create(&key, value.clone()).await {
            Ok(rev) => break rev,
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::Nats(format!("lease {key}: {e}"))),
        }
        if let Some(entry) = store.entry(&key).await.map_err(|e| Error::Nats(format!("lease {key}: {e}")))?
            && entry.operation == kv::Operation::Put
        {
            let holder: Option<Holder> = serde_json::from_slice(&entry.value).ok();
            if holder.as_ref().is_some_and(|h| h.is_dead_local(&me)) {
                if let Ok(rev) = store.update(&key, value.clone(), entry.revision).await {
                    tracing::info!(partition, previous = ?holder, "took over the lease of a stopped worker on this host");
                    break rev;
                }
                continue;
            }
            if !logged {
                tracing::warn!(partition, holder = ?holder, lease_secs, "partition is leased by another worker; waiting for it to stop or its lease to expire");
                logged = true;
            }
        } else if let Some(entry) = store.entry(&key).await.ok().flatten() {
            // A delete marker: the previous owner released it.
            if let Ok(rev) = store.update(&key, value.clone(), entry.revision).await {
                break rev;
            }
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    };
    let lost = CancellationToken::new();
    let stop = CancellationToken::new();
    let task = tokio::spawn(renew(store.clone(), key.clone(), value, revision, lease_secs, lost.clone(), stop.clone()));
    Ok(Some(Lease { lost, stop, task, store: store.clone(), key }))
}

async fn renew(
    store: kv::Store,
    key: String,
    value: bytes::Bytes,
    mut revision: u64,
    lease_secs: u64,
    lost: CancellationToken,
    stop: CancellationToken,
) {
    let every = Duration::from_millis(lease_secs * 1000 / 3);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match store.update(&key, value.clone(), revision).await {
            Ok(rev) => revision = rev,
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                tracing::error!(lease = %key, "partition lease lost to another worker; stopping this partition");
                lost.cancel();
                return;
            }
            Err(e) => tracing::warn!(lease = %key, error = %e, "could not renew the partition lease; retrying"),
        }
    }
}

impl Lease {
    /// Stops renewing and deletes the lease, so another worker may take the partition at once.
    pub async fn release(self) {
        self.stop.cancel();
        let _ = self.task.await;
        if !self.lost.is_cancelled()
            && let Err(e) = self.store.delete(&self.key).await
        {
            tracing::warn!(lease = %self.key, error = %e, "could not release the partition lease; it expires by itself");
        }
    }
}
