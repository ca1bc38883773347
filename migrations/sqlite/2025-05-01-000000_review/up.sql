-- Review: areas a supervisor covers, review history, comments, the audit log, browser sessions.

-- Area codes (commune, or district before July 2025) a supervisor or officer covers.
CREATE TABLE user_areas (
    user_id BIGINT NOT NULL REFERENCES users (id),
    area_code TEXT NOT NULL,
    PRIMARY KEY (user_id, area_code)
);

-- Every review state change of a submission: who, when, why.
CREATE TABLE submission_reviews (
    id INTEGER PRIMARY KEY NOT NULL,
    submission_id BIGINT NOT NULL REFERENCES submissions (id),
    from_state TEXT NOT NULL,
    state TEXT NOT NULL,
    comment TEXT,
    user_id BIGINT NOT NULL REFERENCES users (id),
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX submission_reviews_submission ON submission_reviews (submission_id, id);

-- The conversation about a submission between supervisors and the collector.
CREATE TABLE submission_comments (
    id INTEGER PRIMARY KEY NOT NULL,
    submission_id BIGINT NOT NULL REFERENCES submissions (id),
    user_id BIGINT NOT NULL REFERENCES users (id),
    body TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX submission_comments_submission ON submission_comments (submission_id, id);

-- Append-only record of every change people make; the triggers refuse edits and deletions.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY NOT NULL,
    at TIMESTAMP NOT NULL,
    actor_id BIGINT REFERENCES users (id),
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    details TEXT NOT NULL
);
CREATE INDEX audit_log_target ON audit_log (target, id);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

-- Signed-in browsers: the cookie holds a random token, the table only its hash.
CREATE TABLE web_sessions (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users (id),
    csrf_token TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);

-- The review queue pages by id within a state or a form; these keep each page an index range.
CREATE INDEX submissions_state_id ON submissions (review_state, id);
CREATE INDEX submissions_form_id ON submissions (form_id, id);
