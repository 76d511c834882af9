-- The same figures as overview_before.sql, as branch overview reads them:
-- closed days from request_rollup_daily(_buckets), closed hours' users from
-- request_rollup_hour_users, the rest from the hourly tables and raw rows.
.timer on
-- 24h timeseries: users per closed hour stored, raw for the open hour
SELECT count(*) FROM request_rollup_hour_users WHERE hour >= strftime('%Y-%m-%dT%H:00:00.000Z','now','-23 hours') AND hour < (SELECT hours_before FROM rollup_closed);
SELECT count(*) FROM (SELECT (at_ms - unixepoch('now')/3600*3600000)/3600000, count(DISTINCT user_id) FROM request_log WHERE at_ms >= unixepoch('now')/3600*3600000 AND user_id IS NOT NULL AND source='api' GROUP BY 1);
-- 7d performance
SELECT count(*) FROM (SELECT route, method, bucket, sum(n) FROM (
 SELECT route, method, bucket, count AS n FROM request_rollup_buckets WHERE hour >= strftime('%Y-%m-%dT%H:00:00.000Z','now','-7 days') AND hour < date('now','-6 days') AND source='api'
 UNION ALL SELECT route, method, bucket, count FROM request_rollup_daily_buckets WHERE day >= date('now','-6 days') AND day < date('now') AND source='api'
 UNION ALL SELECT route, method, bucket, count FROM request_rollup_buckets WHERE hour >= date('now') AND source='api') GROUP BY route, method, bucket);
SELECT count(*) FROM (SELECT route, method, sum(requests) FROM (
 SELECT route, method, requests FROM request_rollups WHERE hour >= strftime('%Y-%m-%dT%H:00:00.000Z','now','-7 days') AND hour < date('now','-6 days') AND source='api'
 UNION ALL SELECT route, method, requests FROM request_rollup_daily WHERE day >= date('now','-6 days') AND day < date('now') AND source='api'
 UNION ALL SELECT route, method, requests FROM request_rollups WHERE hour >= date('now') AND source='api') GROUP BY route, method);
-- 30d performance
SELECT count(*) FROM (SELECT route, method, bucket, sum(n) FROM (
 SELECT route, method, bucket, count AS n FROM request_rollup_buckets WHERE hour >= strftime('%Y-%m-%dT%H:00:00.000Z','now','-30 days') AND hour < date('now','-29 days') AND source='api'
 UNION ALL SELECT route, method, bucket, count FROM request_rollup_daily_buckets WHERE day >= date('now','-29 days') AND day < date('now') AND source='api'
 UNION ALL SELECT route, method, bucket, count FROM request_rollup_buckets WHERE hour >= date('now') AND source='api') GROUP BY route, method, bucket);
SELECT count(*) FROM (SELECT route, method, sum(requests) FROM (
 SELECT route, method, requests FROM request_rollups WHERE hour >= strftime('%Y-%m-%dT%H:00:00.000Z','now','-30 days') AND hour < date('now','-29 days') AND source='api'
 UNION ALL SELECT route, method, requests FROM request_rollup_daily WHERE day >= date('now','-29 days') AND day < date('now') AND source='api'
 UNION ALL SELECT route, method, requests FROM request_rollups WHERE hour >= date('now') AND source='api') GROUP BY route, method);
-- 30d timeseries
SELECT count(*) FROM (SELECT at, bucket, sum(n) FROM (
 SELECT day || 'T00:00:00.000Z' AS at, bucket, count AS n FROM request_rollup_daily_buckets WHERE day >= date('now','-29 days') AND day < date('now') AND source='api'
 UNION ALL SELECT hour, bucket, count FROM request_rollup_buckets WHERE hour >= date('now') AND source='api') GROUP BY at, bucket);
SELECT count(*) FROM (SELECT at, sum(requests) FROM (
 SELECT day || 'T00:00:00.000Z' AS at, requests FROM request_rollup_daily WHERE day >= date('now','-29 days') AND day < date('now') AND source='api'
 UNION ALL SELECT hour, requests FROM request_rollups WHERE hour >= date('now') AND source='api') GROUP BY at);
-- 30d summary: requests per day and source
SELECT count(*) FROM (SELECT day, source, sum(requests) FROM (
 SELECT substr(hour,1,10) AS day, source, requests FROM request_rollups WHERE hour >= strftime('%Y-%m-%dT%H:00:00.000Z','now','-30 days') AND hour < date('now','-29 days')
 UNION ALL SELECT day, source, requests FROM request_rollup_daily WHERE day >= date('now','-29 days') AND day < date('now')
 UNION ALL SELECT substr(hour,1,10), source, requests FROM request_rollups WHERE hour >= date('now') AND hour < strftime('%Y-%m-%dT%H:%M:%fZ','now')) GROUP BY 1, source);
