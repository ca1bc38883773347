DROP TABLE indicator_rollups;
