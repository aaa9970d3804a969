//! Prepaid credit balances carry across closes through the stored credit lines, and a close
//! repeated with them stays idempotent. Coupons and grants go through the catalog in NATS KV.

use rust_decimal::Decimal;

use meterline_invoicer::writer::{list_invoices, list_lines};
use meterline_schemas::invoice::LineKind;

use crate::common::TestEnv;

const CATALOG: &str = r#"
tax_rates:
  - { jurisdiction: NONE, name: no tax, rate: "0" }
coupons:
  - { code: TEN, percent: "10", duration: forever }
plans:
  - key: basic
    versions:
      - { version: 1, currency: USD, recurring_fee: "100" }
customers:
  - { key: a, name: A, currency: USD, jurisdiction: NONE }
subscriptions:
  - { id: sub-a, customer: a, plan: basic, plan_version: 1, start: "2026-01-01T00:00:00Z", anchor_day: 1, coupons: [ { code: TEN } ] }
credit_grants:
  - { id: g1, customer: a, amount: "150", granted_at: "2026-09-01T00:00:00Z" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_balances_carry_across_closes() {
    let env = TestEnv::new("credits").await;
    let store = env.catalog(CATALOG).await;
    let catalog = store.load().await.unwrap();
    assert_eq!((catalog.coupons.len(), catalog.credit_grants.len()), (1, 1));
    std::fs::create_dir_all(env.ledger_path()).unwrap();
    let ch = env.clickhouse().await;
    // A clock after every period's grace deadline: each close finalizes.
    let close = |p: &'static str| env.close(&catalog, p, "2027-02-01T00:00:00Z");
    let credit = |lines: &[meterline_schemas::invoice::InvoiceLineRow]| -> Vec<Decimal> {
        lines.iter().filter(|l| l.kind == LineKind::Credit as i8).map(|l| l.amount).collect()
    };

    // October: 100.00 - 10% = 90.00, paid by g1 (60.00 left).
    let oct = close("2026-10").await;
    assert_eq!(oct.write.inserted, 1);
    assert_eq!(credit(&list_lines(&ch, "2026-10").await.unwrap()), vec![Decimal::new(-9000, 2)]);
    assert_eq!(list_invoices(&ch, "2026-10").await.unwrap()[0].total, Decimal::ZERO);

    // November: 90.00 due, g1 has 60.00 left according to October's stored line: 30.00 due.
    let nov = close("2026-11").await;
    assert_eq!(nov.write.inserted, 1);
    let lines = list_lines(&ch, "2026-11").await.unwrap();
    assert_eq!(credit(&lines), vec![Decimal::new(-6000, 2)]);
    assert!(lines.iter().any(|l| l.description == "Prepaid credit g1: 60.00 applied, 0.00 remaining"), "{lines:?}");
    assert_eq!(list_invoices(&ch, "2026-11").await.unwrap()[0].total, Decimal::new(3000, 2));

    // Closing again reads the same earlier lines: nothing new, nothing conflicting.
    for p in ["2026-10", "2026-11"] {
        let again = close(p).await;
        assert_eq!((again.write.inserted, again.write.unchanged, again.write.conflicts.len()), (0, 1, 0), "{p}");
    }
    // December: g1 is used up.
    close("2026-12").await;
    assert!(credit(&list_lines(&ch, "2026-12").await.unwrap()).is_empty());
    assert_eq!(list_invoices(&ch, "2026-12").await.unwrap()[0].total, Decimal::new(9000, 2));
    env.cleanup().await;
}
