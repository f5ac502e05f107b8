-- Expiring messages: a conversation's time to live, and each message's end.
ALTER TABLE conversations ADD COLUMN message_ttl_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN expires_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX messages_expiring ON messages (expires_at) WHERE expires_at <> 0 AND recalled_at = 0;
