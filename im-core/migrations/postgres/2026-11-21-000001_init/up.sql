CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    username TEXT NOT NULL,
    username_lower TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    display_lower TEXT NOT NULL,
    avatar_url TEXT NOT NULL DEFAULT '',
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX users_username_prefix ON users (username_lower text_pattern_ops);
CREATE INDEX users_display_prefix ON users (display_lower text_pattern_ops);

CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX tokens_user ON tokens (user_id);

CREATE TABLE conversations (
    id BIGSERIAL PRIMARY KEY,
    kind INTEGER NOT NULL,
    title TEXT NOT NULL,
    ephemeral BOOLEAN NOT NULL,
    created_by BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seq BIGINT NOT NULL DEFAULT 0,
    last_version BIGINT NOT NULL DEFAULT 0,
    member_count INTEGER NOT NULL DEFAULT 0,
    direct_key TEXT UNIQUE
);
CREATE INDEX conversations_kind ON conversations (kind, member_count);

CREATE TABLE members (
    conversation_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    role INTEGER NOT NULL,
    joined_at BIGINT NOT NULL,
    read_seq BIGINT NOT NULL DEFAULT 0,
    delivered_seq BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX members_user ON members (user_id);

CREATE TABLE messages (
    id BIGSERIAL PRIMARY KEY,
    conversation_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    version BIGINT NOT NULL,
    sender_id BIGINT NOT NULL,
    client_msg_id TEXT,
    created_at BIGINT NOT NULL,
    content BYTEA NOT NULL,
    UNIQUE (conversation_id, seq)
);
CREATE INDEX messages_version ON messages (conversation_id, version);
CREATE UNIQUE INDEX messages_dedup ON messages (sender_id, client_msg_id) WHERE client_msg_id IS NOT NULL;
