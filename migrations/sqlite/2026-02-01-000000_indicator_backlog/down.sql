DROP TABLE indicator_backlog;
