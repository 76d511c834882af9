-- One latency estimator (src/monitoring/latency.rs) for the live figures,
-- alerts, roll-ups, console, API and analysts' SQL. The roll-ups' 14 fixed
-- buckets (1 ms the lowest bound, so most p50s read "1") become counts per
-- bucket of the estimator, stored one row per non-empty bucket so that SQL
-- gets the same percentile as the API (docs/analytics.md has the query).

-- latency_buckets: the estimator's buckets, one row each (210; never
-- changes). Log-linear over whole microseconds: bucket 0 is [0, 8 us); then
-- each power of two [2^k, 2^(k+1)) us, k = 3..28, is cut into 8 equal
-- buckets; bucket 209 holds everything from 2^29 us (~537 s). A bucket is
-- at most 1/8 of its lower bound wide.
--   bucket    index (what request_rollup_buckets.bucket refers to)
--   lower_us  first duration of the bucket, in whole microseconds
--   upper_us  first duration of the next bucket (NULL for the last)
--   value_ms  what a percentile falling in this bucket reads, in ms: the
--             middle (lower_us + upper_us) / 2000.0, the lower bound for
--             the last bucket; the API caps it by the exact maximum
-- A raw duration's bucket (request_log.duration_ms, in ms):
--   (SELECT bucket FROM latency_buckets
--    WHERE lower_us <= max(0, CAST(duration_ms * 1000.0 AS INTEGER))
--    ORDER BY lower_us DESC LIMIT 1)
CREATE TABLE latency_buckets (
    bucket    INTEGER PRIMARY KEY NOT NULL,
    lower_us  INTEGER NOT NULL UNIQUE,
    upper_us  INTEGER,
    value_ms  REAL NOT NULL
);

INSERT INTO latency_buckets (bucket, lower_us, upper_us, value_ms)
WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < 208),
b(n, lower_us, upper_us) AS (
    SELECT n, (8 + (n - 1) % 8) << ((n - 1) / 8), (9 + (n - 1) % 8) << ((n - 1) / 8) FROM i
)
SELECT 0, 0, 8, (0 + 8) / 2000.0
UNION ALL
SELECT n, lower_us, upper_us, (lower_us + upper_us) / 2000.0 FROM b
UNION ALL
SELECT 209, 1 << 29, NULL, (1 << 29) / 1000.0;

-- request_rollup_buckets: latency histogram of the hourly roll-ups, per hour
-- x route x method x source (all statuses together, as the API's
-- percentiles are): one row per non-empty bucket of latency_buckets. Kept
-- and rebuilt with request_rollups (ROLLUP_RETENTION_DAYS).
--   hour, route, method, source  as in request_rollups
--   bucket   latency_buckets.bucket
--   count    requests whose duration fell in that bucket
CREATE TABLE request_rollup_buckets (
    hour    TEXT NOT NULL,
    route   TEXT NOT NULL,
    method  TEXT NOT NULL,
    source  TEXT NOT NULL,
    bucket  INTEGER NOT NULL,
    count   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, route, method, source, bucket)
) WITHOUT ROWID;

-- Roll-ups stored before this migration keep their figures: each old
-- bucket's count goes to the bucket holding its upper bound (le_1 -> 1 ms
-- ...), le_inf to the last bucket (percentiles are capped by max_ms).
INSERT INTO request_rollup_buckets (hour, route, method, source, bucket, count)
SELECT hour, route, method, source, bucket, sum(n) FROM (
SELECT hour, route, method, source, 56 AS bucket, sum(le_1) AS n FROM request_rollups GROUP BY hour, route, method, source HAVING sum(le_1) > 0
UNION ALL
SELECT hour, route, method, source, 66 AS bucket, sum(le_2_5) AS n FROM request_rollups GROUP BY hour, route, method, source HAVING sum(le_2_5) > 0
UNION ALL
SELECT hour, route, method, source, 74 AS bucket, sum(le_5) AS n FROM request_rollups GROUP BY hour, route, method, source HAVING sum(le_5) > 0
UNION ALL
SELECT hour, route, method, source, 82 AS bucket, sum(le_10) AS n FROM request_rollups GROUP BY hour, route, method, source HAVING sum(le_10) > 0
UNION ALL
SELECT hour, route, method, source, 93 AS bucket, sum(le_25) AS n FROM request_rollups GROUP BY hour, route, method, source HAVING sum(le_25) > 0
UNION ALL
SELECT hour, route, method, source, 101 AS bucket, sum(le_50) AS n FROM request_rollups GROUP BY hour, route, method, source HAVING sum(le_50) > 0
UNION ALL
SELECT hour, route, method, source, 109 AS bucket, sum(le_100) AS n FROM request_rollups GROUP BY hour, route, method, source HAVING sum(le_100) > 0
UNION ALL
SELECT hour, route, method, source, 120 AS bucket, sum(le_250) AS n FROM request_rollups GROUP BY hour, route, method, source HAVING sum(le_250) > 0
UNION ALL
SELECT hour, route, method, source, 128 AS bucket, sum(le_500) AS n FROM request_rollups GROUP BY hour, route, method, source HAVING sum(le_500) > 0
UNION ALL
SELECT hour, route, method, source, 136 AS bucket, sum(le_1000) AS n FROM request_rollups GROUP BY hour, route, method, source HAVING sum(le_1000) > 0
UNION ALL
SELECT hour, route, method, source, 146 AS bucket, sum(le_2500) AS n FROM request_rollups GROUP BY hour, route, method, source HAVING sum(le_2500) > 0
UNION ALL
SELECT hour, route, method, source, 154 AS bucket, sum(le_5000) AS n FROM request_rollups GROUP BY hour, route, method, source HAVING sum(le_5000) > 0
UNION ALL
SELECT hour, route, method, source, 162 AS bucket, sum(le_10000) AS n FROM request_rollups GROUP BY hour, route, method, source HAVING sum(le_10000) > 0
UNION ALL
SELECT hour, route, method, source, 209 AS bucket, sum(le_inf) AS n FROM request_rollups GROUP BY hour, route, method, source HAVING sum(le_inf) > 0
)
GROUP BY hour, route, method, source, bucket;

DROP VIEW v_route_latency_daily;
ALTER TABLE request_rollups DROP COLUMN le_1;
ALTER TABLE request_rollups DROP COLUMN le_2_5;
ALTER TABLE request_rollups DROP COLUMN le_5;
ALTER TABLE request_rollups DROP COLUMN le_10;
ALTER TABLE request_rollups DROP COLUMN le_25;
ALTER TABLE request_rollups DROP COLUMN le_50;
ALTER TABLE request_rollups DROP COLUMN le_100;
ALTER TABLE request_rollups DROP COLUMN le_250;
ALTER TABLE request_rollups DROP COLUMN le_500;
ALTER TABLE request_rollups DROP COLUMN le_1000;
ALTER TABLE request_rollups DROP COLUMN le_2500;
ALTER TABLE request_rollups DROP COLUMN le_5000;
ALTER TABLE request_rollups DROP COLUMN le_10000;
ALTER TABLE request_rollups DROP COLUMN le_inf;

-- v_route_latency_daily: per day, route and method (api traffic only):
-- requests, server errors, mean and max latency, and p50/p95/p99 from the
-- one estimator: the value_ms of the first bucket whose cumulative count
-- reaches that share of the requests, at most max_ms (what the API says).
CREATE VIEW v_route_latency_daily AS
WITH t AS (
    SELECT substr(hour, 1, 10) AS day, route, method,
           sum(requests) AS requests,
           sum(CASE WHEN status >= 500 THEN requests ELSE 0 END) AS server_errors,
           sum(total_ms) AS total_ms,
           max(max_ms) AS max_ms
    FROM request_rollups
    WHERE source = 'api'
    GROUP BY day, route, method
),
c AS (
    SELECT substr(hour, 1, 10) AS day, route, method, bucket, sum(count) AS n
    FROM request_rollup_buckets
    WHERE source = 'api'
    GROUP BY day, route, method, bucket
),
cum AS (
    SELECT day, route, method, bucket,
           sum(n) OVER (PARTITION BY day, route, method ORDER BY bucket) AS seen,
           sum(n) OVER (PARTITION BY day, route, method) AS total
    FROM c
),
q AS (
    SELECT day, route, method,
           min(CASE WHEN seen >= 0.50 * total THEN bucket END) AS b50,
           min(CASE WHEN seen >= 0.95 * total THEN bucket END) AS b95,
           min(CASE WHEN seen >= 0.99 * total THEN bucket END) AS b99
    FROM cum
    GROUP BY day, route, method
)
SELECT t.day, t.route, t.method, t.requests, t.server_errors,
       round(t.total_ms / t.requests, 2) AS mean_ms,
       t.max_ms,
       min((SELECT value_ms FROM latency_buckets WHERE bucket = q.b50), t.max_ms) AS p50_ms,
       min((SELECT value_ms FROM latency_buckets WHERE bucket = q.b95), t.max_ms) AS p95_ms,
       min((SELECT value_ms FROM latency_buckets WHERE bucket = q.b99), t.max_ms) AS p99_ms
FROM t LEFT JOIN q USING (day, route, method);
