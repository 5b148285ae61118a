-- Messages of every account, inbound and outbound, one row per (chat, sender, id): a redelivered
-- message meets its row and is not stored twice. Outbound rows carry the delivery ladder.
CREATE TABLE messages (
    pk         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    chat       TEXT    NOT NULL,
    sender     TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    from_me    INTEGER NOT NULL,
    ts         INTEGER NOT NULL,
    push_name  TEXT,
    body       TEXT,
    raw        BLOB    NOT NULL,
    status     TEXT    NOT NULL,
    error      INTEGER,
    UNIQUE (account_id, chat, sender, id)
);
CREATE INDEX messages_by_chat ON messages (account_id, chat, ts, pk);
CREATE INDEX messages_by_time ON messages (account_id, ts, pk);
CREATE INDEX messages_pending ON messages (account_id, pk) WHERE status = 'pending';

-- What each recipient device reported about an outbound message, and when.
CREATE TABLE message_receipts (
    message_pk INTEGER NOT NULL REFERENCES messages (pk) ON DELETE CASCADE,
    device     TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    t          INTEGER NOT NULL,
    PRIMARY KEY (message_pk, device, status)
) WITHOUT ROWID;
