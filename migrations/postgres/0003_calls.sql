-- Calls, their transcripts and the end-of-call webhook deliveries. A call row is written when the
-- call is set up (outbound request, inbound webhook, web session) and updated as it progresses,
-- so a crash loses at most the turn in progress.
CREATE TABLE calls (
    id                          TEXT PRIMARY KEY,
    owner_id                    TEXT NOT NULL REFERENCES users(id),
    assistant_id                TEXT NOT NULL REFERENCES assistants(id),
    trunk_id                    TEXT,
    direction                   TEXT NOT NULL,
    from_number                 TEXT,
    to_number                   TEXT,
    status                      TEXT NOT NULL,
    status_rank                 BIGINT NOT NULL,
    end_reason                  TEXT,
    provider_call_sid           TEXT,
    metadata                    TEXT NOT NULL,
    rendered_prompt             TEXT NOT NULL,
    rendered_start_instruction  TEXT,
    missing_variables           TEXT NOT NULL,
    stream_token_hash           TEXT,
    stream_token_used_at        TEXT,
    stream_token_expires_at     TEXT,
    created_at                  TEXT NOT NULL,
    started_at                  TEXT,
    ended_at                    TEXT,
    updated_at                  TEXT NOT NULL
);
CREATE INDEX calls_owner_created ON calls (owner_id, created_at);
CREATE INDEX calls_provider_sid ON calls (provider_call_sid);

CREATE TABLE call_turns (
    call_id     TEXT NOT NULL REFERENCES calls(id),
    seq         BIGINT NOT NULL,
    role        TEXT NOT NULL,
    text        TEXT NOT NULL,
    offset_ms   BIGINT NOT NULL,
    interrupted BIGINT NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (call_id, seq)
);

CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    call_id          TEXT NOT NULL REFERENCES calls(id),
    url              TEXT NOT NULL,
    payload          TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    last_error       TEXT,
    created_at       TEXT NOT NULL,
    delivered_at     TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);

-- Values the server generates once and must keep (e.g. the webhook signing secret).
CREATE TABLE server_settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
