DROP TABLE deliveries;
DROP TABLE push_targets;
