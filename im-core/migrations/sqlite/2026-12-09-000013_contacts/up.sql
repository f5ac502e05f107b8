-- Contacts: friend requests (one per ordered pair, the latest), friendships
-- (both directions, so a user's friends are one index range), blocks.
CREATE TABLE friend_requests (
    from_user BIGINT NOT NULL,
    to_user BIGINT NOT NULL,
    message TEXT NOT NULL,
    state INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (from_user, to_user)
);
CREATE INDEX friend_requests_to ON friend_requests (to_user);
CREATE TABLE friends (
    user_id BIGINT NOT NULL,
    friend_id BIGINT NOT NULL,
    since BIGINT NOT NULL,
    PRIMARY KEY (user_id, friend_id)
);
CREATE TABLE blocks (
    blocker BIGINT NOT NULL,
    blocked BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (blocker, blocked)
);
CREATE INDEX blocks_blocked ON blocks (blocked);
-- Bumped by every block, unblock and friendship change between two members:
-- the sending path caches the blocks among a conversation's members under it.
ALTER TABLE conversations ADD COLUMN contact_version BIGINT NOT NULL DEFAULT 0;
-- Who a message is hidden from (changes to it skip them).
CREATE INDEX hidden_messages_message ON hidden_messages (message_id);
