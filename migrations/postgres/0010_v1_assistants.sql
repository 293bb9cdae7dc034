-- The v1 assistant API (seed 001): general and advanced assistants of users inside a tenant.
-- A v1 assistant is an `assistants` row (prompt, LLM settings, tools and MCP servers: what the
-- agent core and the text channel read) marked `surface = 'v1'`, so the voice assistant API
-- neither lists nor edits it, plus a `v1_assistants` row with what only the seed has: the user
-- inside the tenant, the type, the provider name, the units and their teams.
ALTER TABLE assistants ADD COLUMN surface TEXT NOT NULL DEFAULT 'voice';

CREATE TABLE v1_assistants (
    assistant_id    TEXT PRIMARY KEY REFERENCES assistants(id),
    owner_id        TEXT NOT NULL REFERENCES users(id),
    user_id         TEXT NOT NULL,
    assistant_type  TEXT NOT NULL,
    provider        TEXT NOT NULL,
    ask_human       BIGINT NOT NULL,
    interrupt_task  BIGINT NOT NULL,
    main_unit       TEXT NOT NULL,
    support_units   TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE INDEX v1_assistants_user ON v1_assistants (owner_id, user_id, created_at);
-- One general assistant per user, even when two first calls race: the loser's insert fails here
-- and it reads the winner's.
CREATE UNIQUE INDEX v1_assistants_one_general ON v1_assistants (owner_id, user_id)
    WHERE assistant_type = 'general_assistant';

CREATE TABLE v1_assistant_teams (
    id             TEXT PRIMARY KEY,
    assistant_id   TEXT NOT NULL REFERENCES v1_assistants(assistant_id),
    name           TEXT NOT NULL,
    workflow_type  TEXT NOT NULL,
    position       BIGINT NOT NULL
);
CREATE INDEX v1_assistant_teams_assistant ON v1_assistant_teams (assistant_id, position);
