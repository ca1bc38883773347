-- A column stored after a large value is reached by walking that value's overflow pages
-- (SQLite): every read of an area walked its boundary to get to updated_at, a district's 5
-- pages and the province's 18 for each submission's chain of areas. The boundary goes last,
-- where only a read of the boundary itself walks it. (PostgreSQL keeps large values apart
-- anyway; both schemas keep one column order.)
ALTER TABLE areas ADD COLUMN geometry_last TEXT;
UPDATE areas SET geometry_last = geometry;
ALTER TABLE areas DROP COLUMN geometry;
ALTER TABLE areas RENAME COLUMN geometry_last TO geometry;
