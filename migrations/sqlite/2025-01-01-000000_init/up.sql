-- Server-wide secrets and settings shared by every instance on this database.
CREATE TABLE settings (
    name TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE users (
    id INTEGER PRIMARY KEY NOT NULL,
    username TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    -- md5(username:realm:password) for HTTP Digest, which ODK Collect uses over plain http.
    digest_ha1 TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE app_keys (
    id INTEGER PRIMARY KEY NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users (id),
    key_hash TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP
);
CREATE INDEX app_keys_user ON app_keys (user_id);

CREATE TABLE forms (
    form_id TEXT PRIMARY KEY NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE form_versions (
    id INTEGER PRIMARY KEY NOT NULL,
    form_id TEXT NOT NULL REFERENCES forms (form_id),
    version TEXT NOT NULL,
    title TEXT NOT NULL,
    state TEXT NOT NULL,
    xml BLOB NOT NULL,
    md5 TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    published_at TIMESTAMP,
    UNIQUE (form_id, version)
);

CREATE TABLE form_media (
    id INTEGER PRIMARY KEY NOT NULL,
    form_version_id BIGINT NOT NULL REFERENCES form_versions (id),
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    md5 TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (form_version_id, filename)
);

CREATE TABLE form_assignments (
    user_id BIGINT NOT NULL REFERENCES users (id),
    form_id TEXT NOT NULL REFERENCES forms (form_id),
    PRIMARY KEY (user_id, form_id)
);

CREATE TABLE submissions (
    id INTEGER PRIMARY KEY NOT NULL,
    -- instanceID of the earliest known version of this submission.
    instance_id TEXT NOT NULL UNIQUE,
    form_id TEXT NOT NULL REFERENCES forms (form_id),
    form_version TEXT NOT NULL,
    collector_id BIGINT NOT NULL REFERENCES users (id),
    review_state TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX submissions_form ON submissions (form_id, form_version);
CREATE INDEX submissions_collector ON submissions (collector_id);
CREATE INDEX submissions_created ON submissions (created_at);

CREATE TABLE submission_versions (
    id INTEGER PRIMARY KEY NOT NULL,
    submission_id BIGINT NOT NULL REFERENCES submissions (id),
    instance_id TEXT NOT NULL UNIQUE,
    deprecated_id TEXT,
    form_version TEXT NOT NULL,
    xml BLOB NOT NULL,
    xml_sha256 TEXT NOT NULL,
    instance_name TEXT,
    collector_id BIGINT NOT NULL REFERENCES users (id),
    device_id TEXT,
    received_at TIMESTAMP NOT NULL,
    geo_lat DOUBLE PRECISION,
    geo_lon DOUBLE PRECISION,
    geo_alt DOUBLE PRECISION,
    geo_accuracy DOUBLE PRECISION,
    fields TEXT NOT NULL,
    is_current BOOLEAN NOT NULL
);
CREATE INDEX submission_versions_submission ON submission_versions (submission_id);
CREATE INDEX submission_versions_deprecated ON submission_versions (deprecated_id);

CREATE TABLE attachments (
    id INTEGER PRIMARY KEY NOT NULL,
    version_id BIGINT NOT NULL REFERENCES submission_versions (id),
    name TEXT NOT NULL,
    sha256 TEXT,
    size BIGINT,
    content_type TEXT,
    received_at TIMESTAMP,
    UNIQUE (version_id, name)
);
