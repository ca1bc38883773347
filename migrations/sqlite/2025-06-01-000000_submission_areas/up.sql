-- The area codes each submission lies in (its hamlet's commune, district and province on the
-- activity date, and its commune today), so that a supervisor's view is an index lookup.
CREATE TABLE submission_areas (
    submission_id BIGINT NOT NULL REFERENCES submissions (id),
    area_code TEXT NOT NULL,
    PRIMARY KEY (submission_id, area_code)
);
CREATE INDEX submission_areas_code ON submission_areas (area_code, submission_id);
