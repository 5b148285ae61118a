-- Groups the account is in: metadata (the <group> node as WhatsApp sent it, binary-encoded),
-- which member devices hold our current sender key (marked after the server acked a
-- distribution to them), and the membership and subject changes we were told of.
CREATE TABLE groups (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    jid        TEXT    NOT NULL,
    info       BLOB    NOT NULL,
    updated    INTEGER NOT NULL,
    PRIMARY KEY (account_id, jid)
) WITHOUT ROWID;

CREATE TABLE group_key_holders (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    group_jid  TEXT    NOT NULL,
    device     TEXT    NOT NULL,
    PRIMARY KEY (account_id, group_jid, device)
) WITHOUT ROWID;

CREATE TABLE group_updates (
    account_id   INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    group_jid    TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    author       TEXT,
    t            INTEGER NOT NULL,
    action       TEXT    NOT NULL,
    participants TEXT    NOT NULL,
    subject      TEXT,
    PRIMARY KEY (account_id, group_jid, id, seq)
);

-- Newest first: by server time, then in the order they were told (rowid).
CREATE INDEX group_updates_by_time ON group_updates (account_id, group_jid, t);
