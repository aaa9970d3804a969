-- The ClickHouse mirror of the ledger (`meterline-ingest` `mirror.rs`): dashboards query these
-- tables; billing never does (it reads the Parquet ledger). Every type here exists on 18.16 and
-- on 23.8+; no LowCardinality, so the materialized view needs no experimental setting.

-- Ledger rows, one per (event, meter), as written to the Parquet segments. `event_time` and
-- `ingested_at` are truncated to whole seconds (DateTime; DateTime64 does not exist on 18.16).
-- `value` is exact: the ledger's Decimal128(38, 9) unscaled integer is copied as is.
CREATE TABLE IF NOT EXISTS usage_events
(
    event_key    FixedString(16),
    event_id     String,
    source       String,
    customer     String,
    meter        String,
    event_time   DateTime,
    value        Nullable(Decimal(38, 9)),
    unique_value Nullable(String),
    group_key    String,
    segment      String,
    ingested_at  DateTime,
    data         String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (customer, meter, event_time);

-- Hourly rollup per (customer, meter, group key). SummingMergeTree adds up `events` and
-- `value_sum` of rows with the same key when parts merge (Decimal sums checked on 18.16 and
-- 26.9); until then a key may have several rows, so queries always `sum()` and `GROUP BY`.
CREATE TABLE IF NOT EXISTS usage_hourly
(
    customer  String,
    meter     String,
    group_key String,
    hour      DateTime,
    events    UInt64,
    value_sum Decimal(38, 9)
)
ENGINE = SummingMergeTree((events, value_sum))
PARTITION BY toYYYYMM(hour)
ORDER BY (customer, meter, group_key, hour);

-- Feeds usage_hourly from every insert into usage_events (per inserted block). COUNT and
-- UNIQUE_COUNT rows have a NULL value and add 0 to value_sum.
CREATE MATERIALIZED VIEW IF NOT EXISTS usage_hourly_mv TO usage_hourly AS
SELECT
    customer,
    meter,
    group_key,
    toStartOfHour(event_time) AS hour,
    count() AS events,
    sum(ifNull(value, toDecimal128(0, 9))) AS value_sum
FROM usage_events
GROUP BY customer, meter, group_key, hour;

-- Mirror progress: one row per ledger segment copied completely into usage_events, written after
-- its rows. Re-recording a segment is harmless (ReplacingMergeTree by segment); the mirror reads
-- the set of names, so duplicates before a merge change nothing.
CREATE TABLE IF NOT EXISTS mirror_segments
(
    segment     String,
    rows        UInt64,
    mirrored_at DateTime
)
ENGINE = ReplacingMergeTree(mirrored_at)
ORDER BY segment;
