-- Upstream systems the province pushes to: webhooks (submission events) and DHIS2 instances
-- (indicator values). `secret` is sealed with the data key (the webhook signing secret, or the
-- DHIS2 credentials as JSON); `settings` is JSON (events, or the DHIS2 mapping and schedule).
CREATE TABLE push_targets (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    url TEXT NOT NULL,
    secret BYTEA NOT NULL,
    settings TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    -- When the schedule next pushes a DHIS2 target's values.
    next_push_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- The outbox: one row per request to send, written in the transaction of the change that causes
-- it. A worker claims a due row by setting a lease (`leased_by`, `lease_until`), sends it, and
-- records the outcome; `retry_from` starts the give-up clock (creation, or a manual retry).
CREATE TABLE deliveries (
    id BIGSERIAL PRIMARY KEY,
    target_id BIGINT NOT NULL REFERENCES push_targets (id),
    event TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    retry_from TIMESTAMP NOT NULL,
    next_attempt_at TIMESTAMP NOT NULL,
    leased_by TEXT,
    lease_until TIMESTAMP,
    last_error TEXT,
    delivered_at TIMESTAMP
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_target ON deliveries (target_id, id);
