-- Exports that run in the background: any instance may claim a queued job, and a running job
-- whose heartbeat stopped (its instance crashed) is claimed again and started over.
CREATE TABLE export_jobs (
    id TEXT PRIMARY KEY NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users (id),
    form_id TEXT NOT NULL,
    format TEXT NOT NULL,
    -- The export's parameters as JSON (see exports::Spec).
    spec TEXT NOT NULL,
    -- queued, running, done, failed or expired (the file was deleted after the retention time).
    status TEXT NOT NULL,
    total BIGINT,
    done BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    file_size BIGINT,
    error TEXT,
    owner TEXT,
    heartbeat_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP
);
CREATE INDEX export_jobs_status ON export_jobs (status, heartbeat_at);
