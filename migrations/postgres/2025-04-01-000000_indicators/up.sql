-- Project 8 indicators: maintained aggregates, the contribution each submission has applied,
-- the definitions in effect, targets and baselines, closed periods and their revisions.
--
-- `snapshot` in the figure tables: 0 = the live figures, > 0 = the frozen figures of a closed
-- period (indicator_periods.id), -1 = the scratch copy a verification recomputes into.

-- Figures from commune level up, per measure, area (one row per level: commune, district,
-- province), period (YYYY, YYYY-Qn, YYYY-MM) and the measure's finest disaggregation (`dims`, a
-- JSON object). `basis` and `map` say which figures a row belongs to: distinct measures have
-- rows for `provisional` and `confirmed`, on `as-recorded` and `current`; sums and counts store
-- each submission once, as `approved` (in both bases) or `pending` (provisional only), and on
-- `both` maps when it counts in the same area on both. For distinct measures `value` is the
-- number of keys whose latest fact in that area and period has these dims. Rows whose value is 0
-- are not kept. Hamlet figures are computed from the facts when asked for.
CREATE TABLE indicator_cells (
    snapshot BIGINT NOT NULL,
    measure TEXT NOT NULL,
    basis TEXT NOT NULL,
    map TEXT NOT NULL,
    level TEXT NOT NULL,
    period TEXT NOT NULL,
    area_id BIGINT NOT NULL,
    dims TEXT NOT NULL,
    value BIGINT NOT NULL,
    PRIMARY KEY (snapshot, measure, basis, map, level, period, area_id, dims)
);

-- What each counted submission contributes: one row per fact of its current version (a row of a
-- repeat, one sex of a split, a key), with the fact's own dims (area dims come from the
-- registry), in the bases its review state gives. Rejected submissions have none.
CREATE TABLE indicator_facts (
    snapshot BIGINT NOT NULL,
    submission_id BIGINT NOT NULL,
    measure TEXT NOT NULL,
    seq BIGINT NOT NULL,
    distinct_key TEXT,
    value BIGINT NOT NULL,
    hamlet_code TEXT NOT NULL,
    activity_date DATE NOT NULL,
    dims TEXT NOT NULL,
    provisional BOOLEAN NOT NULL,
    confirmed BOOLEAN NOT NULL,
    PRIMARY KEY (snapshot, submission_id, measure, seq)
);
CREATE INDEX indicator_facts_key ON indicator_facts (snapshot, measure, distinct_key);
CREATE INDEX indicator_facts_place ON indicator_facts (snapshot, measure, hamlet_code, activity_date);

-- The contribution each submission has applied to the live figures: which version, counted in
-- which bases. The next change subtracts exactly this before adding the new one.
CREATE TABLE indicator_applied (
    submission_id BIGINT PRIMARY KEY NOT NULL REFERENCES submissions (id),
    version_id BIGINT NOT NULL REFERENCES submission_versions (id),
    provisional BOOLEAN NOT NULL,
    confirmed BOOLEAN NOT NULL
);

-- The definitions the live figures were computed with (TOML as loaded) and a fingerprint of
-- each measure's counting rules: a changed fingerprint rebuilds that measure.
CREATE TABLE indicator_definitions (
    indicator TEXT PRIMARY KEY NOT NULL,
    source TEXT NOT NULL,
    fingerprints TEXT NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- Targets per indicator measure, area version and year.
CREATE TABLE indicator_targets (
    snapshot BIGINT NOT NULL,
    indicator TEXT NOT NULL,
    measure TEXT NOT NULL,
    area_id BIGINT NOT NULL,
    year BIGINT NOT NULL,
    target DOUBLE PRECISION NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (snapshot, indicator, measure, area_id, year)
);

-- Denominators of ratio indicators (e.g. women of reproductive age of the high home-birth
-- groups), per area version and year.
CREATE TABLE indicator_baselines (
    snapshot BIGINT NOT NULL,
    baseline TEXT NOT NULL,
    area_id BIGINT NOT NULL,
    year BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (snapshot, baseline, area_id, year)
);

-- Closed reporting periods; the id numbers the snapshot of their figures.
CREATE TABLE indicator_periods (
    id BIGSERIAL PRIMARY KEY,
    period TEXT NOT NULL UNIQUE,
    closed_at TIMESTAMP NOT NULL,
    closed_by BIGINT REFERENCES users (id),
    note TEXT,
    definitions TEXT NOT NULL
);

-- Changes to the figures of a closed period after it was closed.
CREATE TABLE indicator_revisions (
    id BIGSERIAL PRIMARY KEY,
    period_id BIGINT NOT NULL REFERENCES indicator_periods (id),
    submission_id BIGINT REFERENCES submissions (id),
    reason TEXT NOT NULL,
    user_id BIGINT REFERENCES users (id),
    at TIMESTAMP NOT NULL,
    changes TEXT NOT NULL
);
CREATE INDEX indicator_revisions_period ON indicator_revisions (period_id, id);

-- Lets the indicators notice a changed area registry cheaply.
CREATE INDEX areas_updated ON areas (updated_at);
