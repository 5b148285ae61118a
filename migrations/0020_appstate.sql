-- App-state sync (CLIENT-FEATURES §3) per account: the sync keys the phone shared (key data
-- sealed like other key material), and per collection the version and LTHash we verified last,
-- with every live record (index MAC → value MAC, the index JSON and the decrypted
-- SyncActionData). A collection's version, hash and records change in one transaction, with the
-- chat and contact changes the patch made.
CREATE TABLE appstate_keys (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    key_id     BLOB    NOT NULL,
    key_data   BLOB    NOT NULL,
    -- When the phone made it (ms); the newest is used to send.
    created    INTEGER NOT NULL,
    PRIMARY KEY (account_id, key_id)
) WITHOUT ROWID;

CREATE TABLE appstate_collections (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    hash       BLOB    NOT NULL,
    PRIMARY KEY (account_id, name)
) WITHOUT ROWID;

CREATE TABLE appstate_records (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    collection TEXT    NOT NULL,
    index_mac  BLOB    NOT NULL,
    value_mac  BLOB    NOT NULL,
    idx        TEXT    NOT NULL,
    data       BLOB    NOT NULL,
    PRIMARY KEY (account_id, collection, index_mac)
) WITHOUT ROWID;
CREATE INDEX appstate_records_by_index ON appstate_records (account_id, collection, idx);
