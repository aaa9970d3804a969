-- Minimum-commitment true-up lines get their own kind. Adding an Enum8 value is a metadata-only
-- change on every supported version (18.16 and 23.8+), and re-running it changes nothing.
ALTER TABLE invoice_lines MODIFY COLUMN kind Enum8('recurring' = 1, 'usage' = 2, 'tax' = 3, 'commitment' = 4);
