//! Deterministic invoice ids: the same subscription, period and revision always give the same id,
//! so a repeated close addresses the same rows instead of creating new ones.

use uuid::Uuid;

/// A UUIDv8 from xxh3-128 of (`meterline.invoice`, subscription, period, revision).
pub fn invoice_id(subscription: &str, period: &str, revision: u32) -> Uuid {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for part in ["meterline.invoice", subscription, period] {
        h.update(part.as_bytes());
        h.update(&[0]);
    }
    h.update(&revision.to_be_bytes());
    uuid::Builder::from_custom_bytes(h.digest128().to_be_bytes()).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_distinct() {
        let a = invoice_id("sub-1", "2026-10", 0);
        assert_eq!(a, invoice_id("sub-1", "2026-10", 0));
        assert_ne!(a, invoice_id("sub-1", "2026-11", 0));
        assert_ne!(a, invoice_id("sub-1", "2026-10", 1));
        assert_ne!(invoice_id("sub-1", "2026-10", 0), invoice_id("sub-12026-10", "", 0));
        assert_eq!(a.get_version_num(), 8);
    }
}
