-- files: generated documents and uploads. The bytes live under
-- DATA_DIR/files/<storage_name>; storage_name is chosen by the server and
-- never derived from client input.
--   kind       pdf, docx, csv, screenshot or upload
--   file_name  sanitised name offered on download
--   mime_type  sniffed (uploads) or produced (generated) content type
--   size       bytes; sha256 hex digest of the content
--   job_id     the generation job, NULL for uploads
CREATE TABLE files (
    id            TEXT PRIMARY KEY NOT NULL,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL CHECK (kind IN ('pdf', 'docx', 'csv', 'screenshot', 'upload')),
    file_name     TEXT NOT NULL,
    mime_type     TEXT NOT NULL,
    size          INTEGER NOT NULL,
    sha256        TEXT NOT NULL,
    storage_name  TEXT NOT NULL UNIQUE,
    job_id        TEXT REFERENCES jobs (id) ON DELETE SET NULL,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE INDEX files_user ON files (user_id, id);
CREATE INDEX files_created_at ON files (created_at);
CREATE INDEX files_job ON files (job_id);
