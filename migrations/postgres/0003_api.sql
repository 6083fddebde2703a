-- Tenant API (issue 6): client address on audit lines, API tokens for automation.

ALTER TABLE audit_log ADD COLUMN client_ip text;
ALTER TABLE operator_audit_log ADD COLUMN client_ip text;

-- Refresh families are looked up by tenant and id; revocation of every family of a user.
CREATE INDEX refresh_families_user ON refresh_families (tenant_id, user_id);
CREATE INDEX operator_refresh_families_operator ON operator_refresh_families (operator_id);

-- API tokens (`pp_` prefix): only the SHA-256 of the token is kept; shown once at creation.
CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name         text NOT NULL,
    token_hash   text NOT NULL UNIQUE,
    scope        text NOT NULL CHECK (scope IN ('read','write')),
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_tokens_tenant ON api_tokens (tenant_id);
ALTER TABLE api_tokens ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_tokens
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON api_tokens TO proxpanel_app;
