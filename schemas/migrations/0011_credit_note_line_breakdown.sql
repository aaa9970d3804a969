-- Credit notes for late usage (docs/INVOICES.md "Late usage"): when late usage of a finalized
-- period nets negative, the close issues a credit note on that period's invoice whose lines say
-- what they credit, as JSON in `breakdown` (the period, line key, billed and re-rated quantity and
-- amount, the tax treatment). Later closes read it to count what was credited as billed, so a
-- credit is issued once.
--
-- Rows written before this migration, and manual credit notes, read `'{}'`. Checked on 18.16.1:
-- ADD COLUMN … DEFAULT '{}' AFTER amount; a repeated ADD COLUMN fails only as "already exists"
-- (Code: 44), which `migrate` takes as applied.
ALTER TABLE credit_note_lines ADD COLUMN breakdown String DEFAULT '{}' AFTER amount;
