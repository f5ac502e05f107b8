-- Lets expired tokens be found (and purged) without a full scan.
CREATE INDEX tokens_expires_at ON tokens (expires_at);
