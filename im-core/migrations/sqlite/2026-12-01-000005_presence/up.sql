-- Cluster presence kept in the shared store (SqlitePresence): who is
-- connected on which node, each node's lease, and each user's last reported
-- transition. Times are the engine's Unix ms, never the database's clock.

-- One row per node name: its lease. Dropped (lease expired or removed at
-- shutdown): lease_until = 0, lapsed until the node renews again.
CREATE TABLE presence_nodes (
    node TEXT PRIMARY KEY NOT NULL,
    lease_until BIGINT NOT NULL,
    lapsed BOOLEAN NOT NULL DEFAULT FALSE,
    dropped_at BIGINT NOT NULL DEFAULT 0
);

-- Live sessions per user and node.
CREATE TABLE presence_sessions (
    user_id BIGINT NOT NULL,
    node TEXT NOT NULL,
    session_id BIGINT NOT NULL,
    PRIMARY KEY (user_id, node, session_id)
);
CREATE INDEX presence_sessions_node ON presence_sessions (node);

-- Per user: the last transition reported (online or not), its generation
-- (only ever increases) and the user's last seen time. The row is also the
-- lock that serializes the user's transitions across nodes.
CREATE TABLE presence_users (
    user_id BIGINT PRIMARY KEY NOT NULL,
    online BOOLEAN NOT NULL DEFAULT FALSE,
    generation BIGINT NOT NULL DEFAULT 0,
    last_seen BIGINT NOT NULL DEFAULT 0
);
