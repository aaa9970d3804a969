-- Invoices: one row per (subscription, period, revision); the current state of an invoice is the
-- row with the highest `version` (ReplacingMergeTree). Ids are deterministic, so closing a
-- period twice targets the same rows.
CREATE TABLE IF NOT EXISTS invoices
(
    invoice_id      UUID,
    subscription_id String,
    customer        String,
    period          String,
    period_start    DateTime,
    period_end      DateTime,
    currency        LowCardinality(String),
    plan            String,
    plan_version    UInt32,
    subtotal        Decimal(38, 9),
    tax             Decimal(38, 9),
    total           Decimal(38, 9),
    line_count      UInt32,
    status          Enum8('draft' = 1, 'finalized' = 2),
    revision        UInt32,
    content_hash    UInt64,
    issued_at       DateTime,
    version         UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(period_start)
ORDER BY invoice_id;

-- Invoice lines: each line explains itself (meter, quantity, model, tier breakdown, plan
-- version, event count, ledger segments).
CREATE TABLE IF NOT EXISTS invoice_lines
(
    invoice_id       UUID,
    line_no          UInt32,
    kind             Enum8('recurring' = 1, 'usage' = 2, 'tax' = 3),
    customer         String,
    period           String,
    period_start     DateTime,
    currency         LowCardinality(String),
    description      String,
    meter            String,
    quantity         Decimal(38, 9),
    event_count      UInt64,
    price_model      String,
    plan             String,
    plan_version     UInt32,
    amount           Decimal(38, 9),
    amount_unrounded String,
    rounding_mode    String,
    breakdown        String,
    segments         Array(String),
    version          UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(period_start)
ORDER BY (invoice_id, line_no);
