-- The analysis of a finished conversation (assistant_analysis): one row per call (or chat, which
-- is stored as a call), written when the analysis starts ('pending') and when it ends.
CREATE TABLE analyses (
    conversation_id  TEXT PRIMARY KEY REFERENCES calls(id),
    status           TEXT NOT NULL,
    result           TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
