ALTER TABLE members DROP COLUMN marked_unread;
ALTER TABLE members DROP COLUMN archived;
ALTER TABLE members DROP COLUMN muted_until;
ALTER TABLE members DROP COLUMN pinned_at;
