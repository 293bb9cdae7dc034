-- Owners, their API keys, tools and assistants. Times are UTC text in the API's own format
-- (`2024-01-15T10:00:00.000000`), which sorts lexically; JSON documents are stored as text so that
-- SQLite and PostgreSQL share one set of queries.
CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    email       TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users(id),
    key_prefix    TEXT NOT NULL,
    key_hash      TEXT NOT NULL UNIQUE,
    created_at    TEXT NOT NULL,
    revoked_at    TEXT
);

CREATE TABLE tools (
    id                TEXT PRIMARY KEY,
    owner_id          TEXT NOT NULL REFERENCES users(id),
    name              TEXT NOT NULL,
    description       TEXT NOT NULL,
    parameters        TEXT NOT NULL,
    endpoint_url      TEXT NOT NULL,
    endpoint_method   TEXT NOT NULL,
    endpoint_headers  TEXT NOT NULL,
    timeout_ms        BIGINT NOT NULL,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    deleted_at        TEXT
);
CREATE UNIQUE INDEX tools_owner_active_name ON tools (owner_id, name) WHERE deleted_at IS NULL;

CREATE TABLE assistants (
    id                 TEXT PRIMARY KEY,
    owner_id           TEXT NOT NULL REFERENCES users(id),
    name               TEXT NOT NULL,
    description        TEXT NOT NULL,
    prompt             TEXT NOT NULL,
    tts_model          TEXT NOT NULL,
    tts_config         TEXT NOT NULL,
    start_instruction  TEXT,
    end_call_url       TEXT,
    settings           TEXT NOT NULL,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    deleted_at         TEXT
);
CREATE INDEX assistants_owner_created ON assistants (owner_id, created_at);

CREATE TABLE assistant_tools (
    assistant_id  TEXT NOT NULL REFERENCES assistants(id),
    tool_id       TEXT NOT NULL REFERENCES tools(id),
    position      BIGINT NOT NULL,
    PRIMARY KEY (assistant_id, tool_id)
);
CREATE INDEX assistant_tools_tool ON assistant_tools (tool_id);
