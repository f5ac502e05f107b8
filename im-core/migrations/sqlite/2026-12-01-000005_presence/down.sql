DROP TABLE presence_users;
DROP TABLE presence_sessions;
DROP TABLE presence_nodes;
