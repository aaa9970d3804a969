-- Tax and currency (docs/TAX.md): reporting-currency amounts on invoices, for dashboards only
-- (never what the customer owes). ADD COLUMN with a DEFAULT works on 18.16 and 23.8+; rows written
-- before this migration read as '' / 0. The writer names its columns in every INSERT, so the
-- position of these columns does not matter.
ALTER TABLE invoices ADD COLUMN reporting_currency LowCardinality(String) DEFAULT '';
ALTER TABLE invoices ADD COLUMN subtotal_base Decimal(38, 9) DEFAULT toDecimal128(0, 9);
ALTER TABLE invoices ADD COLUMN tax_base Decimal(38, 9) DEFAULT toDecimal128(0, 9);
ALTER TABLE invoices ADD COLUMN total_base Decimal(38, 9) DEFAULT toDecimal128(0, 9);
ALTER TABLE invoices ADD COLUMN fx_rate Decimal(38, 9) DEFAULT toDecimal128(0, 9);
ALTER TABLE invoices ADD COLUMN fx_date Date DEFAULT toDate(0);

-- Revenue per issue day, plan, customer and currency (invoice currency, plus the reporting
-- currency columns). `total` is the amount due after prepaid credits; `subtotal` is before tax.
CREATE VIEW IF NOT EXISTS revenue_daily AS
SELECT
    toDate(issued_at) AS day,
    plan,
    customer,
    currency,
    count() AS invoices,
    sum(subtotal) AS subtotal,
    sum(tax) AS tax,
    sum(total) AS total,
    any(reporting_currency) AS reporting_currency,
    sum(subtotal_base) AS subtotal_base,
    sum(total_base) AS total_base
FROM invoices FINAL
GROUP BY day, plan, customer, currency;

-- Receivables ageing per customer and currency: amounts due of finalized invoices by days past
-- due. Until the invoice lifecycle adds payment status and `due_at`, every finalized invoice with
-- an amount due counts as unpaid and is due on issue (`issued_at`); see docs/CLICKHOUSE.md.
CREATE VIEW IF NOT EXISTS receivables_ageing AS
SELECT
    customer,
    currency,
    count() AS invoices,
    sumIf(total, days_past_due <= 30) AS due_0_30,
    sumIf(total, days_past_due > 30 AND days_past_due <= 60) AS due_31_60,
    sumIf(total, days_past_due > 60 AND days_past_due <= 90) AS due_61_90,
    sumIf(total, days_past_due > 90) AS due_over_90,
    sum(total) AS outstanding
FROM
(
    SELECT customer, currency, total, toInt32(today()) - toInt32(toDate(issued_at)) AS days_past_due
    FROM invoices FINAL
    WHERE status = 'finalized' AND total > 0
)
GROUP BY customer, currency;

-- Usage mirrored from the ledger vs usage billed, per customer, meter and calendar month
-- (`period` = 'YYYY-MM' of the event time). Billing periods equal calendar months for anchor day
-- 1; for other anchors compare with the per-invoice query in docs/CLICKHOUSE.md.
CREATE VIEW IF NOT EXISTS usage_vs_billed AS
SELECT
    customer,
    meter,
    period,
    mirrored_events,
    mirrored_value,
    billed_events,
    billed_quantity,
    billed_amount,
    toInt64(mirrored_events) - toInt64(billed_events) AS unbilled_events
FROM
(
    SELECT customer, meter, formatDateTime(event_time, '%Y-%m') AS period, count() AS mirrored_events,
           sum(ifNull(value, toDecimal128(0, 9))) AS mirrored_value
    FROM usage_events
    GROUP BY customer, meter, period
) AS mirrored
ANY LEFT JOIN
(
    SELECT customer, meter, period, sum(event_count) AS billed_events, sum(quantity) AS billed_quantity, sum(amount) AS billed_amount
    FROM invoice_lines FINAL
    WHERE kind = 'usage'
    GROUP BY customer, meter, period
) AS billed USING (customer, meter, period);
