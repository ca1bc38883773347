DROP TABLE deleted_submission_areas;
DROP TABLE deleted_submissions;
DROP TABLE submission_changes;
INSERT INTO settings (name, value) SELECT 'token_key', secret FROM token_signing_keys WHERE retired_at IS NULL;
DROP TABLE token_signing_keys;
DROP TABLE api_keys;
