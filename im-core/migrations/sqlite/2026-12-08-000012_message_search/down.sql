DROP TABLE search_index;
DROP TABLE message_fts;
