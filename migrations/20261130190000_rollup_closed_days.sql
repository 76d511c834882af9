-- Closed days and hours, rolled up once so that windows of days read a few
-- thousand rows instead of every hourly bucket (issue 14: the console's
-- overview under 300 ms at 7 and 30 days). The writer rolls them in the
-- transaction that stores a batch (src/monitoring/db/closed.rs): each UTC
-- day once it is over, each hour once it is over; a late record for a
-- closed day or hour rolls that one again (replacing it, so rolling is
-- idempotent). Kept with request_rollups (ROLLUP_RETENTION_DAYS).

-- request_rollup_daily_buckets: request_rollup_buckets summed per UTC day,
-- for closed days only (day < rollup_closed.days_before).
--   day                          'YYYY-MM-DD' (UTC)
--   route, method, source        as in request_rollups
--   bucket                       latency_buckets.bucket
--   count                        requests of the day in that bucket
CREATE TABLE request_rollup_daily_buckets (
    day     TEXT NOT NULL,
    route   TEXT NOT NULL,
    method  TEXT NOT NULL,
    source  TEXT NOT NULL,
    bucket  INTEGER NOT NULL,
    count   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, route, method, source, bucket)
) WITHOUT ROWID;

-- request_rollup_daily: request_rollups summed per UTC day, for closed days
-- only (day < rollup_closed.days_before).
--   day                                  'YYYY-MM-DD' (UTC)
--   route, method, status, source        as in request_rollups
--   requests, total_ms, bytes_in, bytes_out   sums of the day's hours
--   max_ms                               maximum of the day's hours
CREATE TABLE request_rollup_daily (
    day        TEXT NOT NULL,
    route      TEXT NOT NULL,
    method     TEXT NOT NULL,
    status     INTEGER NOT NULL,
    source     TEXT NOT NULL,
    requests   INTEGER NOT NULL DEFAULT 0,
    total_ms   REAL NOT NULL DEFAULT 0,
    max_ms     REAL NOT NULL DEFAULT 0,
    bytes_in   INTEGER NOT NULL DEFAULT 0,
    bytes_out  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, route, method, status, source)
) WITHOUT ROWID;

-- request_rollup_hour_users: distinct authenticated users of api traffic
-- per closed hour (hour < rollup_closed.hours_before), exact, counted from
-- request_log when the hour closed. Hours without any have no row.
CREATE TABLE request_rollup_hour_users (
    hour    TEXT PRIMARY KEY NOT NULL,
    users   INTEGER NOT NULL
) WITHOUT ROWID;

-- rollup_closed: how far the tables above are complete (one row).
--   days_before   'YYYY-MM-DD': every day before it is in the daily tables
--   hours_before  hour (RFC 3339): every hour before it is in the hour table
CREATE TABLE rollup_closed (
    id            INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    days_before   TEXT NOT NULL,
    hours_before  TEXT NOT NULL
);

INSERT INTO rollup_closed (id, days_before, hours_before)
VALUES (1, date('now'), strftime('%Y-%m-%dT%H:00:00.000Z', 'now'));

INSERT INTO request_rollup_daily_buckets (day, route, method, source, bucket, count)
SELECT substr(hour, 1, 10), route, method, source, bucket, sum(count)
FROM request_rollup_buckets
WHERE hour < (SELECT days_before FROM rollup_closed)
GROUP BY 1, route, method, source, bucket;

INSERT INTO request_rollup_daily (day, route, method, status, source, requests, total_ms,
       max_ms, bytes_in, bytes_out)
SELECT substr(hour, 1, 10), route, method, status, source, sum(requests), sum(total_ms),
       max(max_ms), sum(bytes_in), sum(bytes_out)
FROM request_rollups
WHERE hour < (SELECT days_before FROM rollup_closed)
GROUP BY 1, route, method, status, source;

INSERT INTO request_rollup_hour_users (hour, users)
SELECT strftime('%Y-%m-%dT%H:00:00.000Z', at_ms / 1000, 'unixepoch'), count(DISTINCT user_id)
FROM request_log
WHERE at_ms < unixepoch((SELECT hours_before FROM rollup_closed)) * 1000
  AND user_id IS NOT NULL AND source = 'api'
GROUP BY 1;
