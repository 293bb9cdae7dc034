-- MCP servers (Model Context Protocol over streamable HTTP) whose tools an assistant may offer
-- its model. Owner-scoped and soft-deleted like HTTP tools; headers (credentials) are stored
-- and never returned in full.
CREATE TABLE mcp_servers (
    id          TEXT PRIMARY KEY,
    owner_id    TEXT NOT NULL REFERENCES users(id),
    name        TEXT NOT NULL,
    url         TEXT NOT NULL,
    headers     TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    deleted_at  TEXT
);
CREATE INDEX mcp_servers_owner ON mcp_servers (owner_id, created_at);
