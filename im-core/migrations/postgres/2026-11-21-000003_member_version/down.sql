ALTER TABLE conversations DROP COLUMN member_version;
