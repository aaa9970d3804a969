//! The catalog persisted in NATS JetStream key-value buckets.
//!
//! One bucket per kind of entry, named `<prefix>meters`, `<prefix>plans`, `<prefix>customers`,
//! `<prefix>subscriptions`, `<prefix>tax_rates`, `<prefix>coupons`, `<prefix>credit_grants`, `<prefix>rate_tables`,
//! `<prefix>fx_rates`; values are JSON. Plan versions are stored under
//! `<plan>.v<version>` and are immutable: applying a file that changes a stored version fails
//! before anything is written. Other entries are upserted. Nothing is deleted by `apply`.

use std::collections::BTreeMap;

use async_nats::jetstream::{self, kv};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::catalog::{Catalog, CatalogFile};
use crate::error::{Error, Result};

/// What `apply` changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplySummary {
    /// Entries written (new or changed), per kind.
    pub written: BTreeMap<&'static str, usize>,
    /// Entries already stored with the same content, per kind.
    pub unchanged: BTreeMap<&'static str, usize>,
}

/// Handle to the catalog buckets.
#[derive(Debug, Clone)]
pub struct CatalogStore {
    meters: kv::Store,
    plans: kv::Store,
    customers: kv::Store,
    subscriptions: kv::Store,
    tax_rates: kv::Store,
    coupons: kv::Store,
    credit_grants: kv::Store,
    rate_tables: kv::Store,
    fx_rates: kv::Store,
}

fn nats<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> Error + '_ {
    move |e| Error::Nats(format!("{what}: {e}"))
}

async fn bucket(js: &jetstream::Context, name: String) -> Result<kv::Store> {
    if let Ok(store) = js.get_key_value(&name).await {
        return Ok(store);
    }
    js.create_key_value(kv::Config {
        bucket: name.clone(),
        history: 5,
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(nats(&format!("create bucket {name}")))
}

impl CatalogStore {
    /// Opens (creating when missing) the buckets with the given name prefix.
    pub async fn open(js: &jetstream::Context, prefix: &str) -> Result<CatalogStore> {
        Ok(CatalogStore {
            meters: bucket(js, format!("{prefix}meters")).await?,
            plans: bucket(js, format!("{prefix}plans")).await?,
            customers: bucket(js, format!("{prefix}customers")).await?,
            subscriptions: bucket(js, format!("{prefix}subscriptions")).await?,
            tax_rates: bucket(js, format!("{prefix}tax_rates")).await?,
            coupons: bucket(js, format!("{prefix}coupons")).await?,
            credit_grants: bucket(js, format!("{prefix}credit_grants")).await?,
            rate_tables: bucket(js, format!("{prefix}rate_tables")).await?,
            fx_rates: bucket(js, format!("{prefix}fx_rates")).await?,
        })
    }

    /// Changes to any catalog bucket from now on (puts, deletes, purges): one item per stored
    /// entry, so an `apply` of many entries gives many items. The stream ends or yields an error
    /// when a watch breaks; watch again (and load) to catch up.
    pub async fn changes(&self) -> Result<impl futures::Stream<Item = Result<()>> + Send + Unpin + use<>> {
        let mut watches = Vec::new();
        for kv in [
            &self.meters,
            &self.plans,
            &self.customers,
            &self.subscriptions,
            &self.tax_rates,
            &self.coupons,
            &self.credit_grants,
            &self.rate_tables,
            &self.fx_rates,
        ] {
            let watch = kv.watch_all().await.map_err(nats("watch catalog"))?;
            watches.push(watch.map(|e| e.map(|_| ()).map_err(nats("watch catalog"))).boxed());
        }
        Ok(futures::stream::select_all(watches))
    }

    /// Loads the whole catalog and checks its cross-references.
    pub async fn load(&self) -> Result<Catalog> {
        let mut c = Catalog {
            meters: load_all(&self.meters).await?,
            customers: load_all(&self.customers).await?,
            subscriptions: load_all(&self.subscriptions).await?,
            tax_rates: load_all(&self.tax_rates).await?,
            coupons: load_all(&self.coupons).await?,
            credit_grants: load_all(&self.credit_grants).await?,
            rate_tables: load_all(&self.rate_tables).await?,
            fx_rates: load_all(&self.fx_rates).await?,
            ..Default::default()
        };
        let plans: BTreeMap<String, crate::catalog::PlanVersion> = load_all(&self.plans).await?;
        c.plans = plans.into_values().map(|p| ((p.plan.clone(), p.version), p)).collect();
        c.check_references()?;
        Ok(c)
    }

    /// Validates `file` against what is stored, checks that no stored plan version changes,
    /// then writes every entry.
    pub async fn apply(&self, file: &CatalogFile) -> Result<ApplySummary> {
        let stored = self.load().await?;
        let new = file.validate(&stored)?;
        for (key, pv) in &new.plans {
            if let Some(old) = stored.plans.get(key)
                && old != pv
            {
                return Err(Error::ImmutablePlanVersion { plan: key.0.clone(), version: key.1 });
            }
        }
        let mut summary = ApplySummary::default();
        write_all(&self.rate_tables, "rate_tables", new.rate_tables.iter().map(|(k, v)| (k.clone(), v)), &stored.rate_tables, &mut summary)
            .await?;
        write_all(&self.meters, "meters", new.meters.iter().map(|(k, v)| (k.clone(), v)), &stored.meters, &mut summary).await?;
        write_all(&self.tax_rates, "tax_rates", new.tax_rates.iter().map(|(k, v)| (k.clone(), v)), &stored.tax_rates, &mut summary).await?;
        let stored_plans: BTreeMap<String, _> = stored.plans.iter().map(|((p, v), pv)| (plan_key(p, *v), pv.clone())).collect();
        write_all(&self.plans, "plans", new.plans.iter().map(|((p, v), pv)| (plan_key(p, *v), pv)), &stored_plans, &mut summary).await?;
        write_all(&self.customers, "customers", new.customers.iter().map(|(k, v)| (k.clone(), v)), &stored.customers, &mut summary).await?;
        write_all(
            &self.subscriptions,
            "subscriptions",
            new.subscriptions.iter().map(|(k, v)| (k.clone(), v)),
            &stored.subscriptions,
            &mut summary,
        )
        .await?;
        write_all(&self.coupons, "coupons", new.coupons.iter().map(|(k, v)| (k.clone(), v)), &stored.coupons, &mut summary).await?;
        write_all(
            &self.credit_grants,
            "credit_grants",
            new.credit_grants.iter().map(|(k, v)| (k.clone(), v)),
            &stored.credit_grants,
            &mut summary,
        )
        .await?;
        write_all(&self.fx_rates, "fx_rates", new.fx_rates.iter().map(|(k, v)| (k.clone(), v)), &stored.fx_rates, &mut summary).await?;
        Ok(summary)
    }
}

fn plan_key(plan: &str, version: u32) -> String {
    format!("{plan}.v{version}")
}

async fn load_all<T: DeserializeOwned>(store: &kv::Store) -> Result<BTreeMap<String, T>> {
    let keys: Vec<String> = store.keys().await.map_err(nats("list keys"))?.try_collect().await.map_err(nats("list keys"))?;
    let values: Vec<(String, Option<bytes::Bytes>)> = futures::stream::iter(keys)
        .map(|k| async move {
            let v = store.get(&k).await.map_err(nats(&format!("get {k}")))?;
            Ok::<_, Error>((k, v))
        })
        .buffer_unordered(64)
        .try_collect()
        .await?;
    let mut out = BTreeMap::new();
    for (k, v) in values {
        if let Some(bytes) = v {
            out.insert(k, serde_json::from_slice(&bytes)?);
        }
    }
    Ok(out)
}

async fn write_all<'a, T: Serialize + PartialEq + 'a>(
    store: &kv::Store,
    kind: &'static str,
    entries: impl Iterator<Item = (String, &'a T)>,
    stored: &BTreeMap<String, T>,
    summary: &mut ApplySummary,
) -> Result<()> {
    let mut pending = Vec::new();
    for (key, value) in entries {
        if stored.get(&key) == Some(value) {
            *summary.unchanged.entry(kind).or_default() += 1;
            continue;
        }
        pending.push((key, serde_json::to_vec(value)?));
    }
    *summary.written.entry(kind).or_default() += pending.len();
    futures::stream::iter(pending)
        .map(|(key, bytes)| async move { store.put(&key, bytes.into()).await.map_err(nats(&format!("put {kind}/{key}"))) })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}
