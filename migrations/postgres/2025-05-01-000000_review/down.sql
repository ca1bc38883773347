DROP INDEX submissions_form_id;
DROP INDEX submissions_state_id;
DROP TABLE web_sessions;
DROP TABLE audit_log;
DROP FUNCTION audit_log_append_only();
DROP TABLE submission_comments;
DROP TABLE submission_reviews;
DROP TABLE user_areas;
