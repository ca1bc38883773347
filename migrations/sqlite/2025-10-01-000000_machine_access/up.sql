-- Long-lived API keys of service accounts. Only the SHA-256 of a key is stored: the key is
-- shown once, when an administrator creates it.
CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users (id),
    name TEXT NOT NULL,
    -- The first characters of the key, so that people can tell keys apart.
    prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    -- Space-separated scopes (read_indicators, read_submissions, read_sensitive, export, administer).
    scopes TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    created_by BIGINT NOT NULL,
    expires_at TIMESTAMP,
    revoked_at TIMESTAMP
);
CREATE INDEX api_keys_user ON api_keys (user_id);

-- The keys that sign access tokens, named by the `kid` in each token's header. The one without
-- `retired_at` signs new tokens; retired ones still verify the tokens they signed until those
-- expire.
CREATE TABLE token_signing_keys (
    kid TEXT PRIMARY KEY NOT NULL,
    secret TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    retired_at TIMESTAMP
);
-- The single signing key of earlier releases keeps verifying (and signing) until the first
-- rotation, so an upgrade logs nobody out; tokens without a `kid` were signed with it.
INSERT INTO token_signing_keys (kid, secret, created_at)
    SELECT 'legacy', value, CURRENT_TIMESTAMP FROM settings WHERE name = 'token_key';
DELETE FROM settings WHERE name = 'token_key';

-- Every change to a submission (created, edited, review_changed, deleted), for incremental
-- pulls. The feed reads it in (txid, seq) order: on SQLite txid stays 0 and seq, given out by
-- the one writer, is commit order.
CREATE TABLE submission_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    txid BIGINT NOT NULL DEFAULT 0,
    submission_id BIGINT NOT NULL,
    instance_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    at TIMESTAMP NOT NULL
);
CREATE INDEX submission_changes_order ON submission_changes (txid, seq);
CREATE INDEX submission_changes_submission ON submission_changes (submission_id);
INSERT INTO submission_changes (submission_id, instance_id, kind, at)
    SELECT id, instance_id, 'created', created_at FROM submissions ORDER BY id;

-- What remains of a deleted submission: enough to tell the clients that pulled it, and to
-- decide who may learn of the deletion (its collector and the areas it lay in).
CREATE TABLE deleted_submissions (
    submission_id BIGINT PRIMARY KEY NOT NULL,
    instance_id TEXT NOT NULL,
    form_id TEXT NOT NULL,
    collector_id BIGINT NOT NULL,
    deleted_at TIMESTAMP NOT NULL,
    deleted_by BIGINT NOT NULL
);
CREATE TABLE deleted_submission_areas (
    submission_id BIGINT NOT NULL,
    area_code TEXT NOT NULL,
    PRIMARY KEY (submission_id, area_code)
);
CREATE INDEX deleted_submission_areas_code ON deleted_submission_areas (area_code);
