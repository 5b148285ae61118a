-- The REST service's view of each account (the guide's `whatsappconnections`): one row per
-- (subaccount, agent) once someone connected it; disconnecting keeps the row and the history.
CREATE TABLE connections (
    account_id      INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    status          TEXT    NOT NULL,
    code            TEXT,
    qr_generated    INTEGER NOT NULL DEFAULT 0,
    phone_number    TEXT,
    platform        TEXT,
    pushname        TEXT,
    created_by      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    connected_at    INTEGER,
    disconnected_at INTEGER
);

-- What happened, per subaccount (the guide's activity log): connections, disconnections,
-- messages sent and received. `details` is JSON.
CREATE TABLE activities (
    id             INTEGER PRIMARY KEY,
    subaccount_id  TEXT    NOT NULL,
    agent_id       TEXT    NOT NULL,
    user_id        TEXT,
    kind           TEXT    NOT NULL,
    category       TEXT    NOT NULL,
    details        TEXT    NOT NULL,
    at_ms          INTEGER NOT NULL
);
CREATE INDEX activities_by_subaccount ON activities (subaccount_id, id);

-- When each row was stored (the guide's `createdAt`), kept apart from the message's own time.
ALTER TABLE messages ADD COLUMN created_ms INTEGER;
