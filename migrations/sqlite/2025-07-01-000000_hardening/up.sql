-- Failed sign-ins, counted per account ('user:NAME') and per address ('addr:IP') in the
-- database so that every server instance on it sees the same counts and lock-outs.
CREATE TABLE auth_throttle (
    key TEXT PRIMARY KEY NOT NULL,
    failures BIGINT NOT NULL,
    window_start TIMESTAMP NOT NULL,
    locked_until TIMESTAMP,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX auth_throttle_updated ON auth_throttle (updated_at);

-- Digest nonce counts already used for a state-changing request: a replayed request is refused
-- by whichever instance receives it.
CREATE TABLE digest_nonce_uses (
    nonce TEXT NOT NULL,
    nc TEXT NOT NULL,
    cnonce TEXT NOT NULL,
    used_at TIMESTAMP NOT NULL,
    PRIMARY KEY (nonce, nc, cnonce)
);
CREATE INDEX digest_nonce_uses_used ON digest_nonce_uses (used_at);

-- Access tokens carry the generation of their user at issue; raising it revokes them all.
CREATE TABLE token_generations (
    user_id BIGINT PRIMARY KEY NOT NULL REFERENCES users (id),
    generation BIGINT NOT NULL
);

-- How a form's submissions are protected: sealed raw XML, reduced-precision geotags, consent.
CREATE TABLE form_protection (
    form_id TEXT PRIMARY KEY NOT NULL REFERENCES forms (form_id),
    sensitive BOOLEAN NOT NULL,
    geo_decimals BIGINT NOT NULL,
    consent_field TEXT,
    updated_at TIMESTAMP NOT NULL
);

-- The consent or legal basis a submission version records, where its form has such a field.
CREATE TABLE submission_consent (
    version_id BIGINT PRIMARY KEY NOT NULL REFERENCES submission_versions (id),
    field TEXT NOT NULL,
    value TEXT,
    recorded_at TIMESTAMP NOT NULL
);

-- Every read of decrypted sensitive data: who, what, when, and the purpose they stated.
CREATE TABLE access_log (
    id INTEGER PRIMARY KEY NOT NULL,
    at TIMESTAMP NOT NULL,
    user_id BIGINT NOT NULL,
    username TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    purpose TEXT NOT NULL
);
CREATE INDEX access_log_at ON access_log (at);
