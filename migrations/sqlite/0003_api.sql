-- Tenant API (issue 6): client address on audit lines, API tokens for automation.

ALTER TABLE audit_log ADD COLUMN client_ip TEXT;
ALTER TABLE operator_audit_log ADD COLUMN client_ip TEXT;

CREATE INDEX refresh_families_user ON refresh_families (tenant_id, user_id);
CREATE INDEX operator_refresh_families_operator ON operator_refresh_families (operator_id);

-- API tokens (`pp_` prefix): only the SHA-256 of the token is kept; shown once at creation.
CREATE TABLE api_tokens (
    id           BLOB PRIMARY KEY,
    tenant_id    BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    scope        TEXT NOT NULL CHECK (scope IN ('read','write')),
    created_by   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
);
CREATE INDEX api_tokens_tenant ON api_tokens (tenant_id);
