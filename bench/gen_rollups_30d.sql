-- Benchmark data, after gen_request_log.sql: 30 days of hourly roll-ups
-- (and their latency buckets and daily activity) from the 7 days that the
-- raw rows cover, by copying them 7, 14, 21 and 28 days back (raw rows stay
-- within LOG_RETENTION_DAYS, as in a service that has run for a month);
-- then the closed days' daily roll-ups and the closed hours' active users,
-- as the writer rolls them (src/monitoring/db/closed.rs).
PRAGMA synchronous = OFF;
BEGIN;
CREATE TEMP TABLE shifts AS SELECT 7 AS d UNION ALL SELECT 14 UNION ALL SELECT 21 UNION ALL SELECT 28;
INSERT OR IGNORE INTO request_rollups (hour, route, method, status, source, requests, total_ms,
       max_ms, bytes_in, bytes_out)
SELECT strftime('%Y-%m-%dT%H:00:00.000Z', r.hour, '-' || s.d || ' days'), r.route, r.method,
       r.status, r.source, r.requests, r.total_ms, r.max_ms, r.bytes_in, r.bytes_out
FROM request_rollups r, shifts s
WHERE julianday(r.hour) - s.d >= julianday('now', '-30 days');
INSERT OR IGNORE INTO request_rollup_buckets (hour, route, method, source, bucket, count)
SELECT strftime('%Y-%m-%dT%H:00:00.000Z', b.hour, '-' || s.d || ' days'), b.route, b.method,
       b.source, b.bucket, b.count
FROM request_rollup_buckets b, shifts s
WHERE julianday(b.hour) - s.d >= julianday('now', '-30 days');
INSERT OR IGNORE INTO user_activity (day, user_id, requests)
SELECT date(a.day, '-' || s.d || ' days'), a.user_id, a.requests
FROM user_activity a, shifts s
WHERE julianday(a.day) - s.d >= julianday('now', '-30 days');
DELETE FROM request_rollup_daily;
INSERT INTO request_rollup_daily (day, route, method, status, source, requests, total_ms,
       max_ms, bytes_in, bytes_out)
SELECT substr(hour, 1, 10), route, method, status, source, sum(requests), sum(total_ms),
       max(max_ms), sum(bytes_in), sum(bytes_out)
FROM request_rollups
WHERE hour < date('now')
GROUP BY 1, route, method, status, source;
DELETE FROM request_rollup_daily_buckets;
INSERT INTO request_rollup_daily_buckets (day, route, method, source, bucket, count)
SELECT substr(hour, 1, 10), route, method, source, bucket, sum(count)
FROM request_rollup_buckets
WHERE hour < date('now')
GROUP BY 1, route, method, source, bucket;
INSERT OR REPLACE INTO request_rollup_hour_users (hour, users)
SELECT strftime('%Y-%m-%dT%H:00:00.000Z', at_ms / 1000, 'unixepoch'), count(DISTINCT user_id)
FROM request_log
WHERE at_ms < unixepoch(strftime('%Y-%m-%dT%H:00:00Z', 'now')) * 1000
  AND user_id IS NOT NULL AND source = 'api'
GROUP BY 1;
UPDATE rollup_closed
SET days_before = date('now'), hours_before = strftime('%Y-%m-%dT%H:00:00.000Z', 'now');
COMMIT;
