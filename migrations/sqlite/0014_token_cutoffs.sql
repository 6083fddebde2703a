-- Per-user "not before" for access tokens (see the PostgreSQL 0014).
CREATE TABLE token_cutoffs (
    subject    BLOB PRIMARY KEY,
    not_before TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
