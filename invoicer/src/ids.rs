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

fn hashed(parts: &[&[u8]]) -> Uuid {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for part in parts {
        h.update(part);
        h.update(&[0]);
    }
    uuid::Builder::from_custom_bytes(h.digest128().to_be_bytes()).into_uuid()
}

/// The id of a lifecycle transition: the header version it writes and the status it enters
/// identify it, so two closers finalizing the same invoice produce the same id (and the same
/// `Nats-Msg-Id`).
pub fn event_id(invoice: Uuid, version: u64, to_status: i8) -> Uuid {
    hashed(&[b"meterline.invoice_event", invoice.as_bytes(), &version.to_be_bytes(), &to_status.to_be_bytes()])
}

/// The id of the `ordinal`-th (0-based) credit note of an invoice: a retried command (same
/// number of credit notes already stored) addresses the same credit note and reservation.
pub fn credit_note_id(invoice: Uuid, ordinal: u32) -> Uuid {
    hashed(&[b"meterline.credit_note", invoice.as_bytes(), &ordinal.to_be_bytes()])
}

/// The id of a credit note for late usage of `invoice`'s period: a hash of what it credits (each
/// line's key with its billed and re-rated amounts). Two closers computing the same credit from the
/// same stored state address the same credit note and number reservation; a later credit for
/// further late usage starts from other billed amounts, so it gets another id.
pub fn late_credit_note_id(invoice: Uuid, content: &str) -> Uuid {
    hashed(&[b"meterline.late_credit_note", invoice.as_bytes(), content.as_bytes()])
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
