-- Current spend of the open period per subscription, refreshed by `meterline spend`. Each refresh
-- inserts a new version of every row; `FINAL` (or argMax by version) reads the latest.
CREATE TABLE IF NOT EXISTS current_spend
(
    subscription_id String,
    customer        String,
    period          String,
    currency        LowCardinality(String),
    usage_amount    Decimal(38, 9),
    fees            Decimal(38, 9),
    subtotal        Decimal(38, 9),
    ledger_rows     UInt64,
    as_of           DateTime,
    version         UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (period, subscription_id);
