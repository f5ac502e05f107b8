-- Full-text search: the tokens of each message's text (made by the
-- server's tokenizer, see im_core::search), in a contentless FTS5 index
-- keyed by message id. No text is stored; the secure-delete option makes a
-- removed message's tokens leave the index file (a recall).
CREATE VIRTUAL TABLE message_fts USING fts5(
    tokens, content='', tokenize='unicode61 remove_diacritics 0', detail=full);
INSERT INTO message_fts(message_fts, rank) VALUES('secure-delete', 1);
-- Which tokenizer version the index was built with (messages stored before
-- are indexed when the store opens).
CREATE TABLE search_index (
    id INTEGER PRIMARY KEY NOT NULL,
    tokenizer_version INTEGER NOT NULL
);
