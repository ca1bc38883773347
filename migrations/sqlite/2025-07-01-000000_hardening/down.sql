DROP TABLE access_log;
DROP TABLE submission_consent;
DROP TABLE form_protection;
DROP TABLE token_generations;
DROP TABLE digest_nonce_uses;
DROP TABLE auth_throttle;
