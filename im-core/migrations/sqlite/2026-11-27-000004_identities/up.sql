-- Users known from an external identity (a host product's tokens): who the
-- issuer says they are, mapped to the local user created on first sight.
CREATE TABLE identities (
    issuer  TEXT    NOT NULL,
    subject TEXT    NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users (id),
    PRIMARY KEY (issuer, subject)
);
