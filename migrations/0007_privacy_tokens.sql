-- Privacy tokens per contact: the token the contact issued to us (attached to what we send
-- them, or WhatsApp may refuse it with 463) and when we last issued ours to them.
CREATE TABLE privacy_tokens (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    jid        TEXT    NOT NULL,
    token      BLOB,
    token_t    INTEGER,
    issued_t   INTEGER,
    PRIMARY KEY (account_id, jid)
) WITHOUT ROWID;
