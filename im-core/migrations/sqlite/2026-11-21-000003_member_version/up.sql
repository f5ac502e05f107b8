-- Bumped by every membership change: lets nodes cache member lists safely.
ALTER TABLE conversations ADD COLUMN member_version BIGINT NOT NULL DEFAULT 0;
