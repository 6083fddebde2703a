-- Tenant API gaps (issue 6): e-mail verification of panel users, subscriber listing sorts.

ALTER TABLE tenant_users ADD COLUMN email_verified INTEGER NOT NULL DEFAULT false;

-- Single-use e-mail verification links: only the SHA-256 of the token is kept.
CREATE TABLE email_verifications (
    token_hash  TEXT PRIMARY KEY,
    tenant_id   BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    user_id     BLOB NOT NULL REFERENCES tenant_users(id) ON DELETE CASCADE,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT
);
CREATE INDEX email_verifications_user ON email_verifications (tenant_id, user_id);

-- Keyset pagination of the subscriber list by the other sort keys (id breaks ties).
CREATE INDEX subscribers_created ON subscribers (tenant_id, created_at, id);
CREATE INDEX subscribers_status ON subscribers (tenant_id, status, id);
