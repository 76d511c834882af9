-- Benchmark data: __ROWS__ request-log rows spread over the last 7 days
-- (mixed routes, methods, statuses, latencies, 1,000 users), then their
-- hourly roll-ups and daily activity computed with the same statements the
-- retention job uses (src/monitoring/db/retention.rs: rebuild_rollups_before), as the
-- writer would have maintained them.
PRAGMA synchronous = OFF;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < __ROWS__)
INSERT INTO request_log (at_ms, method, route, status, duration_ms, bytes_in, bytes_out, user_id,
                         client_ip, user_agent, request_id, source)
SELECT (unixepoch('now') - abs(random()) % (7 * 86400)) * 1000 + abs(random()) % 1000,
       CASE i % 5 WHEN 0 THEN 'POST' WHEN 1 THEN 'PUT' ELSE 'GET' END,
       CASE i % 12
           WHEN 0 THEN '/api/users/{userId}' WHEN 1 THEN '/api/users/{userId}'
           WHEN 2 THEN '/api/sessions' WHEN 3 THEN '/api/sessions/{sessionId}'
           WHEN 4 THEN '/api/jobs' WHEN 5 THEN '/api/jobs/{jobId}'
           WHEN 6 THEN '/api/files' WHEN 7 THEN '/api/files/{fileId}'
           WHEN 8 THEN '/api/claude-ai/chat' WHEN 9 THEN '/health'
           WHEN 10 THEN '/api/files/generate/pdf' ELSE 'unmatched' END,
       CASE WHEN i % 97 = 0 THEN 500 WHEN i % 13 = 0 THEN 404 WHEN i % 29 = 0 THEN 422 ELSE 200 END,
       (abs(random()) % 200000) / 1000.0 * (CASE WHEN i % 100 = 0 THEN 20 ELSE 1 END),
       CASE WHEN i % 5 = 0 THEN 200 END,
       abs(random()) % 4000,
       CASE WHEN i % 7 <> 0 THEN 'bench-user-' || (i % 1000) END,
       '10.0.' || (i % 200) || '.' || (i % 250),
       'wrk/4.2',
       'req-' || i,
       'api'
FROM n
ORDER BY 1; -- in time order, as the service appends them
COMMIT;

BEGIN;
INSERT INTO request_rollups (hour, route, method, status, source, requests, total_ms,
       max_ms, bytes_in, bytes_out)
SELECT strftime('%Y-%m-%dT%H:00:00.000Z', at_ms / 1000, 'unixepoch'), route, method, status, source, count(*),
       sum(duration_ms), max(duration_ms), coalesce(sum(bytes_in), 0),
       coalesce(sum(bytes_out), 0)
FROM request_log
WHERE at_ms < 253402300800000
GROUP BY 1, route, method, status, source
ON CONFLICT (hour, route, method, status, source) DO UPDATE SET
    requests = excluded.requests, total_ms = excluded.total_ms,
    max_ms = excluded.max_ms, bytes_in = excluded.bytes_in,
    bytes_out = excluded.bytes_out;
INSERT INTO request_rollup_buckets (hour, route, method, source, bucket, count)
SELECT strftime('%Y-%m-%dT%H:00:00.000Z', at_ms / 1000, 'unixepoch'), route, method, source,
       (SELECT bucket FROM latency_buckets
        WHERE lower_us <= max(0, CAST(duration_ms * 1000.0 AS INTEGER))
        ORDER BY lower_us DESC LIMIT 1),
       count(*)
FROM request_log
WHERE at_ms < 253402300800000
GROUP BY 1, route, method, source, 5
ON CONFLICT (hour, route, method, source, bucket) DO UPDATE SET count = excluded.count;
INSERT INTO user_activity (day, user_id, requests)
SELECT date(at_ms / 1000, 'unixepoch'), user_id, count(*)
FROM request_log
WHERE at_ms < 253402300800000 AND user_id IS NOT NULL
GROUP BY 1, user_id
ON CONFLICT (day, user_id) DO UPDATE SET requests = max(requests, excluded.requests);
COMMIT;
