-- Full-text search: the tokens of each message's text (made by the
-- server's tokenizer, see im_core::search) as a tsvector of the 'simple'
-- configuration with a GIN index; no extension needed.
CREATE TABLE message_search (
    message_id BIGINT PRIMARY KEY,
    conversation_id BIGINT NOT NULL,
    tsv TSVECTOR NOT NULL
);
CREATE INDEX message_search_tsv ON message_search USING gin (tsv) WITH (fastupdate = off);
-- For a user in few conversations, walking their messages newest first and
-- checking each against the query beats collecting every match of a common
-- term and sorting it: the planner picks per query (custom plans).
CREATE INDEX message_search_conversation ON message_search (conversation_id, message_id);
-- Which tokenizer version the index was built with (messages stored before
-- are indexed when the store opens).
CREATE TABLE search_index (
    id INTEGER PRIMARY KEY,
    tokenizer_version INTEGER NOT NULL
);
