-- Submissions whose figures are not yet up to date with their current version and review state.
-- A stored submission (or edit) adds its row in the transaction that stores it, so the phone's
-- acknowledgement never waits for the figures; indicators::backlog applies the rows in large
-- groups (most submissions of a group change the same district and province figures) and every
-- read of the figures first applies what is left. by_user is the user who made the change, for
-- the revisions of closed periods.
-- INTEGER PRIMARY KEY: the row id itself, one B-tree to write.
CREATE TABLE indicator_backlog (
    submission_id INTEGER PRIMARY KEY NOT NULL,
    by_user BIGINT
);
