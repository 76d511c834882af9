-- jobs: the durable job queue. Every piece of long or failure-prone work
-- (AI chat, document generation, screenshots, load tests, maintenance,
-- backups) is a row here, executed at least once by the in-process runner.
--   kind              what the job does ('ai.chat', 'files.pdf', ...)
--   status            queued -> running -> succeeded | failed | cancelled
--                     (running -> queued again on a retry or a lost lease)
--   priority          higher runs first; then oldest (id order)
--   payload           JSON input of the job
--   user_id           owner (NULL for system jobs)
--   idempotency_key   client key: the same key for the same owner and kind
--                     returns the existing job instead of a new one
--   attempts          attempts started so far; max_attempts is the limit
--   run_at            not claimed before this time (scheduling, backoff)
--   progress_percent  0-100, with progress_message
--   result            JSON output of a succeeded job
--   error_code, error_message  last error (kept on a failed job)
--   lease_token       identifies the attempt holding the job; a completion
--                     is accepted only with the current token
--   lease_owner       the runner (process) holding the lease
--   lease_expires_at  the runner extends it while the job runs; a lapsed
--                     lease means the process died and the job is re-queued
--   cancel_requested  1 once cancellation was asked for a running job
CREATE TABLE jobs (
    id                TEXT PRIMARY KEY NOT NULL,
    kind              TEXT NOT NULL,
    status            TEXT NOT NULL DEFAULT 'queued'
                      CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    priority          INTEGER NOT NULL DEFAULT 0,
    payload           TEXT NOT NULL DEFAULT '{}',
    user_id           TEXT REFERENCES users (id) ON DELETE SET NULL,
    idempotency_key   TEXT,
    attempts          INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL DEFAULT 3,
    run_at            TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    progress_percent  INTEGER NOT NULL DEFAULT 0,
    progress_message  TEXT,
    result            TEXT,
    error_code        TEXT,
    error_message     TEXT,
    lease_token       TEXT,
    lease_owner       TEXT,
    lease_expires_at  TEXT,
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    created_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    started_at        TEXT,
    finished_at       TEXT,
    updated_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- The claim path: only queued rows are in this index, so its cost does not
-- grow with the number of finished jobs kept.
CREATE INDEX jobs_claim ON jobs (priority DESC, id) WHERE status = 'queued';
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_user ON jobs (user_id, id);
CREATE INDEX jobs_finished_at ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_created_at ON jobs (created_at);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (user_id, kind, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
