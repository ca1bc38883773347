-- The area registry: provinces, districts, communes and hamlets, each row one version of an area
-- valid from `valid_from` through `valid_to` (both inclusive; NULL = open). Codes are reused
-- across reforms (Sơn La's 75 new communes carry codes of old ones), so a code names an area
-- only together with a date.
CREATE TABLE areas (
    id INTEGER PRIMARY KEY NOT NULL,
    level TEXT NOT NULL,
    code TEXT NOT NULL,
    name TEXT NOT NULL,
    area_type TEXT,
    parent_id BIGINT REFERENCES areas (id),
    valid_from DATE,
    valid_to DATE,
    region TEXT,
    especially_difficult BOOLEAN,
    border BOOLEAN,
    demo BOOLEAN NOT NULL DEFAULT FALSE,
    centroid_lat DOUBLE PRECISION,
    centroid_lon DOUBLE PRECISION,
    -- GeoJSON geometry (Polygon or MultiPolygon), as imported.
    geometry TEXT,
    updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX areas_code_from ON areas (code, COALESCE(valid_from, '0001-01-01'));
CREATE INDEX areas_parent ON areas (parent_id);
CREATE INDEX areas_level ON areas (level);

-- Which area versions continue which (merged, split or re-parented units).
CREATE TABLE area_successions (
    predecessor_id BIGINT NOT NULL REFERENCES areas (id),
    successor_id BIGINT NOT NULL REFERENCES areas (id),
    PRIMARY KEY (predecessor_id, successor_id)
);
CREATE INDEX area_successions_successor ON area_successions (successor_id);

-- The hamlets a collector works in, by code (a hamlet keeps its code across the reform).
CREATE TABLE hamlet_assignments (
    user_id BIGINT NOT NULL REFERENCES users (id),
    hamlet_code TEXT NOT NULL,
    PRIMARY KEY (user_id, hamlet_code)
);

-- App keys derived from a stored nonce and a server secret, so the QR code can be shown again.
ALTER TABLE app_keys ADD COLUMN nonce TEXT;

-- What ingest derives from the answers: the hamlet and activity date (indicator periods and
-- area scoping filter on them), the pseudonymous beneficiary key, and the values of fields the
-- form marks sensitive, kept apart from `fields`.
ALTER TABLE submission_versions ADD COLUMN hamlet_code TEXT;
ALTER TABLE submission_versions ADD COLUMN activity_date DATE;
ALTER TABLE submission_versions ADD COLUMN beneficiary_key TEXT;
ALTER TABLE submission_versions ADD COLUMN sensitive TEXT;
CREATE INDEX submission_versions_hamlet_date ON submission_versions (hamlet_code, activity_date);
CREATE INDEX submission_versions_activity_date ON submission_versions (activity_date);
CREATE INDEX submission_versions_beneficiary ON submission_versions (beneficiary_key);

-- Geotag and assignment checks of each version; they never block a submission.
CREATE TABLE submission_flags (
    version_id BIGINT NOT NULL REFERENCES submission_versions (id),
    flag TEXT NOT NULL,
    PRIMARY KEY (version_id, flag)
);
CREATE INDEX submission_flags_flag ON submission_flags (flag);
