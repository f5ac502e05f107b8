DROP TABLE hidden_messages;
DROP TABLE reactions;
DROP TABLE message_edits;
ALTER TABLE members DROP COLUMN private_version;
ALTER TABLE messages
  DROP COLUMN reactions,
  DROP COLUMN recalled_by,
  DROP COLUMN recalled_at,
  DROP COLUMN edited_at;
