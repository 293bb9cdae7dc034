-- What a call inspector needs beyond the transcript. `call_turn_timings` holds one document per
-- reply of the agent: when each stage of it happened (end of the caller's speech, STT final,
-- LLM first token, first phrase, TTS first audio, first frame sent, first mark echoed), its
-- interruptions and its tool calls. It is written once, when the reply is over, by the call's
-- recorder task (never per frame); the document is JSON text, as every document here is.
CREATE TABLE call_turn_timings (
    call_id     TEXT NOT NULL,
    turn        BIGINT NOT NULL,
    timing      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (call_id, turn)
);

-- Every attempt to deliver a webhook, as the outbox worker made it: a delivery row keeps only
-- the count and the last error, which cannot say when the receiver failed and how.
CREATE TABLE webhook_attempts (
    delivery_id  TEXT NOT NULL,
    attempt      BIGINT NOT NULL,
    started_at   TEXT NOT NULL,
    duration_ms  BIGINT NOT NULL,
    status_code  BIGINT,
    outcome      TEXT NOT NULL,
    error        TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
