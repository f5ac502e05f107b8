-- Uploaded files: metadata only (the bytes are in the blob store, under the
-- same id). status: 0 uploading, 1 complete.
CREATE TABLE files (
    id           TEXT PRIMARY KEY,
    uploader_id  INTEGER NOT NULL,
    name         TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    stored_bytes INTEGER NOT NULL DEFAULT 0,
    mime_type    TEXT    NOT NULL DEFAULT '',
    sha256       TEXT    NOT NULL DEFAULT '',
    status       INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    completed_at INTEGER,
    width        INTEGER,
    height       INTEGER,
    duration_ms  INTEGER,
    thumbnail_id TEXT
);
CREATE INDEX files_uploader ON files (uploader_id, created_at);
CREATE INDEX files_stale ON files (status, updated_at);

-- Which conversations a file was shared in (by a message referring to it).
-- SQLite has one writer: the append checks the file in its transaction,
-- so the clean-up cannot delete a file between that check and the share.
CREATE TABLE file_shares (
    file_id         TEXT    NOT NULL REFERENCES files (id),
    conversation_id INTEGER NOT NULL,
    shared_at       INTEGER NOT NULL,
    PRIMARY KEY (file_id, conversation_id)
);
CREATE INDEX file_shares_conversation ON file_shares (conversation_id, shared_at);
