-- The columns are the same either way; only their order changed.
SELECT 1;
