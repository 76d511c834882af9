-- Views for analysts who open the database file directly (sqlite3, DB
-- Browser, Datasette...). They compute the same figures as
-- GET /api/analytics/summary; docs/analytics.md shows example queries.
-- Days are UTC 'YYYY-MM-DD'. Request figures come from request_rollups, so
-- they cover ROLLUP_RETENTION_DAYS, not only the raw log's retention.

-- v_requests_daily: requests per day and source ('api' or 'loadtest'), with
-- client (4xx) and server (5xx) errors; error_rate = server errors / requests.
CREATE VIEW v_requests_daily AS
SELECT substr(hour, 1, 10) AS day,
       source,
       sum(requests) AS requests,
       sum(CASE WHEN status BETWEEN 400 AND 499 THEN requests ELSE 0 END) AS client_errors,
       sum(CASE WHEN status >= 500 THEN requests ELSE 0 END) AS server_errors,
       round(1.0 * sum(CASE WHEN status >= 500 THEN requests ELSE 0 END) / sum(requests), 4) AS error_rate,
       round(sum(total_ms) / sum(requests), 2) AS mean_ms
FROM request_rollups
GROUP BY day, source;

-- v_route_latency_daily: per day, route and method (api traffic only):
-- requests, server errors, mean and max latency, and p50/p95/p99 as the
-- upper bound (ms) of the histogram bucket holding that percentile (at
-- most max_ms).
CREATE VIEW v_route_latency_daily AS
WITH b AS (
    SELECT substr(hour, 1, 10) AS day, route, method,
           sum(requests) AS requests,
           sum(CASE WHEN status >= 500 THEN requests ELSE 0 END) AS server_errors,
           sum(total_ms) AS total_ms,
           max(max_ms) AS max_ms,
           sum(le_1) AS le_1,
           sum(le_2_5) AS le_2_5,
           sum(le_5) AS le_5,
           sum(le_10) AS le_10,
           sum(le_25) AS le_25,
           sum(le_50) AS le_50,
           sum(le_100) AS le_100,
           sum(le_250) AS le_250,
           sum(le_500) AS le_500,
           sum(le_1000) AS le_1000,
           sum(le_2500) AS le_2500,
           sum(le_5000) AS le_5000,
           sum(le_10000) AS le_10000
    FROM request_rollups
    WHERE source = 'api'
    GROUP BY day, route, method
)
SELECT b.day, b.route, b.method, b.requests, b.server_errors,
       round(b.total_ms / b.requests, 2) AS mean_ms,
       b.max_ms,
       min(CASE WHEN b.le_1 >= 0.50 * b.requests THEN 1
            WHEN b.le_1 + b.le_2_5 >= 0.50 * b.requests THEN 2.5
            WHEN b.le_1 + b.le_2_5 + b.le_5 >= 0.50 * b.requests THEN 5
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 >= 0.50 * b.requests THEN 10
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 + b.le_25 >= 0.50 * b.requests THEN 25
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 + b.le_25 + b.le_50 >= 0.50 * b.requests THEN 50
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 + b.le_25 + b.le_50 + b.le_100 >= 0.50 * b.requests THEN 100
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 + b.le_25 + b.le_50 + b.le_100 + b.le_250 >= 0.50 * b.requests THEN 250
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 + b.le_25 + b.le_50 + b.le_100 + b.le_250 + b.le_500 >= 0.50 * b.requests THEN 500
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 + b.le_25 + b.le_50 + b.le_100 + b.le_250 + b.le_500 + b.le_1000 >= 0.50 * b.requests THEN 1000
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 + b.le_25 + b.le_50 + b.le_100 + b.le_250 + b.le_500 + b.le_1000 + b.le_2500 >= 0.50 * b.requests THEN 2500
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 + b.le_25 + b.le_50 + b.le_100 + b.le_250 + b.le_500 + b.le_1000 + b.le_2500 + b.le_5000 >= 0.50 * b.requests THEN 5000
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 + b.le_25 + b.le_50 + b.le_100 + b.le_250 + b.le_500 + b.le_1000 + b.le_2500 + b.le_5000 + b.le_10000 >= 0.50 * b.requests THEN 10000
            ELSE b.max_ms END, b.max_ms) AS p50_ms,
       min(CASE WHEN b.le_1 >= 0.95 * b.requests THEN 1
            WHEN b.le_1 + b.le_2_5 >= 0.95 * b.requests THEN 2.5
            WHEN b.le_1 + b.le_2_5 + b.le_5 >= 0.95 * b.requests THEN 5
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 >= 0.95 * b.requests THEN 10
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 + b.le_25 >= 0.95 * b.requests THEN 25
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 + b.le_25 + b.le_50 >= 0.95 * b.requests THEN 50
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 + b.le_25 + b.le_50 + b.le_100 >= 0.95 * b.requests THEN 100
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 + b.le_25 + b.le_50 + b.le_100 + b.le_250 >= 0.95 * b.requests THEN 250
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 + b.le_25 + b.le_50 + b.le_100 + b.le_250 + b.le_500 >= 0.95 * b.requests THEN 500
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 + b.le_25 + b.le_50 + b.le_100 + b.le_250 + b.le_500 + b.le_1000 >= 0.95 * b.requests THEN 1000
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 + b.le_25 + b.le_50 + b.le_100 + b.le_250 + b.le_500 + b.le_1000 + b.le_2500 >= 0.95 * b.requests THEN 2500
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 + b.le_25 + b.le_50 + b.le_100 + b.le_250 + b.le_500 + b.le_1000 + b.le_2500 + b.le_5000 >= 0.95 * b.requests THEN 5000
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 + b.le_25 + b.le_50 + b.le_100 + b.le_250 + b.le_500 + b.le_1000 + b.le_2500 + b.le_5000 + b.le_10000 >= 0.95 * b.requests THEN 10000
            ELSE b.max_ms END, b.max_ms) AS p95_ms,
       min(CASE WHEN b.le_1 >= 0.99 * b.requests THEN 1
            WHEN b.le_1 + b.le_2_5 >= 0.99 * b.requests THEN 2.5
            WHEN b.le_1 + b.le_2_5 + b.le_5 >= 0.99 * b.requests THEN 5
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 >= 0.99 * b.requests THEN 10
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 + b.le_25 >= 0.99 * b.requests THEN 25
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 + b.le_25 + b.le_50 >= 0.99 * b.requests THEN 50
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 + b.le_25 + b.le_50 + b.le_100 >= 0.99 * b.requests THEN 100
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 + b.le_25 + b.le_50 + b.le_100 + b.le_250 >= 0.99 * b.requests THEN 250
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 + b.le_25 + b.le_50 + b.le_100 + b.le_250 + b.le_500 >= 0.99 * b.requests THEN 500
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 + b.le_25 + b.le_50 + b.le_100 + b.le_250 + b.le_500 + b.le_1000 >= 0.99 * b.requests THEN 1000
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 + b.le_25 + b.le_50 + b.le_100 + b.le_250 + b.le_500 + b.le_1000 + b.le_2500 >= 0.99 * b.requests THEN 2500
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 + b.le_25 + b.le_50 + b.le_100 + b.le_250 + b.le_500 + b.le_1000 + b.le_2500 + b.le_5000 >= 0.99 * b.requests THEN 5000
            WHEN b.le_1 + b.le_2_5 + b.le_5 + b.le_10 + b.le_25 + b.le_50 + b.le_100 + b.le_250 + b.le_500 + b.le_1000 + b.le_2500 + b.le_5000 + b.le_10000 >= 0.99 * b.requests THEN 10000
            ELSE b.max_ms END, b.max_ms) AS p99_ms
FROM b;

-- v_users_daily: accounts created and users active (made at least one
-- authenticated request) per day.
CREATE VIEW v_users_daily AS
SELECT day, sum(new_users) AS new_users, sum(active_users) AS active_users
FROM (
    SELECT date(created_at) AS day, count(*) AS new_users, 0 AS active_users
    FROM users GROUP BY day
    UNION ALL
    SELECT day, 0, count(*) FROM user_activity GROUP BY day
)
GROUP BY day;

-- v_active_sessions: sessions that can be used right now.
CREATE VIEW v_active_sessions AS
SELECT count(*) AS active_sessions, count(DISTINCT user_id) AS users_with_sessions
FROM sessions
WHERE revoked_at IS NULL AND expires_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now');

-- v_jobs_by_kind: jobs per kind and status (all retained jobs).
CREATE VIEW v_jobs_by_kind AS
SELECT kind, status, count(*) AS jobs
FROM jobs
GROUP BY kind, status;

-- v_job_stats: per kind: finished jobs, success rate (succeeded / (succeeded +
-- failed)), mean and p95 duration in ms of succeeded jobs (started ->
-- finished of the last attempt).
CREATE VIEW v_job_stats AS
WITH f AS (
    SELECT kind, status,
           (julianday(finished_at) - julianday(started_at)) * 86400000.0 AS ms
    FROM jobs
    WHERE status IN ('succeeded', 'failed') AND finished_at IS NOT NULL
),
s AS (
    SELECT kind, ms,
           row_number() OVER (PARTITION BY kind ORDER BY ms) AS rn,
           count(*) OVER (PARTITION BY kind) AS n
    FROM f WHERE status = 'succeeded' AND ms IS NOT NULL
),
p AS (
    SELECT kind, round(avg(ms), 1) AS mean_ms,
           round(min(CASE WHEN rn >= 0.95 * n THEN ms END), 1) AS p95_ms
    FROM s GROUP BY kind
)
SELECT f.kind,
       count(*) AS finished,
       sum(f.status = 'succeeded') AS succeeded,
       sum(f.status = 'failed') AS failed,
       round(1.0 * sum(f.status = 'succeeded') / count(*), 4) AS success_rate,
       p.mean_ms, p.p95_ms
FROM f LEFT JOIN p ON p.kind = f.kind
GROUP BY f.kind;

-- v_files_by_kind: stored files and bytes per kind.
CREATE VIEW v_files_by_kind AS
SELECT kind, count(*) AS files, sum(size) AS bytes
FROM files
GROUP BY kind;

-- v_ai_daily: Claude API calls per day and model, failures and tokens.
CREATE VIEW v_ai_daily AS
SELECT date(created_at) AS day, model,
       count(*) AS calls,
       sum(outcome = 'failed') AS failed,
       round(1.0 * sum(outcome = 'failed') / count(*), 4) AS failure_rate,
       sum(input_tokens) AS input_tokens,
       sum(output_tokens) AS output_tokens
FROM ai_calls
GROUP BY day, model;
