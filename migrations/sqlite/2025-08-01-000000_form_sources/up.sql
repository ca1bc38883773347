-- The XLSForm workbook a form version was generated from, kept byte for byte so the designer can
-- download it, edit it and upload it again. Versions uploaded as XForm XML have no row here.
CREATE TABLE form_sources (
    form_version_id BIGINT PRIMARY KEY NOT NULL REFERENCES form_versions (id),
    filename TEXT,
    format TEXT NOT NULL,
    content_type TEXT NOT NULL,
    bytes BLOB NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    -- The conversion's warnings, a JSON array of {sheet, row, column, message}.
    warnings TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
