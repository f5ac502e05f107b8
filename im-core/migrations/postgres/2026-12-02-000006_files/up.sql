-- Uploaded files: metadata only (the bytes are in the blob store, under the
-- same id). status: 0 uploading, 1 complete.
CREATE TABLE files (
    id           TEXT PRIMARY KEY,
    uploader_id  BIGINT  NOT NULL,
    name         TEXT    NOT NULL,
    size         BIGINT  NOT NULL,
    stored_bytes BIGINT  NOT NULL DEFAULT 0,
    mime_type    TEXT    NOT NULL DEFAULT '',
    sha256       TEXT    NOT NULL DEFAULT '',
    status       INTEGER NOT NULL,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL,
    completed_at BIGINT,
    width        BIGINT,
    height       BIGINT,
    duration_ms  BIGINT,
    thumbnail_id TEXT
);
CREATE INDEX files_uploader ON files (uploader_id, created_at);
CREATE INDEX files_stale ON files (status, updated_at);

-- Which conversations a file was shared in (by a message referring to it).
-- The foreign key (no cascade) makes the clean-up's delete of an
-- unreferenced file and an append sharing it exclude each other.
CREATE TABLE file_shares (
    file_id         TEXT   NOT NULL REFERENCES files (id),
    conversation_id BIGINT NOT NULL,
    shared_at       BIGINT NOT NULL,
    PRIMARY KEY (file_id, conversation_id)
);
CREATE INDEX file_shares_conversation ON file_shares (conversation_id, shared_at);
