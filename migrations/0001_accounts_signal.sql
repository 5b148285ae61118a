-- One row per WhatsApp account we hold, keyed by the tenant's (subaccount, agent). Every other
-- table hangs off it, so one database serves many accounts and deleting an account deletes all.
CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY,
    subaccount_id TEXT    NOT NULL,
    agent_id      TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    UNIQUE (subaccount_id, agent_id)
);

-- Our Signal identity (IdentityKeyPairStructure protobuf) and registration id.
CREATE TABLE signal_identity (
    account_id      INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    registration_id INTEGER NOT NULL,
    key_pair        BLOB    NOT NULL
);

-- Peers' identity keys (trust on first use, change detection).
CREATE TABLE signal_identities (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    address    TEXT    NOT NULL,
    identity   BLOB    NOT NULL,
    PRIMARY KEY (account_id, address)
) WITHOUT ROWID;

CREATE TABLE signal_pre_keys (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    key_id     INTEGER NOT NULL,
    record     BLOB    NOT NULL,
    PRIMARY KEY (account_id, key_id)
) WITHOUT ROWID;

CREATE TABLE signal_signed_pre_keys (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    key_id     INTEGER NOT NULL,
    record     BLOB    NOT NULL,
    PRIMARY KEY (account_id, key_id)
) WITHOUT ROWID;

CREATE TABLE signal_sessions (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    address    TEXT    NOT NULL,
    record     BLOB    NOT NULL,
    PRIMARY KEY (account_id, address)
) WITHOUT ROWID;

CREATE TABLE signal_sender_keys (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    record     BLOB    NOT NULL,
    PRIMARY KEY (account_id, name)
) WITHOUT ROWID;
