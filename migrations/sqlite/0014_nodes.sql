-- Node liveness, so several server processes can share one database and survive a node's
-- death. Each process writes its row every `cluster.heartbeat_ms`; a call's session is held by
-- the node named in `calls.node_id` while it runs (cleared when it ends). A node whose heartbeat
-- is older than `cluster.node_timeout_ms` is lost: a survivor ends its calls as `server_lost`,
-- sends their reports and hands its webhook claims back.
CREATE TABLE nodes (
    id           TEXT PRIMARY KEY,
    address      TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL
);
ALTER TABLE calls ADD COLUMN node_id TEXT;
CREATE INDEX calls_node ON calls (node_id) WHERE node_id IS NOT NULL;
