-- ACME certificates (issue 7): the account per ACME directory and the certificate of the zone,
-- keys sealed under the server key; a lease table so one node at a time renews.

CREATE TABLE acme_accounts (
    directory   TEXT PRIMARY KEY,
    contact     TEXT,
    credentials TEXT NOT NULL,          -- sealed: instant-acme AccountCredentials (holds the key)
    created_at  TEXT NOT NULL
);

CREATE TABLE certificates (
    name            TEXT PRIMARY KEY,   -- the zone it is for (<base>)
    names           TEXT NOT NULL,      -- subject names, comma-separated
    chain_pem       TEXT,               -- leaf first, then intermediates; NULL before the first issue
    private_key     TEXT,               -- sealed PKCS#8 PEM
    not_before      TEXT,
    not_after       TEXT,
    issued_at       TEXT,
    last_attempt_at TEXT,
    last_error      TEXT,
    updated_at      TEXT NOT NULL
);

-- Cluster-wide leases (e.g. "acme:<base>": which node renews). Expiry in epoch milliseconds so
-- the comparison is exact on both backends.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
);
