-- request_log is written once per HTTP request, so every index on it is paid
-- on the hot path (about a fifth of the insert's cost each). The per-user
-- index only served the admin log viewer's `userId` filter, which now scans
-- newest-first by id (fast for active users); per-user counts come from
-- user_activity. The time index stays: retention, roll-ups and analysts'
-- time-window queries use it.
DROP INDEX IF EXISTS request_log_user;
