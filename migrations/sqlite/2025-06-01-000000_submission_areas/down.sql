DROP TABLE submission_areas;
