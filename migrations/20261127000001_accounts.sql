-- Accounts and sessions.
--
-- Conventions for every table of hs-platform (for analysts):
--   * ids are opaque TEXT (UUID v7: they sort by creation time);
--   * timestamps are TEXT in UTC, RFC 3339 with milliseconds and a 'Z'
--     ('2026-11-27T18:00:00.123Z'): they sort and compare as text and equal
--     strftime('%Y-%m-%dT%H:%M:%fZ', 'now'); use date(created_at) for days;
--   * JSON columns are TEXT holding a JSON object (use json_extract()).

-- users: one row per account.
--   email          normalised (trimmed, lower-case), unique
--   password_hash  argon2id PHC string; never the password
--   role           'user' or 'admin'
--   preferences    JSON object chosen by the client (UI settings...)
--   metadata       JSON object chosen by the client
CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    name          TEXT,
    role          TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    preferences   TEXT NOT NULL DEFAULT '{}',
    metadata      TEXT NOT NULL DEFAULT '{}',
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE INDEX users_created_at ON users (created_at);

-- sessions: one row per login.
--   token_hash    hex SHA-256 of the bearer token; the token itself is never
--                 stored, so a value read from this table does not log in
--   expires_at    the session is valid while expires_at > now and revoked_at
--                 is NULL
--   revoked_at    set by logout or password change
--   last_seen_at  last authenticated request (flushed every few seconds)
--   data          JSON object the client may store on its session
--   metadata      JSON object given at login (device, client name...)
--   ip, user_agent  of the login request
CREATE TABLE sessions (
    id            TEXT PRIMARY KEY NOT NULL,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash    TEXT NOT NULL UNIQUE,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    expires_at    TEXT NOT NULL,
    revoked_at    TEXT,
    last_seen_at  TEXT,
    data          TEXT NOT NULL DEFAULT '{}',
    metadata      TEXT NOT NULL DEFAULT '{}',
    ip            TEXT,
    user_agent    TEXT
);

CREATE INDEX sessions_user_id ON sessions (user_id, id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
