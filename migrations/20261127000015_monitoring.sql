-- Monitoring: the request log, its hourly roll-ups, daily active users,
-- error tracking and alerts. Written by the monitoring writer in batches
-- (never on the request path). Timestamps follow the conventions of
-- 20261127000001_accounts.sql (TEXT, RFC 3339 UTC with ms and 'Z').

-- request_log: one row per HTTP request (raw; kept LOG_RETENTION_DAYS days,
-- then deleted; request_rollups keeps their hourly aggregates).
--   at           when the request arrived
--   method       GET, POST, ... ('OTHER' for unusual methods)
--   route        the route template ('/api/users/{userId}'), never the raw
--                path; 'unmatched' for paths no route matches
--   status       HTTP status answered
--   duration_ms  time to produce the response head, in milliseconds
--   bytes_in     request Content-Length as declared (NULL when absent)
--   bytes_out    response body size when known (NULL for streams)
--   user_id      the authenticated caller (NULL when anonymous); no foreign
--                key, so the log outlives deleted accounts
--   client_ip    the client address (X-Forwarded-For per TRUST_PROXY_HOPS)
--   user_agent   truncated to 256 characters, control characters escaped
--   request_id   the x-request-id of the request (joins error_events)
--   source       'api' for real traffic, 'loadtest' for the built-in load
--                tester's requests
--   loadtest_id  the load test's id when source = 'loadtest'
CREATE TABLE request_log (
    id           INTEGER PRIMARY KEY,
    at           TEXT NOT NULL,
    method       TEXT NOT NULL,
    route        TEXT NOT NULL,
    status       INTEGER NOT NULL,
    duration_ms  REAL NOT NULL,
    bytes_in     INTEGER,
    bytes_out    INTEGER,
    user_id      TEXT,
    client_ip    TEXT,
    user_agent   TEXT,
    request_id   TEXT,
    source       TEXT NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'loadtest')),
    loadtest_id  TEXT
);

CREATE INDEX request_log_at ON request_log (at);
CREATE INDEX request_log_user ON request_log (user_id, id) WHERE user_id IS NOT NULL;

-- request_rollups: hourly aggregates of request_log per route, method,
-- status and source, maintained as rows are written and kept
-- ROLLUP_RETENTION_DAYS days. Use these for anything older than a few days.
--   hour         start of the hour ('2026-11-27T18:00:00.000Z')
--   requests     number of requests; total_ms / requests = mean latency
--   max_ms       slowest request of the hour
--   bytes_in, bytes_out  sums
--   le_1 .. le_10000, le_inf  latency histogram: requests whose duration_ms
--                was above the previous bound and at most this one (ms);
--                le_inf counts those above 10 s. A percentile is the bound
--                where the cumulative count reaches the wanted share (see
--                the v_route_latency view).
CREATE TABLE request_rollups (
    hour       TEXT NOT NULL,
    route      TEXT NOT NULL,
    method     TEXT NOT NULL,
    status     INTEGER NOT NULL,
    source     TEXT NOT NULL DEFAULT 'api',
    requests   INTEGER NOT NULL DEFAULT 0,
    total_ms   REAL NOT NULL DEFAULT 0,
    max_ms     REAL NOT NULL DEFAULT 0,
    bytes_in   INTEGER NOT NULL DEFAULT 0,
    bytes_out  INTEGER NOT NULL DEFAULT 0,
    le_1       INTEGER NOT NULL DEFAULT 0,
    le_2_5     INTEGER NOT NULL DEFAULT 0,
    le_5       INTEGER NOT NULL DEFAULT 0,
    le_10      INTEGER NOT NULL DEFAULT 0,
    le_25      INTEGER NOT NULL DEFAULT 0,
    le_50      INTEGER NOT NULL DEFAULT 0,
    le_100     INTEGER NOT NULL DEFAULT 0,
    le_250     INTEGER NOT NULL DEFAULT 0,
    le_500     INTEGER NOT NULL DEFAULT 0,
    le_1000    INTEGER NOT NULL DEFAULT 0,
    le_2500    INTEGER NOT NULL DEFAULT 0,
    le_5000    INTEGER NOT NULL DEFAULT 0,
    le_10000   INTEGER NOT NULL DEFAULT 0,
    le_inf     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, route, method, status, source)
) WITHOUT ROWID;

-- user_activity: one row per user and day on which the user made at least
-- one authenticated request (kept ROLLUP_RETENTION_DAYS days).
--   day       'YYYY-MM-DD' (UTC)
--   requests  authenticated requests that day
CREATE TABLE user_activity (
    day       TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    requests  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, user_id)
) WITHOUT ROWID;

-- error_groups: tracked errors grouped by fingerprint (kind + location).
--   kind         'http_500' (an internal error answered 500), 'panic' (a
--                caught panic), 'job' (a failed job), 'upstream' (a failed
--                call to a dependency), ...
--   location     where: 'GET /api/users/{userId}', a job kind, an upstream
--   fingerprint  hex digest of kind and location
--   message      the latest message (no secrets, no request bodies)
--   count        occurrences; first_seen / last_seen their times
--   last_request_id, last_context  of the latest occurrence (context: JSON)
CREATE TABLE error_groups (
    fingerprint      TEXT PRIMARY KEY NOT NULL,
    kind             TEXT NOT NULL,
    location         TEXT NOT NULL,
    message          TEXT NOT NULL,
    count            INTEGER NOT NULL DEFAULT 0,
    first_seen       TEXT NOT NULL,
    last_seen        TEXT NOT NULL,
    last_request_id  TEXT,
    last_context     TEXT NOT NULL DEFAULT '{}'
);

CREATE INDEX error_groups_last_seen ON error_groups (last_seen);

-- error_events: each occurrence of a tracked error (kept LOG_RETENTION_DAYS).
CREATE TABLE error_events (
    id           INTEGER PRIMARY KEY,
    fingerprint  TEXT NOT NULL REFERENCES error_groups (fingerprint) ON DELETE CASCADE,
    at           TEXT NOT NULL,
    message      TEXT NOT NULL,
    context      TEXT NOT NULL DEFAULT '{}',
    request_id   TEXT
);

CREATE INDEX error_events_fingerprint ON error_events (fingerprint, id);
CREATE INDEX error_events_at ON error_events (at);

-- alerts: one row per firing episode of an alert rule.
--   rule         error_rate, p95_latency, job_failure_rate, queue_age,
--                free_disk, log_drops
--   status       'firing' until the value is back within the threshold,
--                then 'resolved' (resolved_at set)
--   value        the value that fired it; last_value the latest evaluated
--   threshold    the configured threshold at the time
--   message      human summary
CREATE TABLE alerts (
    id           TEXT PRIMARY KEY NOT NULL,
    rule         TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('firing', 'resolved')),
    value        REAL NOT NULL,
    last_value   REAL NOT NULL,
    threshold    REAL NOT NULL,
    message      TEXT NOT NULL,
    fired_at     TEXT NOT NULL,
    resolved_at  TEXT
);

CREATE INDEX alerts_fired_at ON alerts (fired_at);
CREATE UNIQUE INDEX alerts_one_firing_per_rule ON alerts (rule) WHERE status = 'firing';
