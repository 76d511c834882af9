-- Unfinished jobs per user: the per-user cap (JOB_MAX_PENDING_PER_USER) and
-- the fair claim count them without reading a user's finished jobs.
CREATE INDEX jobs_user_unfinished ON jobs (user_id) WHERE status IN ('queued', 'running');
