-- The companion device's own credentials. The Signal identity, registration id and signed
-- prekey live in the signal_* tables (the Signal store reads them there).
CREATE TABLE creds (
    account_id            INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    noise_private         BLOB    NOT NULL,
    adv_secret            BLOB    NOT NULL,
    signed_pre_key_id     INTEGER NOT NULL,
    jid                   TEXT,
    lid                   TEXT,
    platform              TEXT,
    business_name         TEXT,
    push_name             TEXT,
    signed_identity       BLOB,
    account_signature_key BLOB
);
