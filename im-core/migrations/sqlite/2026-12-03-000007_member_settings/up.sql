-- Each member's own settings of a conversation: pinned (when, 0 = not),
-- notifications muted until (Unix ms; 0 = not muted), archived, marked unread.
ALTER TABLE members ADD COLUMN pinned_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN muted_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN archived BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN marked_unread BOOLEAN NOT NULL DEFAULT 0;
