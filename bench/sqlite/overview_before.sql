-- The overview's SQL per window on the bench database (bench/overview.sh's
-- data; run: sqlite3 DB < bench/sqlite/overview_before.sql): the queries of
-- main before the daily roll-ups (hourly tables and raw rows only).
.timer on
-- 24h timeseries: users per hour from raw
SELECT count(*) FROM (SELECT (at_ms - (unixepoch('now')/3600*3600-82800)*1000)/3600000, count(DISTINCT user_id) FROM request_log WHERE at_ms >= (unixepoch('now')/3600*3600-82800)*1000 AND user_id IS NOT NULL AND source='api' GROUP BY 1);
-- 7d performance: buckets + totals by route over hourly
SELECT count(*) FROM (SELECT route, method, bucket, sum(count) FROM request_rollup_buckets WHERE hour >= strftime('%Y-%m-%dT%H:00:00.000Z','now','-7 days') AND source='api' GROUP BY route, method, bucket);
SELECT count(*) FROM (SELECT route, method, sum(requests) FROM request_rollups WHERE hour >= strftime('%Y-%m-%dT%H:00:00.000Z','now','-7 days') AND source='api' GROUP BY route, method);
-- 30d performance
SELECT count(*) FROM (SELECT route, method, bucket, sum(count) FROM request_rollup_buckets WHERE hour >= strftime('%Y-%m-%dT%H:00:00.000Z','now','-30 days') AND source='api' GROUP BY route, method, bucket);
SELECT count(*) FROM (SELECT route, method, sum(requests) FROM request_rollups WHERE hour >= strftime('%Y-%m-%dT%H:00:00.000Z','now','-30 days') AND source='api' GROUP BY route, method);
-- 30d timeseries: per hour buckets + totals (then folded to days in Rust)
SELECT count(*) FROM (SELECT hour, bucket, sum(count) FROM request_rollup_buckets WHERE hour >= date('now','-29 days') AND source='api' GROUP BY hour, bucket);
SELECT count(*) FROM (SELECT hour, sum(requests) FROM request_rollups WHERE hour >= date('now','-29 days') AND source='api' GROUP BY hour);
-- 30d summary: requests per day + load-test count
SELECT count(*) FROM (SELECT substr(hour,1,10), sum(requests) FROM request_rollups WHERE hour >= strftime('%Y-%m-%dT%H:00:00.000Z','now','-30 days') AND hour < strftime('%Y-%m-%dT%H:%M:%fZ','now') AND source='api' GROUP BY 1);
SELECT coalesce(sum(requests),0) FROM request_rollups WHERE hour >= strftime('%Y-%m-%dT%H:00:00.000Z','now','-30 days') AND hour < strftime('%Y-%m-%dT%H:%M:%fZ','now') AND source='loadtest';
