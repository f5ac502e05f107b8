DROP INDEX hidden_messages_message;
ALTER TABLE conversations DROP COLUMN contact_version;
DROP TABLE blocks;
DROP TABLE friends;
DROP TABLE friend_requests;
