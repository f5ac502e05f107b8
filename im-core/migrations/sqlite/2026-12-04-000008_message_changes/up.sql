-- Changes to stored messages: edits (with the former contents, for the
-- sender), recalls, reactions; and deletions "for me", each member's own.
ALTER TABLE messages ADD COLUMN edited_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN recalled_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN recalled_by BIGINT NOT NULL DEFAULT 0;
-- The reaction summary: an encoded im.v1.Message holding only its
-- reactions; NULL when there are none.
ALTER TABLE messages ADD COLUMN reactions BLOB;
ALTER TABLE members ADD COLUMN private_version BIGINT NOT NULL DEFAULT 0;

CREATE TABLE message_edits (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    message_id BIGINT NOT NULL,
    written_at BIGINT NOT NULL,
    content BLOB NOT NULL
);
CREATE INDEX message_edits_message ON message_edits (message_id, id);

CREATE TABLE reactions (
    message_id BIGINT NOT NULL,
    emoji TEXT NOT NULL,
    user_id BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
);
CREATE INDEX reactions_order ON reactions (message_id, emoji, created_at, user_id);

CREATE TABLE hidden_messages (
    user_id BIGINT NOT NULL,
    message_id BIGINT NOT NULL,
    conversation_id BIGINT NOT NULL,
    private_version BIGINT NOT NULL,
    PRIMARY KEY (user_id, message_id)
);
CREATE INDEX hidden_messages_log ON hidden_messages (conversation_id, user_id, private_version);
