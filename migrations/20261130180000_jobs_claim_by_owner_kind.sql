-- jobs_queued_owner_kind: the claim's index. The fair claim ranks each
-- owner's due jobs; reading every queued row for that at each claim made
-- draining a backlog of N jobs cost O(N^2). The claim now walks the distinct
-- (owner, kind) pairs of queued jobs through this index (one seek each) and
-- reads only the first few of each pair, highest priority first, then
-- oldest. The key is one expression so that the walk is a single range
-- seek: the owner ('' for system jobs), the unit separator, the kind.
CREATE INDEX jobs_queued_owner_kind
    ON jobs (coalesce(user_id, '') || char(31) || kind, priority DESC, id)
    WHERE status = 'queued';
