-- What a call's providers went through, for the call's details (`provider_events[]`): the LLM
-- asked again after a failure, its fallback model asked, a reply that failed for good, the
-- apology said instead. One row per event, written by the call's recorder task as it happens
-- (never per frame); `at_ms` counts from the call's start, as the transcript's `offset_ms` does.
CREATE TABLE call_provider_events (
    call_id     TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    at_ms       BIGINT NOT NULL,
    provider    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    detail      TEXT,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (call_id, seq)
);
