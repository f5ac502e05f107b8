DROP INDEX tokens_expires_at;
