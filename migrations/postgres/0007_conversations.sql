-- The conversations API (seed 004): conversations with a function's bot that gather a
-- structured case. The model history, the case found so far and when it became complete live
-- with the conversation; a bot is one row per owner and function.
CREATE TABLE conversation_bots (
    id          TEXT PRIMARY KEY,
    owner_id    TEXT NOT NULL REFERENCES users(id),
    function    TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (owner_id, function)
);

CREATE TABLE conversations (
    id                TEXT PRIMARY KEY,
    owner_id          TEXT NOT NULL REFERENCES users(id),
    function          TEXT NOT NULL,
    bot_id            TEXT NOT NULL REFERENCES conversation_bots(id),
    human_user_id     TEXT NOT NULL,
    history           TEXT NOT NULL,
    case_data         TEXT NOT NULL,
    complete          BIGINT NOT NULL DEFAULT 0,
    completed_at      TEXT,
    replying_since    TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);
CREATE INDEX conversations_owner ON conversations (owner_id, created_at);

CREATE TABLE conversation_messages (
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    seq             BIGINT NOT NULL,
    role            TEXT NOT NULL,
    message         TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);

-- A webhook delivery now belongs to a call, a chat or a conversation: its subject id no longer
-- points at calls only.
ALTER TABLE webhook_deliveries DROP CONSTRAINT IF EXISTS webhook_deliveries_call_id_fkey;
CREATE INDEX webhook_deliveries_call ON webhook_deliveries (call_id);
