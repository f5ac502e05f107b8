-- Replies, mentions, threads, forwarded copies and pins.
ALTER TABLE messages ADD COLUMN thread_root_id BIGINT NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN pinned_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN pinned_by BIGINT NOT NULL DEFAULT 0;
-- What the sender attached: an encoded im.v1.Message holding only its
-- reply_to, mention_user_ids, mention_all and forwarded; NULL: nothing.
ALTER TABLE messages ADD COLUMN meta BYTEA;
CREATE INDEX messages_thread ON messages (conversation_id, thread_root_id, seq) WHERE thread_root_id <> 0;
CREATE INDEX messages_pinned ON messages (conversation_id, pinned_at) WHERE pinned_at <> 0;

-- Who a message mentions (user 0: everyone), for unread-mention counts.
CREATE TABLE mentions (
    conversation_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    sender_id BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, user_id, seq)
);

-- Each member's read cursor in each thread.
CREATE TABLE thread_reads (
    conversation_id BIGINT NOT NULL,
    root_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    read_seq BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, root_id, user_id)
);
