ALTER TABLE members
  DROP COLUMN marked_unread,
  DROP COLUMN archived,
  DROP COLUMN muted_until,
  DROP COLUMN pinned_at;
