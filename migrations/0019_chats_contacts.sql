-- Chats and contacts of each account (issue 23), as the phone's history sync and app-state sync
-- describe them. A chat is keyed by the same canonical JID its messages use (the LID of a 1:1
-- chat once known: learning a LID moves the row, as it moves the messages).
CREATE TABLE chats (
    account_id    INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    jid           TEXT    NOT NULL,
    name          TEXT,
    archived      INTEGER NOT NULL DEFAULT 0,
    -- When it was pinned (unix seconds); NULL: not pinned.
    pinned_at     INTEGER,
    -- Muted until (unix ms); -1: forever; NULL: not muted.
    muted_until   INTEGER,
    marked_unread INTEGER NOT NULL DEFAULT 0,
    -- Unread messages as the phone counted them when it told us (history or app state).
    unread_count  INTEGER NOT NULL DEFAULT 0,
    -- Read marker (unix seconds): inbound messages at or before it are read.
    read_ts       INTEGER,
    -- Disappearing-messages timer (seconds); NULL or 0: off.
    ephemeral     INTEGER,
    -- When the chat was deleted (unix seconds); NULL: not deleted.
    deleted_at    INTEGER,
    updated_ms    INTEGER NOT NULL,
    PRIMARY KEY (account_id, jid)
) WITHOUT ROWID;

-- Contacts: keyed by the canonical user JID (the LID once known, else the phone number), with
-- both users kept when known. on_whatsapp NULL: unknown.
CREATE TABLE contacts (
    account_id  INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    jid         TEXT    NOT NULL,
    pn          TEXT,
    lid         TEXT,
    full_name   TEXT,
    first_name  TEXT,
    push_name   TEXT,
    username    TEXT,
    on_whatsapp INTEGER,
    updated_ms  INTEGER NOT NULL,
    PRIMARY KEY (account_id, jid)
) WITHOUT ROWID;

-- Rows the phone's history sync brought (not announced as received messages).
ALTER TABLE messages ADD COLUMN history INTEGER NOT NULL DEFAULT 0;
