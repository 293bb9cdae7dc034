-- Text chats on the agent core. A chat is stored as a call with direction 'chat' (its record,
-- transcript, analysis and end webhook work as a call's); this table holds what a call keeps in
-- memory: the model's whole history (tool calls included), and who is replying right now, so
-- two messages sent at once cannot both extend the same history.
CREATE TABLE chat_histories (
    chat_id          TEXT PRIMARY KEY REFERENCES calls(id),
    messages         TEXT NOT NULL,
    replying_since   TEXT,
    last_activity_at TEXT NOT NULL
);
CREATE INDEX chat_histories_activity ON chat_histories (last_activity_at);
