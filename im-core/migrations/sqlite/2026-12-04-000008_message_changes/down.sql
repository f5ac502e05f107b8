DROP TABLE hidden_messages;
DROP TABLE reactions;
DROP TABLE message_edits;
ALTER TABLE members DROP COLUMN private_version;
ALTER TABLE messages DROP COLUMN reactions;
ALTER TABLE messages DROP COLUMN recalled_by;
ALTER TABLE messages DROP COLUMN recalled_at;
ALTER TABLE messages DROP COLUMN edited_at;
