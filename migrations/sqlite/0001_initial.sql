-- ProxPanel initial schema (SQLite, embedded mode). Same tables as migrations/postgres;
-- isolation here rests on the tenant filter of every query (no RLS in SQLite).

CREATE TABLE operators (
    id            BLOB PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL DEFAULT 'admin',
    totp_secret   TEXT,               -- sealed
    totp_enrolled INTEGER NOT NULL DEFAULT false,
    created_at    TEXT NOT NULL
);

CREATE TABLE relay_nodes (
    name         TEXT PRIMARY KEY,
    public_key   TEXT NOT NULL,
    private_key  TEXT NOT NULL,       -- sealed
    endpoint     TEXT,
    last_seen    TEXT,
    created_at   TEXT NOT NULL
);

CREATE TABLE tenants (
    id              BLOB PRIMARY KEY,
    slug            TEXT NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('provisioning','active','suspended','deleted')),
    timezone        TEXT NOT NULL DEFAULT 'UTC',
    max_subscribers INTEGER NOT NULL,
    max_nas         INTEGER NOT NULL,
    relay_node      TEXT,
    tunnel_subnet   TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    suspended_at    TEXT,
    deleted_at      TEXT
);

CREATE TABLE tenant_users (
    id            BLOB PRIMARY KEY,
    tenant_id     BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('owner','admin','staff','viewer')),
    disabled      INTEGER NOT NULL DEFAULT false,
    created_at    TEXT NOT NULL,
    UNIQUE (tenant_id, email)
);

CREATE TABLE service_plans (
    id                      BLOB PRIMARY KEY,
    tenant_id               BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name                    TEXT NOT NULL,
    download_kbps           INTEGER NOT NULL,
    upload_kbps             INTEGER NOT NULL,
    burst_download_kbps     INTEGER,
    burst_upload_kbps       INTEGER,
    burst_threshold_kbps    INTEGER,
    burst_time_s            INTEGER,
    quota_bytes             INTEGER,
    quota_action            TEXT NOT NULL DEFAULT 'fup' CHECK (quota_action IN ('fup','reject')),
    fup_download_kbps       INTEGER,
    fup_upload_kbps         INTEGER,
    validity_days           INTEGER,
    price_cents             INTEGER NOT NULL DEFAULT 0,
    ip_pool                 TEXT,
    ipv6_pool               TEXT,
    delegated_ipv6_pool     TEXT,
    session_timeout_s       INTEGER,
    sim_use                 INTEGER NOT NULL DEFAULT 1,
    is_default              INTEGER NOT NULL DEFAULT false,
    created_at              TEXT NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE subscribers (
    id                    BLOB PRIMARY KEY,
    tenant_id             BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    username              TEXT NOT NULL,
    password              TEXT NOT NULL,      -- sealed
    status                TEXT NOT NULL CHECK (status IN ('active','disabled','expired')),
    plan_id               BLOB REFERENCES service_plans(id) ON DELETE SET NULL,
    expires_at            TEXT,
    static_ip             TEXT,
    framed_ipv6_prefix    TEXT,
    delegated_ipv6_prefix TEXT,
    mac_lock              TEXT,
    sim_use               INTEGER,
    usage_reset_at        TEXT,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL,
    UNIQUE (tenant_id, username)
);
CREATE INDEX subscribers_plan ON subscribers (tenant_id, plan_id);

CREATE TABLE nas_devices (
    id                BLOB PRIMARY KEY,
    tenant_id         BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name              TEXT NOT NULL,
    vendor            TEXT NOT NULL CHECK (vendor IN ('mikrotik','generic')),
    reach             TEXT NOT NULL CHECK (reach IN ('tunnel','direct')),
    ip                TEXT,
    secret            TEXT NOT NULL,          -- sealed
    message_auth      TEXT NOT NULL DEFAULT 'auto' CHECK (message_auth IN ('auto','require','off')),
    ma_seen_pap       INTEGER NOT NULL DEFAULT false,
    ma_seen_chap      INTEGER NOT NULL DEFAULT false,
    ma_seen_mschap    INTEGER NOT NULL DEFAULT false,
    coa_port          INTEGER NOT NULL DEFAULT 3799,
    api_port          INTEGER NOT NULL DEFAULT 8728,
    api_ssl_port      INTEGER NOT NULL DEFAULT 8729,
    use_ssl           INTEGER NOT NULL DEFAULT false,
    api_user          TEXT,
    api_password      TEXT,                   -- sealed
    api_tls_fingerprint TEXT,
    tunnel_state      TEXT NOT NULL DEFAULT 'none' CHECK (tunnel_state IN ('none','waiting','up','down')),
    last_handshake_at TEXT,
    radius_last_seen  TEXT,
    api_state         TEXT NOT NULL DEFAULT 'unknown' CHECK (api_state IN ('unknown','online','offline')),
    api_last_error    TEXT,
    api_checked_at    TEXT,
    created_at        TEXT NOT NULL,
    UNIQUE (tenant_id, name),
    CHECK ((reach = 'direct') = (ip IS NOT NULL))
);
-- A direct NAS source address belongs to one tenant, platform-wide.
CREATE UNIQUE INDEX nas_devices_direct_ip ON nas_devices (ip) WHERE ip IS NOT NULL;

CREATE TABLE wg_peers (
    id              BLOB PRIMARY KEY,
    tenant_id       BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    nas_id          BLOB NOT NULL REFERENCES nas_devices(id) ON DELETE CASCADE,
    public_key      TEXT NOT NULL UNIQUE,
    private_key     TEXT,                     -- sealed, only when we generated it
    tunnel_address  TEXT NOT NULL,
    relay_node      TEXT,
    last_handshake  TEXT,
    handshake_tai64 BLOB,
    endpoint        TEXT,
    rx_bytes        INTEGER NOT NULL DEFAULT 0,
    tx_bytes        INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    UNIQUE (tenant_id, tunnel_address)
);

CREATE TABLE radius_sessions (
    id                 BLOB PRIMARY KEY,
    tenant_id          BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    nas_id             BLOB NOT NULL REFERENCES nas_devices(id) ON DELETE CASCADE,
    subscriber_id      BLOB REFERENCES subscribers(id) ON DELETE SET NULL,
    username           TEXT NOT NULL,
    acct_session_id    TEXT NOT NULL,
    framed_ip          TEXT,
    framed_ipv6_prefix TEXT,
    calling_station_id TEXT,
    nas_port_id        TEXT,
    started_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    stopped_at         TEXT,
    session_time_s     INTEGER NOT NULL DEFAULT 0,
    input_octets       INTEGER NOT NULL DEFAULT 0,
    output_octets      INTEGER NOT NULL DEFAULT 0,
    terminate_cause    TEXT
);
CREATE INDEX radius_sessions_open ON radius_sessions (tenant_id, nas_id, acct_session_id) WHERE stopped_at IS NULL;
CREATE INDEX radius_sessions_user ON radius_sessions (tenant_id, username, started_at);

CREATE TABLE auth_log (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id          BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    at                 TEXT NOT NULL,
    nas_id             BLOB,
    username           TEXT NOT NULL,
    method             TEXT,
    outcome            TEXT NOT NULL CHECK (outcome IN ('accept','reject')),
    reason             TEXT,
    calling_station_id TEXT
);
CREATE INDEX auth_log_tenant_at ON auth_log (tenant_id, at);

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT,
    details     TEXT
);
CREATE INDEX audit_log_tenant_at ON audit_log (tenant_id, at);

-- Platform-level audit (operator actions that are not inside one tenant).
CREATE TABLE operator_audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT,
    details     TEXT
);

CREATE TABLE refresh_families (
    id             BLOB PRIMARY KEY,
    tenant_id      BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    user_id        BLOB NOT NULL REFERENCES tenant_users(id) ON DELETE CASCADE,
    current_hash   TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    expires_at     TEXT NOT NULL,
    revoked_at     TEXT,
    revoke_reason  TEXT
);

CREATE TABLE operator_refresh_families (
    id             BLOB PRIMARY KEY,
    operator_id    BLOB NOT NULL REFERENCES operators(id) ON DELETE CASCADE,
    current_hash   TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    expires_at     TEXT NOT NULL,
    revoked_at     TEXT,
    revoke_reason  TEXT
);

-- Revoked access-token ids (jti), kept until the token would have expired anyway.
CREATE TABLE token_revocations (
    jti        TEXT PRIMARY KEY,
    expires_at TEXT NOT NULL
);

CREATE TABLE signing_keys (
    kid        TEXT PRIMARY KEY,
    purpose    TEXT NOT NULL,
    secret     TEXT NOT NULL,                -- sealed
    created_at TEXT NOT NULL,
    retired_at TEXT
);

CREATE TABLE dns_records (
    id         BLOB PRIMARY KEY,
    tenant_id  BLOB REFERENCES tenants(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    rtype      TEXT NOT NULL,
    value      TEXT NOT NULL,
    ttl        INTEGER NOT NULL DEFAULT 300,
    created_at TEXT NOT NULL
);
CREATE INDEX dns_records_name ON dns_records (name);

-- The event bus (DESIGN §9): ids only, never secrets.
CREATE TABLE events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    at             TEXT NOT NULL,
    tenant_id      BLOB,
    kind           TEXT NOT NULL,
    correlation_id BLOB,
    payload        TEXT NOT NULL
);

