-- ACME certificates (issue 7): the account per ACME directory and the certificate of the zone,
-- keys sealed under the server key; a lease table so one node at a time renews.

CREATE TABLE acme_accounts (
    directory   text PRIMARY KEY,
    contact     text,
    credentials text NOT NULL,          -- sealed: instant-acme AccountCredentials (holds the key)
    created_at  timestamptz NOT NULL
);

CREATE TABLE certificates (
    name            text PRIMARY KEY,   -- the zone it is for (<base>)
    names           text NOT NULL,      -- subject names, comma-separated
    chain_pem       text,               -- leaf first, then intermediates; NULL before the first issue
    private_key     text,               -- sealed PKCS#8 PEM
    not_before      timestamptz,
    not_after       timestamptz,
    issued_at       timestamptz,
    last_attempt_at timestamptz,
    last_error      text,
    updated_at      timestamptz NOT NULL
);

-- Cluster-wide leases (e.g. "acme:<base>": which node renews). Expiry in epoch milliseconds so
-- the comparison is exact on both backends.
CREATE TABLE leases (
    name       text PRIMARY KEY,
    holder     text NOT NULL,
    expires_ms bigint NOT NULL
);

GRANT SELECT, INSERT, UPDATE, DELETE ON acme_accounts, certificates, leases TO proxpanel_app;
