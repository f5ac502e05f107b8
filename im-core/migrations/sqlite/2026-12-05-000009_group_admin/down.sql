DROP TABLE join_requests;
DROP TABLE invitations;
DROP TABLE bans;
ALTER TABLE members DROP COLUMN send_muted_until;
ALTER TABLE conversations DROP COLUMN members_muted;
ALTER TABLE conversations DROP COLUMN join_policy;
