//! The catalog in NATS KV: applying, loading back, immutable plan versions, clear errors.

use meterline_schemas::catalog::CatalogFile;

use crate::common::TestEnv;
use crate::scenario::CATALOG;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_load_and_immutable_versions() {
    let env = TestEnv::new("catalog").await;
    let store = env.catalog(CATALOG).await;
    let c = store.load().await.unwrap();
    assert_eq!((c.meters.len(), c.plans.len(), c.customers.len(), c.subscriptions.len(), c.tax_rates.len()), (2, 3, 4, 4, 3));
    assert_eq!(c.plans[&("jp".to_string(), 1)].currency.code(), "JPY");

    // Re-applying the same file changes nothing.
    let again = store.apply(&CatalogFile::parse(CATALOG, "yaml").unwrap()).await.unwrap();
    assert!(again.written.values().all(|n| *n == 0), "{again:?}");
    assert_eq!(again.unchanged.get("customers"), Some(&4));

    // Changing a stored plan version is refused, and nothing is written.
    let changed = CATALOG.replace(r#"recurring_fee: "10""#, r#"recurring_fee: "12""#).replace("Alice Inc.", "Alice Renamed");
    let err = store.apply(&CatalogFile::parse(&changed, "yaml").unwrap()).await.unwrap_err().to_string();
    assert!(err.contains("plan basic version 1 is immutable"), "{err}");
    assert_eq!(store.load().await.unwrap().customers["alice"].name, "Alice Inc.");

    // A new version is accepted next to the old one.
    let v2 = CATALOG.replace("  - key: eu\n", "      - { version: 2, currency: USD, recurring_fee: \"12\" }\n  - key: eu\n");
    store.apply(&CatalogFile::parse(&v2, "yaml").unwrap()).await.unwrap();
    let c = store.load().await.unwrap();
    assert_eq!(c.plans[&("basic".to_string(), 2)].recurring_fee, Some(rust_decimal::Decimal::from(12)));
    assert_eq!(c.plans[&("basic".to_string(), 1)].recurring_fee, Some(rust_decimal::Decimal::from(10)));

    // The CLI names the file, entry and field of a bad catalog.
    let bad = env.ledger.path().join("bad.yaml");
    std::fs::write(&bad, CATALOG.replace("plan_version: 1, start: \"2026-10-16", "plan_version: 7, start: \"2026-10-16")).unwrap();
    let (ok, _, stderr) = env.meterline(&["catalog", "apply", bad.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(stderr.contains("subscriptions[sub-dan].plan_version: plan \"basic\" has no version 7"), "{stderr}");
    env.cleanup().await;
}
