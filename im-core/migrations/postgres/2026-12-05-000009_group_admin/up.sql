-- Group administration: the join policy (0 direct, 1 open, 2 approval,
-- 3 invite only) and the mute of a whole conversation; a member's send mute
-- (Unix ms; 0 = may send); bans, pending invitations and join requests.
ALTER TABLE conversations
  ADD COLUMN join_policy INTEGER NOT NULL DEFAULT 3,
  ADD COLUMN members_muted BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE conversations SET join_policy = 1 WHERE kind = 3;
UPDATE conversations SET join_policy = 0 WHERE kind = 1;
ALTER TABLE members ADD COLUMN send_muted_until BIGINT NOT NULL DEFAULT 0;

CREATE TABLE bans (
    conversation_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    banned_by BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);

CREATE TABLE invitations (
    conversation_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    invited_by BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX invitations_invitee ON invitations (user_id, created_at);

CREATE TABLE join_requests (
    conversation_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX join_requests_age ON join_requests (conversation_id, created_at, user_id);
