-- Sends the REST service accepted, in the order it accepted them, per account. A row is the
-- request's idempotency record and the message's durable intent at once (one insert), with the
-- WhatsApp id the message keeps however often it is tried. `result` is the JSON answer once
-- WhatsApp acked it (`done`) or refused it (`failed`).
CREATE TABLE outbox (
    pk         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    idem_key   TEXT,
    message_id TEXT    NOT NULL,
    to_jid     TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    user_id    TEXT,
    state      TEXT    NOT NULL,
    result     TEXT,
    created_ms INTEGER NOT NULL,
    UNIQUE (account_id, idem_key)
);
CREATE INDEX outbox_queued ON outbox (account_id, pk) WHERE state = 'queued';
