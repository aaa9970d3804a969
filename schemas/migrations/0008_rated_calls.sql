-- Rated call records of telecom prices, written by the period close: one row per call record
-- (subscription, event), for explanation, audit and dashboards. The invoice line of a
-- (matched prefix, band, price) is `Σ connect_fee + Σ billed_secs × price_per_minute ÷ 60`,
-- computed from these columns' exact values; `amount` is each call's own exact amount as text
-- (it may have up to 28 digits, more than a Decimal(38, 9) holds), for explanation only.
-- The close inserts all rows of one subscription and period in one INSERT, only when none are
-- stored yet (like invoice lines), so closing twice writes no duplicates even without FINAL.
CREATE TABLE IF NOT EXISTS rated_calls
(
    period           String,
    period_start     DateTime,
    subscription_id  String,
    customer         String,
    meter            String,
    rate_table       String,
    event_id         String,
    source           String,
    event_time       DateTime,
    answered_at      DateTime,
    destination      String,
    matched_prefix   String,
    description      String,
    band             String,
    duration_secs    UInt64,
    billed_secs      UInt64,
    price_per_minute Decimal(38, 9),
    connect_fee      Decimal(38, 9),
    amount           String,
    currency         LowCardinality(String),
    segment          String,
    version          UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(period_start)
ORDER BY (period, subscription_id, source, event_id);
