-- Telephony: the owners' provider accounts (trunks) and the phone numbers they route to
-- assistants. Both are soft-deleted like assistants, so call records keep their references.
CREATE TABLE trunks (
    id                     TEXT PRIMARY KEY,
    owner_id               TEXT NOT NULL REFERENCES users(id),
    name                   TEXT NOT NULL,
    provider               TEXT NOT NULL,
    account_sid            TEXT NOT NULL,
    auth_token             TEXT NOT NULL,
    default_caller_number  TEXT NOT NULL,
    created_at             TEXT NOT NULL,
    updated_at             TEXT NOT NULL,
    deleted_at             TEXT
);
CREATE INDEX trunks_owner_created ON trunks (owner_id, created_at);

CREATE TABLE phone_numbers (
    id            TEXT PRIMARY KEY,
    owner_id      TEXT NOT NULL REFERENCES users(id),
    number        TEXT NOT NULL,
    assistant_id  TEXT NOT NULL REFERENCES assistants(id),
    trunk_id      TEXT NOT NULL REFERENCES trunks(id),
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    deleted_at    TEXT
);
-- Inbound calls are routed by the called number alone: one active owner per number.
CREATE UNIQUE INDEX phone_numbers_active_number ON phone_numbers (number) WHERE deleted_at IS NULL;
CREATE INDEX phone_numbers_owner_created ON phone_numbers (owner_id, created_at);
