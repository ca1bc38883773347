DROP TABLE form_sources;
