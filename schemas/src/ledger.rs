//! The ledger: Parquet segments of accepted usage, one row per (event, meter).
//!
//! Segments live under `month=YYYY-MM/` (UTC month of the event time) so that rating a period
//! reads only the months it overlaps. Each row carries its segment name, so invoice lines can list
//! the segments they came from, and the 128-bit event key that dedup is rebuilt from.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Column names of the ledger schema.
pub mod col {
    /// `FixedSizeBinary(16)`: xxh3-128 of (source, id), see [`super::event_key`].
    pub const EVENT_KEY: &str = "event_key";
    /// `Utf8`: CloudEvents id.
    pub const EVENT_ID: &str = "event_id";
    /// `Utf8`: CloudEvents source.
    pub const SOURCE: &str = "source";
    /// `Utf8`: customer key (CloudEvents subject).
    pub const CUSTOMER: &str = "customer";
    /// `Utf8`: meter key.
    pub const METER: &str = "meter";
    /// `Timestamp(µs, UTC)`: event time.
    pub const EVENT_TIME: &str = "event_time";
    /// `Decimal128(38, 9)`, nullable: numeric value (null for COUNT and UNIQUE_COUNT meters).
    pub const VALUE: &str = "value";
    /// `Utf8`, nullable: value text for UNIQUE_COUNT meters.
    pub const UNIQUE_VALUE: &str = "unique_value";
    /// `Utf8`: canonical group key (JSON object of dimensions), empty without dimensions.
    pub const GROUP_KEY: &str = "group_key";
    /// `Utf8`: the segment this row was written in (`month=2026-10/seg-….parquet`).
    pub const SEGMENT: &str = "segment";
    /// `Timestamp(µs, UTC)`: when ingest accepted the event.
    pub const INGESTED_AT: &str = "ingested_at";
    /// `Utf8`: the event's raw `data` object, kept for audit and re-rating.
    pub const DATA: &str = "data";
}

/// Precision and scale of ledger values.
pub const VALUE_PRECISION: u8 = 38;
/// See [`crate::money::COLUMN_SCALE`].
pub const VALUE_SCALE: i8 = 9;

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new(col::EVENT_KEY, DataType::FixedSizeBinary(16), false),
        Field::new(col::EVENT_ID, DataType::Utf8, false),
        Field::new(col::SOURCE, DataType::Utf8, false),
        Field::new(col::CUSTOMER, DataType::Utf8, false),
        Field::new(col::METER, DataType::Utf8, false),
        Field::new(col::EVENT_TIME, ts.clone(), false),
        Field::new(col::VALUE, DataType::Decimal128(VALUE_PRECISION, VALUE_SCALE), true),
        Field::new(col::UNIQUE_VALUE, DataType::Utf8, true),
        Field::new(col::GROUP_KEY, DataType::Utf8, false),
        Field::new(col::SEGMENT, DataType::Utf8, false),
        Field::new(col::INGESTED_AT, ts, false),
        Field::new(col::DATA, DataType::Utf8, false),
    ]))
});

/// The Arrow schema of ledger segments.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// The dedup key of an event: xxh3-128 over `source`, a NUL byte, and `id`.
///
/// 128 bits make an accidental collision negligible (p ≈ n²/2¹²⁹: about 10⁻²¹ for 10⁹ events
/// per horizon). The NUL separator keeps (`ab`,`c`) and (`a`,`bc`) apart; NUL cannot occur in
/// JSON-decoded CloudEvents attributes without escaping, which is decoded before hashing.
pub fn event_key(source: &str, id: &str) -> u128 {
    // One-shot hash of `source \0 id` from a stack buffer when it fits (the streaming hasher's
    // state is ~600 bytes to set up per event); the same bytes, so the same key.
    let (s, i) = (source.as_bytes(), id.as_bytes());
    let mut buf = [0u8; 256];
    if s.len() + 1 + i.len() <= buf.len() {
        buf[..s.len()].copy_from_slice(s);
        buf[s.len() + 1..s.len() + 1 + i.len()].copy_from_slice(i);
        return xxhash_rust::xxh3::xxh3_128(&buf[..s.len() + 1 + i.len()]);
    }
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(s);
    h.update(&[0]);
    h.update(i);
    h.digest128()
}

/// The `Nats-Msg-Id` for an event, so JetStream's own duplicate window drops quick retries.
pub fn msg_id(source: &str, id: &str) -> String {
    format!("{:032x}", event_key(source, id))
}

#[cfg(test)]
mod tests {
    #[test]
    fn event_key_is_the_streaming_hash_of_source_nul_id() {
        let streaming = |s: &str, i: &str| {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            h.update(s.as_bytes());
            h.update(&[0]);
            h.update(i.as_bytes());
            h.digest128()
        };
        let long = "x".repeat(300);
        for (s, i) in [("api", "e1"), ("", ""), ("a", &long[..254]), ("a", &long[..255]), (&long[..], "e"), ("s\u{e9}", "ü")] {
            assert_eq!(event_key(s, i), streaming(s, i), "{s} {i}");
        }
    }

    use super::*;

    #[test]
    fn key_separates_source_and_id() {
        assert_ne!(event_key("ab", "c"), event_key("a", "bc"));
        assert_eq!(event_key("s", "1"), event_key("s", "1"));
        assert_eq!(msg_id("s", "1").len(), 32);
    }

    #[test]
    fn schema_has_decimal_values() {
        let s = schema();
        assert_eq!(s.field_with_name(col::VALUE).unwrap().data_type(), &DataType::Decimal128(38, 9));
        assert_eq!(s.fields().len(), 12);
    }
}
