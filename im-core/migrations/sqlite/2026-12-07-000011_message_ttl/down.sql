DROP INDEX messages_expiring;
ALTER TABLE messages DROP COLUMN expires_at;
ALTER TABLE conversations DROP COLUMN message_ttl_ms;
