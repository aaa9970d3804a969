-- Due dates (docs/CLICKHOUSE.md, docs/INVOICES.md): invoices carry net-N payment terms as a stored
-- `due_at` (00:00 UTC of the due day), and receivables are aged by days past it.
--
-- `due_at` is written by every header insert (the writer names its columns). Rows written before
-- this migration, and inserts that leave it out, read `issued_at` (the DEFAULT, computed at read
-- time for old parts on 18.16 and 23.8+): due on issue, which is how 0007 aged them. Checked on
-- 18.16.1: ADD COLUMN … DEFAULT issued_at AFTER issued_at, old rows read their issued_at before
-- and after OPTIMIZE … FINAL; a repeated ADD COLUMN fails only as "already exists" (Code: 44),
-- which `migrate` takes as applied.
ALTER TABLE invoices ADD COLUMN due_at DateTime DEFAULT issued_at AFTER issued_at;

-- `invoices_current` is a `SELECT *` view, whose columns ClickHouse fixed when it was created
-- (0009): re-created unchanged, it sees `due_at` (`DROP TABLE`: 18.16 has no `DROP VIEW`).
-- `invoice_lines_current` reads no `invoices` column but `lines_version`, so it stays.
DROP TABLE IF EXISTS receivables_ageing;
DROP TABLE IF EXISTS invoices_current;
CREATE VIEW IF NOT EXISTS invoices_current AS
SELECT *
FROM invoices
WHERE (invoice_id, version) IN (SELECT invoice_id, max(version) FROM invoices GROUP BY invoice_id)
LIMIT 1 BY invoice_id;

-- Receivables ageing per customer and currency: the amounts due (`total`) of open invoices by
-- days past due, `days_past_due = today − due day` in UTC days (both sides `toDate(…, 'UTC')`,
-- whatever the server's time zone):
--   not_yet_due  days_past_due <= 0   (due later, or today: payable through the due day)
--   due_1_30     1 ..= 30
--   due_31_60    31 ..= 60
--   due_61_90    61 ..= 90
--   due_over_90  >= 91
-- `outstanding` is their sum. Open = the current header version (`invoices_current`) has status
-- `finalized`: issued, and neither paid, void nor written off (`uncollectible`); drafts are not
-- issued yet. Invoices with nothing to pay (`total <= 0`, e.g. covered by credits) are left out.
-- Decimals are only summed (sumIf), never grouped by or argMax'd: that crashes 18.16.
CREATE VIEW IF NOT EXISTS receivables_ageing AS
SELECT
    customer,
    currency,
    count() AS invoices,
    sumIf(total, days_past_due <= 0) AS not_yet_due,
    sumIf(total, days_past_due >= 1 AND days_past_due <= 30) AS due_1_30,
    sumIf(total, days_past_due >= 31 AND days_past_due <= 60) AS due_31_60,
    sumIf(total, days_past_due >= 61 AND days_past_due <= 90) AS due_61_90,
    sumIf(total, days_past_due >= 91) AS due_over_90,
    sum(total) AS outstanding
FROM
(
    SELECT customer, currency, total,
           toInt32(toDate(now(), 'UTC')) - toInt32(toDate(due_at, 'UTC')) AS days_past_due
    FROM invoices_current
    WHERE status = 'finalized' AND total > 0
)
GROUP BY customer, currency;
