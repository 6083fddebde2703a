-- ProxPanel initial schema (PostgreSQL). Runs as the owner role (PROXPANEL_DATABASE_ADMIN_URL).
-- The application role `proxpanel_app` and the system role `proxpanel_system` must exist
-- (infra/postgres/roles.sql); they never own these tables, so row-level security binds them.

CREATE TABLE operators (
    id            uuid PRIMARY KEY,
    email         text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    role          text NOT NULL DEFAULT 'admin',
    totp_secret   text,               -- sealed
    totp_enrolled boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL
);

CREATE TABLE relay_nodes (
    name         text PRIMARY KEY,
    public_key   text NOT NULL,
    private_key  text NOT NULL,       -- sealed
    endpoint     text,
    last_seen    timestamptz,
    created_at   timestamptz NOT NULL
);

CREATE TABLE tenants (
    id              uuid PRIMARY KEY,
    slug            text NOT NULL UNIQUE,
    name            text NOT NULL,
    status          text NOT NULL CHECK (status IN ('provisioning','active','suspended','deleted')),
    timezone        text NOT NULL DEFAULT 'UTC',
    max_subscribers bigint NOT NULL,
    max_nas         bigint NOT NULL,
    relay_node      text,
    tunnel_subnet   text NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    suspended_at    timestamptz,
    deleted_at      timestamptz
);

CREATE TABLE tenant_users (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    email         text NOT NULL,
    password_hash text NOT NULL,
    role          text NOT NULL CHECK (role IN ('owner','admin','staff','viewer')),
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL,
    UNIQUE (tenant_id, email)
);

CREATE TABLE service_plans (
    id                      uuid PRIMARY KEY,
    tenant_id               uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name                    text NOT NULL,
    download_kbps           bigint NOT NULL,
    upload_kbps             bigint NOT NULL,
    burst_download_kbps     bigint,
    burst_upload_kbps       bigint,
    burst_threshold_kbps    bigint,
    burst_time_s            bigint,
    quota_bytes             bigint,
    quota_action            text NOT NULL DEFAULT 'fup' CHECK (quota_action IN ('fup','reject')),
    fup_download_kbps       bigint,
    fup_upload_kbps         bigint,
    validity_days           bigint,
    price_cents             bigint NOT NULL DEFAULT 0,
    ip_pool                 text,
    ipv6_pool               text,
    delegated_ipv6_pool     text,
    session_timeout_s       bigint,
    sim_use                 bigint NOT NULL DEFAULT 1,
    is_default              boolean NOT NULL DEFAULT false,
    created_at              timestamptz NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE subscribers (
    id                    uuid PRIMARY KEY,
    tenant_id             uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    username              text NOT NULL,
    password              text NOT NULL,      -- sealed
    status                text NOT NULL CHECK (status IN ('active','disabled','expired')),
    plan_id               uuid REFERENCES service_plans(id) ON DELETE SET NULL,
    expires_at            timestamptz,
    static_ip             text,
    framed_ipv6_prefix    text,
    delegated_ipv6_prefix text,
    mac_lock              text,
    sim_use               bigint,
    usage_reset_at        timestamptz,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    UNIQUE (tenant_id, username)
);
CREATE INDEX subscribers_plan ON subscribers (tenant_id, plan_id);

CREATE TABLE nas_devices (
    id                uuid PRIMARY KEY,
    tenant_id         uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name              text NOT NULL,
    vendor            text NOT NULL CHECK (vendor IN ('mikrotik','generic')),
    reach             text NOT NULL CHECK (reach IN ('tunnel','direct')),
    ip                text,
    secret            text NOT NULL,          -- sealed
    message_auth      text NOT NULL DEFAULT 'auto' CHECK (message_auth IN ('auto','require','off')),
    ma_seen_pap       boolean NOT NULL DEFAULT false,
    ma_seen_chap      boolean NOT NULL DEFAULT false,
    ma_seen_mschap    boolean NOT NULL DEFAULT false,
    coa_port          bigint NOT NULL DEFAULT 3799,
    api_port          bigint NOT NULL DEFAULT 8728,
    api_ssl_port      bigint NOT NULL DEFAULT 8729,
    use_ssl           boolean NOT NULL DEFAULT false,
    api_user          text,
    api_password      text,                   -- sealed
    api_tls_fingerprint text,
    tunnel_state      text NOT NULL DEFAULT 'none' CHECK (tunnel_state IN ('none','waiting','up','down')),
    last_handshake_at timestamptz,
    radius_last_seen  timestamptz,
    api_state         text NOT NULL DEFAULT 'unknown' CHECK (api_state IN ('unknown','online','offline')),
    api_last_error    text,
    api_checked_at    timestamptz,
    created_at        timestamptz NOT NULL,
    UNIQUE (tenant_id, name),
    CHECK ((reach = 'direct') = (ip IS NOT NULL))
);
-- A direct NAS source address belongs to one tenant, platform-wide.
CREATE UNIQUE INDEX nas_devices_direct_ip ON nas_devices (ip) WHERE ip IS NOT NULL;

CREATE TABLE wg_peers (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    nas_id          uuid NOT NULL REFERENCES nas_devices(id) ON DELETE CASCADE,
    public_key      text NOT NULL UNIQUE,
    private_key     text,                     -- sealed, only when we generated it
    tunnel_address  text NOT NULL,
    relay_node      text,
    last_handshake  timestamptz,
    handshake_tai64 bytea,
    endpoint        text,
    rx_bytes        bigint NOT NULL DEFAULT 0,
    tx_bytes        bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    UNIQUE (tenant_id, tunnel_address)
);

CREATE TABLE radius_sessions (
    id                 uuid PRIMARY KEY,
    tenant_id          uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    nas_id             uuid NOT NULL REFERENCES nas_devices(id) ON DELETE CASCADE,
    subscriber_id      uuid REFERENCES subscribers(id) ON DELETE SET NULL,
    username           text NOT NULL,
    acct_session_id    text NOT NULL,
    framed_ip          text,
    framed_ipv6_prefix text,
    calling_station_id text,
    nas_port_id        text,
    started_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    stopped_at         timestamptz,
    session_time_s     bigint NOT NULL DEFAULT 0,
    input_octets       bigint NOT NULL DEFAULT 0,
    output_octets      bigint NOT NULL DEFAULT 0,
    terminate_cause    text
);
CREATE INDEX radius_sessions_open ON radius_sessions (tenant_id, nas_id, acct_session_id) WHERE stopped_at IS NULL;
CREATE INDEX radius_sessions_user ON radius_sessions (tenant_id, username, started_at);

CREATE TABLE auth_log (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id          uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    at                 timestamptz NOT NULL,
    nas_id             uuid,
    username           text NOT NULL,
    method             text,
    outcome            text NOT NULL CHECK (outcome IN ('accept','reject')),
    reason             text,
    calling_station_id text
);
CREATE INDEX auth_log_tenant_at ON auth_log (tenant_id, at);

CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    actor       text NOT NULL,
    action      text NOT NULL,
    target      text,
    details     text
);
CREATE INDEX audit_log_tenant_at ON audit_log (tenant_id, at);

-- Platform-level audit (operator actions that are not inside one tenant).
CREATE TABLE operator_audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL,
    actor       text NOT NULL,
    action      text NOT NULL,
    target      text,
    details     text
);

CREATE TABLE refresh_families (
    id             uuid PRIMARY KEY,
    tenant_id      uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    user_id        uuid NOT NULL REFERENCES tenant_users(id) ON DELETE CASCADE,
    current_hash   text NOT NULL,
    created_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoke_reason  text
);

CREATE TABLE operator_refresh_families (
    id             uuid PRIMARY KEY,
    operator_id    uuid NOT NULL REFERENCES operators(id) ON DELETE CASCADE,
    current_hash   text NOT NULL,
    created_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoke_reason  text
);

-- Revoked access-token ids (jti), kept until the token would have expired anyway.
CREATE TABLE token_revocations (
    jti        text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

CREATE TABLE signing_keys (
    kid        text PRIMARY KEY,
    purpose    text NOT NULL,
    secret     text NOT NULL,                -- sealed
    created_at timestamptz NOT NULL,
    retired_at timestamptz
);

CREATE TABLE dns_records (
    id         uuid PRIMARY KEY,
    tenant_id  uuid REFERENCES tenants(id) ON DELETE CASCADE,
    name       text NOT NULL,
    rtype      text NOT NULL,
    value      text NOT NULL,
    ttl        bigint NOT NULL DEFAULT 300,
    created_at timestamptz NOT NULL
);
CREATE INDEX dns_records_name ON dns_records (name);

-- The event bus (DESIGN §9): ids only, never secrets.
CREATE TABLE events (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             timestamptz NOT NULL,
    tenant_id      uuid,
    kind           text NOT NULL,
    correlation_id uuid,
    payload        text NOT NULL
);

-- Row-level security: every tenant table is visible only inside a transaction that set
-- app.tenant_id; the system role reads across tenants (SELECT only).
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenant_users','service_plans','subscribers','nas_devices','wg_peers',
                             'radius_sessions','auth_log','audit_log','refresh_families']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON %I
            USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
            WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)$p$, t);
    END LOOP;
END $$;

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);

CREATE POLICY system_read ON tenants FOR SELECT TO proxpanel_system USING (true);
CREATE POLICY system_read ON nas_devices FOR SELECT TO proxpanel_system USING (true);
CREATE POLICY system_read ON wg_peers FOR SELECT TO proxpanel_system USING (true);
CREATE POLICY system_read ON subscribers FOR SELECT TO proxpanel_system USING (true);
CREATE POLICY system_read ON radius_sessions FOR SELECT TO proxpanel_system USING (true);

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO proxpanel_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO proxpanel_app;
-- The system role reads just what the named cross-tenant queries need.
-- Sealed columns (secrets, keys) are left out: the system role never sees them.
GRANT SELECT ON tenants, radius_sessions, dns_records, events TO proxpanel_system;
GRANT SELECT (name, public_key, endpoint, last_seen, created_at) ON relay_nodes TO proxpanel_system;
GRANT SELECT (id, tenant_id, status, plan_id, expires_at, created_at) ON subscribers TO proxpanel_system;
GRANT SELECT (id, tenant_id, name, vendor, reach, ip, message_auth, coa_port, api_port, api_ssl_port,
    use_ssl, tunnel_state, last_handshake_at, radius_last_seen, api_state, api_last_error,
    api_checked_at, created_at) ON nas_devices TO proxpanel_system;
GRANT SELECT (id, tenant_id, nas_id, public_key, tunnel_address, relay_node, last_handshake,
    handshake_tai64, endpoint, rx_bytes, tx_bytes, created_at) ON wg_peers TO proxpanel_system;
