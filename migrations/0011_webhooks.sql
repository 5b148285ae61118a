-- One webhook per account (subaccount, agent). `secret` is the HMAC key (sealed like key
-- material when a store key is configured); `events` is a comma-separated list of event names.
CREATE TABLE webhooks (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    url        TEXT    NOT NULL,
    secret     BLOB    NOT NULL,
    events     TEXT    NOT NULL,
    created_by TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- The durable delivery queue. A row is written in the same transaction as what it announces
-- (an inbound message, a status change, a connection change), only for an account whose webhook
-- wants that event. `pk` is commit order: events of one (account, chat) go out in pk order, one
-- at a time. `payload` is the body as first sent, so every retry carries the same bytes (and the
-- same signature).
CREATE TABLE webhook_events (
    pk           INTEGER PRIMARY KEY,
    account_id   INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id           TEXT    NOT NULL UNIQUE,
    kind         TEXT    NOT NULL,
    chat         TEXT    NOT NULL,
    message_pk   INTEGER,
    status       TEXT,
    error        INTEGER,
    data         TEXT,
    payload      TEXT,
    state        TEXT    NOT NULL DEFAULT 'pending',
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_ms      INTEGER NOT NULL,
    since_ms     INTEGER NOT NULL,
    last_status  INTEGER,
    last_error   TEXT,
    created_ms   INTEGER NOT NULL,
    delivered_ms INTEGER
);
CREATE INDEX webhook_events_due ON webhook_events (next_ms) WHERE state = 'pending';
CREATE INDEX webhook_events_chat ON webhook_events (account_id, chat, pk) WHERE state = 'pending';
CREATE INDEX webhook_events_by_state ON webhook_events (account_id, state, pk);
CREATE INDEX webhook_events_delivered ON webhook_events (delivered_ms) WHERE state = 'delivered';
