-- Roll-ups of indicator_cells: per figure (snapshot … area_id) the total (dim = '', dim_value =
-- '') and the sum for each value of each single dimension (dim, dim_value). A values table
-- broken down by at most one dimension reads these, a row per figure and value, instead of every
-- combination of dimensions its cells hold (tens of thousands per province table). Written by
-- the same statements as the cells (indicators::store::add_to_cells), so the two always agree;
-- a cell without the dimension counts only in the total. Rows whose value is 0 are not kept.
CREATE TABLE indicator_rollups (
    snapshot BIGINT NOT NULL,
    measure TEXT NOT NULL,
    basis TEXT NOT NULL,
    map TEXT NOT NULL,
    level TEXT NOT NULL,
    period TEXT NOT NULL,
    area_id BIGINT NOT NULL,
    dim TEXT NOT NULL,
    dim_value TEXT NOT NULL,
    value BIGINT NOT NULL,
    PRIMARY KEY (snapshot, measure, basis, map, level, period, area_id, dim, dim_value)
);

INSERT INTO indicator_rollups (snapshot, measure, basis, map, level, period, area_id, dim, dim_value, value)
SELECT snapshot, measure, basis, map, level, period, area_id, '', '', SUM(value)
FROM indicator_cells
GROUP BY snapshot, measure, basis, map, level, period, area_id
HAVING SUM(value) <> 0;

INSERT INTO indicator_rollups (snapshot, measure, basis, map, level, period, area_id, dim, dim_value, value)
SELECT c.snapshot, c.measure, c.basis, c.map, c.level, c.period, c.area_id, d.key, d.value, SUM(c.value)
FROM indicator_cells c, jsonb_each_text(c.dims::jsonb) d
GROUP BY c.snapshot, c.measure, c.basis, c.map, c.level, c.period, c.area_id, d.key, d.value
HAVING SUM(c.value) <> 0;

-- Statistics now, not at autovacuum's next pass: without them the planner scanned the whole
-- table for every values table until then.
ANALYZE indicator_rollups;
