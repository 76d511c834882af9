-- Operations: built-in load tests and database backups.

-- load_tests: one row per load test started with POST /api/load-test/start.
--   job_id          the `loadtest.run` job that executes it
--   user_id         the admin who started it
--   status          queued -> running -> succeeded | failed | cancelled
--                   (succeeded means the test ran to its end; whether its
--                   thresholds passed is `passed`)
--   request         JSON: the scenario and settings as submitted
--   mode            'concurrency' (closed model: N workers in a loop) or
--                   'rate' (open model: a target request rate)
--   concurrency     workers (or the in-flight cap at a target rate)
--   target_rps      target requests/s (NULL in concurrency mode)
--   requests, succeeded, failed   totals (succeeded: status < 400)
--   achieved_rps    requests completed per second of test
--   p50_ms, p95_ms, p99_ms, max_ms  latency of successful requests (ms)
--   error_rate      failed / requests
--   passed          1 every threshold passed, 0 one failed, NULL none set
--   report          JSON: the full result exactly as served by
--                   GET /api/load-test/results/{id} (use json_extract(),
--                   e.g. json_extract(report, '$.statusCodes."200"'))
--   error           why a test failed to run (not a threshold verdict)
CREATE TABLE load_tests (
    id                TEXT PRIMARY KEY NOT NULL,
    job_id            TEXT,
    user_id           TEXT REFERENCES users (id) ON DELETE SET NULL,
    status            TEXT NOT NULL DEFAULT 'queued'
                      CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    request           TEXT NOT NULL,
    mode              TEXT NOT NULL CHECK (mode IN ('concurrency', 'rate')),
    concurrency       INTEGER NOT NULL,
    target_rps        REAL,
    duration_seconds  INTEGER,
    max_requests      INTEGER,
    requests          INTEGER,
    succeeded         INTEGER,
    failed            INTEGER,
    achieved_rps      REAL,
    p50_ms            REAL,
    p95_ms            REAL,
    p99_ms            REAL,
    max_ms            REAL,
    error_rate        REAL,
    passed            INTEGER CHECK (passed IN (0, 1)),
    report            TEXT,
    error             TEXT,
    created_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    started_at        TEXT,
    finished_at       TEXT
);

CREATE INDEX load_tests_created_at ON load_tests (created_at);
CREATE INDEX load_tests_active ON load_tests (status) WHERE status IN ('queued', 'running');

-- backups: one row per database backup made by the service (scheduled or
-- requested by an admin; the `backup` subcommand does not write here).
--   job_id        the `maintenance.backup` job that made it
--   trigger       'schedule' or 'admin'
--   file_name     file inside DATA_DIR/backups
--   status        running -> succeeded | failed; 'deleted' once rotated out
--                 by BACKUP_KEEP
--   size_bytes    size of the backup file
--   integrity     'ok', or the first problem PRAGMA integrity_check found
--   duration_ms   time to write and check it
CREATE TABLE backups (
    id           TEXT PRIMARY KEY NOT NULL,
    job_id       TEXT,
    trigger      TEXT NOT NULL CHECK (trigger IN ('schedule', 'admin')),
    file_name    TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'running'
                 CHECK (status IN ('running', 'succeeded', 'failed', 'deleted')),
    size_bytes   INTEGER,
    integrity    TEXT,
    duration_ms  INTEGER,
    error        TEXT,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    finished_at  TEXT
);

CREATE INDEX backups_created_at ON backups (created_at);
