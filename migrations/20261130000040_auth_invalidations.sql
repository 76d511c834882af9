-- auth_invalidations: a log of changes that cached authentications must
-- forget, so that every process that can see the database (the service, a
-- second instance, the `create-admin` command) takes them into account:
-- each running service reads the rows added since its last look every
-- second and drops the named cached sessions. Rows older than a day are
-- deleted with dead sessions.
--   seq         increasing; a process remembers the last one it applied
--   user_id     every session of this user (role or password change,
--               promotion to admin), or NULL
--   token_hash  one session (logout), or NULL
CREATE TABLE auth_invalidations (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     TEXT,
    token_hash  TEXT,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
