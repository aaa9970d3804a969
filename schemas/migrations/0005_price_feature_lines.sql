-- Lines of the price features: seats, coupon discounts and prepaid credit applications. Adding
-- Enum8 values is metadata-only on 18.16 and 23.8+; re-running it changes nothing. The list must
-- name every value, so a branch that adds another kind merges its values into this statement's
-- successor rather than editing this one.
ALTER TABLE invoice_lines MODIFY COLUMN kind Enum8('recurring' = 1, 'usage' = 2, 'tax' = 3, 'commitment' = 4, 'seats' = 5, 'discount' = 6, 'credit' = 7);
