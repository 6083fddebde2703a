-- Tenant API gaps (issue 6): e-mail verification of panel users, subscriber listing sorts.

ALTER TABLE tenant_users ADD COLUMN email_verified boolean NOT NULL DEFAULT false;

-- Single-use e-mail verification links: only the SHA-256 of the token is kept.
CREATE TABLE email_verifications (
    token_hash  text PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES tenant_users(id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX email_verifications_user ON email_verifications (tenant_id, user_id);
ALTER TABLE email_verifications ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON email_verifications
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON email_verifications TO proxpanel_app;

-- Keyset pagination of the subscriber list by the other sort keys (id breaks ties).
CREATE INDEX subscribers_created ON subscribers (tenant_id, created_at, id);
CREATE INDEX subscribers_status ON subscribers (tenant_id, status, id);

-- Subscriber search (`?search=`, a case-insensitive substring) uses a trigram index where
-- pg_trgm can be created (a trusted extension: the database owner may create it); elsewhere the
-- search scans the tenant's rows.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE INDEX subscribers_username_trgm ON subscribers USING gin (lower(username) gin_trgm_ops);
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm unavailable (%): subscriber search scans the tenant''s rows', SQLERRM;
END $$;
