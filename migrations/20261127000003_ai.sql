-- ai_calls: one row per call of the Claude Messages API (after its retries).
--   user_id              who asked; job_id the chat job, if any
--   model                model asked for
--   input_tokens, output_tokens  usage reported by the API (0 on failure)
--   latency_ms           wall time of the call including retries
--   outcome              'succeeded' or 'failed'
--   error_code           our code for a failure (upstream_unavailable, ...)
--   http_status          last upstream HTTP status, if any
--   upstream_request_id  the API's request-id header, for support tickets
--   stop_reason          end_turn, max_tokens, ...
--   streamed             1 for SSE chats
--   attempts             upstream attempts made (1 + retries)
CREATE TABLE ai_calls (
    id                   TEXT PRIMARY KEY NOT NULL,
    user_id              TEXT REFERENCES users (id) ON DELETE SET NULL,
    job_id               TEXT,
    model                TEXT NOT NULL,
    input_tokens         INTEGER NOT NULL DEFAULT 0,
    output_tokens        INTEGER NOT NULL DEFAULT 0,
    latency_ms           INTEGER NOT NULL DEFAULT 0,
    outcome              TEXT NOT NULL CHECK (outcome IN ('succeeded', 'failed')),
    error_code           TEXT,
    http_status          INTEGER,
    upstream_request_id  TEXT,
    stop_reason          TEXT,
    streamed             INTEGER NOT NULL DEFAULT 0,
    attempts             INTEGER NOT NULL DEFAULT 1,
    created_at           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE INDEX ai_calls_user_created ON ai_calls (user_id, created_at);
CREATE INDEX ai_calls_created ON ai_calls (created_at);
