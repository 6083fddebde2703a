-- Per-user "not before" for access tokens (issue 6): disabling a user, deleting it, or changing
-- its role or password refuses every access token issued to it before that moment, at once,
-- instead of leaving it valid until its expiry. Keyed by the user's id alone (like
-- token_revocations by jti): it holds no tenant data, and the in-memory set every node keeps is
-- reloaded from it platform-wide. Rows go once no token older than them can still be live.
CREATE TABLE token_cutoffs (
    subject    uuid PRIMARY KEY,
    not_before timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
GRANT SELECT, INSERT, UPDATE, DELETE ON token_cutoffs TO proxpanel_app;
