DROP TABLE thread_reads;
DROP TABLE mentions;
DROP INDEX messages_pinned;
DROP INDEX messages_thread;
ALTER TABLE messages DROP COLUMN meta;
ALTER TABLE messages DROP COLUMN pinned_by;
ALTER TABLE messages DROP COLUMN pinned_at;
ALTER TABLE messages DROP COLUMN thread_root_id;
