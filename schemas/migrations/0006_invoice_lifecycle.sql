-- Invoice lifecycle (draft → finalized → paid / void / uncollectible), numbering, credit notes
-- and adjustment lines. Every statement runs on 18.16 and on 23.8+: Enum8 values are added with
-- MODIFY COLUMN (metadata only), columns with plain ADD COLUMN (18.16 has no ADD COLUMN IF NOT
-- EXISTS; the migration is recorded once applied, so it never runs twice). `invoices` already is
-- ReplacingMergeTree(version) ordered by invoice_id, so the engine stays: each state change
-- inserts a new version of the header row.
ALTER TABLE invoices MODIFY COLUMN status Enum8('draft' = 1, 'finalized' = 2, 'paid' = 3, 'void' = 4, 'uncollectible' = 5);
ALTER TABLE invoices ADD COLUMN number String AFTER status;
ALTER TABLE invoices ADD COLUMN status_at DateTime AFTER number;
ALTER TABLE invoices ADD COLUMN lines_version UInt64 DEFAULT 1 AFTER status_at;

-- The list names every value (0005's plus adjustment); a later kind goes into a new migration.
ALTER TABLE invoice_lines MODIFY COLUMN kind Enum8('recurring' = 1, 'usage' = 2, 'tax' = 3, 'commitment' = 4, 'seats' = 5, 'discount' = 6, 'credit' = 7, 'adjustment' = 8);

-- One row per lifecycle transition (none → draft, draft → draft refreshed, draft → finalized,
-- finalized → paid, …). Ids are deterministic, so two closers finalizing the same invoice at
-- once write identical rows that a merge (or FINAL) collapses.
CREATE TABLE IF NOT EXISTS invoice_events
(
    event_id    UUID,
    invoice_id  UUID,
    number      String,
    from_status Enum8('none' = 0, 'draft' = 1, 'finalized' = 2, 'paid' = 3, 'void' = 4, 'uncollectible' = 5),
    to_status   Enum8('draft' = 1, 'finalized' = 2, 'paid' = 3, 'void' = 4, 'uncollectible' = 5),
    at          DateTime,
    actor       String,
    reason      String,
    version     UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(at)
ORDER BY (invoice_id, event_id);

-- Credit notes: their own number series, always referencing one invoice.
CREATE TABLE IF NOT EXISTS credit_notes
(
    credit_note_id  UUID,
    number          String,
    invoice_id      UUID,
    invoice_number  String,
    customer        String,
    subscription_id String,
    period          String,
    currency        String,
    amount          Decimal(38, 9),
    reason          String,
    issued_at       DateTime,
    version         UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY credit_note_id;

CREATE TABLE IF NOT EXISTS credit_note_lines
(
    credit_note_id  UUID,
    line_no         UInt32,
    invoice_line_no UInt32,
    description     String,
    amount          Decimal(38, 9),
    version         UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (credit_note_id, line_no);

-- The current state of every invoice without FINAL: the row with its highest version (argMax
-- by version, computed as max(version) per invoice), one row per invoice even when concurrent
-- closers wrote identical duplicates (LIMIT 1 BY). Correct before and after merges. Values are
-- not aggregated with argMax(column, version): on 18.16 argMax/any over Decimal(38, 9) keep
-- their state in an arena whose Decimal128 read-back crashed the server
-- (ColumnDecimal::deserializeAndInsertFromArena, SIGSEGV) while testing this view.
CREATE VIEW IF NOT EXISTS invoices_current AS
SELECT *
FROM invoices
WHERE (invoice_id, version) IN (SELECT invoice_id, max(version) FROM invoices GROUP BY invoice_id)
LIMIT 1 BY invoice_id;

-- The current lines of every invoice without FINAL: the lines of its current lines version, one
-- row per line even when concurrent closers wrote identical duplicates.
CREATE VIEW IF NOT EXISTS invoice_lines_current AS
SELECT *
FROM invoice_lines
WHERE (invoice_id, version) IN
    (SELECT invoice_id, lines_version FROM invoices
     WHERE (invoice_id, version) IN (SELECT invoice_id, max(version) FROM invoices GROUP BY invoice_id))
LIMIT 1 BY invoice_id, line_no;
